"""The world's vocabulary and shape: actions, intents, categories, costs, time units and :class:`WorldConfig`."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.identity import KINDS
from features.registry import Registry

ACTIONS: tuple[str, ...] = (
    "no_action",
    "retention_offer",
    "discount_10",
    "plan_upgrade",
    "tech_callback",
    "loyalty_bonus",
    "payment_plan",
)
INTENTS: tuple[str, ...] = ("billing", "technical", "cancel", "sales")
CHANNELS: tuple[str, ...] = ("voice", "chat", "email")
LANGUAGES: tuple[str, ...] = ("en", "es", "fr")
PLANS: tuple[str, ...] = ("basic", "standard", "premium")
CONTRACTS: tuple[str, ...] = ("month_to_month", "one_year", "two_year")
SEGMENTS: tuple[str, ...] = ("consumer", "small_business", "premium")
PURPOSES: tuple[str, ...] = ("marketing", "profiling", "phone", "sms")
"""What a customer consents to, one flag each; ``consent_{purpose}`` is the newest ``consent_changed`` of it."""
SALES_ACTIONS: frozenset[str] = frozenset({"retention_offer", "discount_10", "plan_upgrade", "loyalty_bonus"})
# What an accepted action costs the business (reward = lifetime_value * (1 - churned) - cost if accepted).
# plan_upgrade is negative: an accepted upgrade earns extra margin rather than costing anything.
ACTION_COST: dict[str, float] = {
    "no_action": 0.0,
    "retention_offer": 120.0,
    "discount_10": 60.0,
    "plan_upgrade": -80.0,
    "tech_callback": 25.0,
    "loyalty_bonus": 50.0,
    "payment_plan": 15.0,
}
PLAN_PRICE = np.array([25.0, 50.0, 90.0])
WORLD_STAMP = "world.json"
"""The file beside a simulated world's tables saying how it was made (``nba simulate``, ``nba demo``)."""
EVENT_ENVELOPE: tuple[str, ...] = ("event_id", "customer_id", "occurred_at", "type")
"""The columns every row of ``customer_events.parquet`` starts with; the payload columns follow."""
_SEGMENT_HORIZON = np.array([20.0, 30.0, 40.0])  # months of expected future revenue behind lifetime_value
_WARMUP_MONTHS = 3  # simulated but not written, so the first snapshot already has 90-day histories
_US_PER_S = 1_000_000
_US_PER_DAY = 86_400 * _US_PER_S
_ACTIVE_DAYS = 28  # a month's events fall in the 28 days before its snapshot, all inside its 30-day windows


@functools.cache
def intent_skills() -> dict[str, str]:
    """The contract's routing rule: the agent skill each intent needs.

    Read on first use, not at import: every ``nba`` command imports this module, and a bad ``registry.yaml`` must
    stop only the commands that read it, with its error naming the field, not all of them with a traceback.
    """
    return Registry.load().intent_skills


_LABELS: dict[str, tuple[str, ...]] = {  # codes of string fields
    "intent": INTENTS,
    "action_id": ACTIONS,
    "channel": CHANNELS,
    "purpose": PURPOSES,
    # Identity events are not simulated (see contract._check_events): their columns are always empty.
    "identifier_kind": KINDS,
    "identifier": (),
}

Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Size, length and seed of a simulated world; ``end`` is the date of the last monthly snapshot."""

    customers: int = 5000
    agents: int = 100
    months: int = 6
    seed: int = 7
    end: dt.date

    def __post_init__(self) -> None:
        for name, low, high in (("customers", 1_000, 1_000_000), ("agents", 5, 5000), ("months", 3, 36)):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        if not isinstance(self.end, dt.date):
            raise ValueError(f"end must be a date, got {self.end!r}")


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`simulate` wrote: the directory and the row count of each table."""

    out: Path
    customer_snapshots: int
    churn_labels: int
    offers: int
    agent_snapshots: int
    contacts: int
    events: int
    contact_truth: int
    agent_truth: int
