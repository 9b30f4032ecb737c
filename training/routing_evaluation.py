"""Routing evaluation: the true outcome each routing policy gets on a simulated world's test contacts.

Real logs hold only the agent who took each contact; a simulated world also holds the oracle's hidden state
(:mod:`training.world.routing_oracle`), so any other agent's outcome on the same contact is known in
expectation. For each test contact, :data:`CANDIDATES` agents drawn at random are free; those passing the hard
constraints of ``POST /v1/assign`` (holds the intent's skill, speaks the contact's language) are eligible, and
each policy picks one of them:

- ``random``: any eligible agent (the expectation of a uniform pick);
- ``skills_only``: the highest rating for the intent's skill (the contract's ``proficiency_<skill>``), what a
  classic skills-based router does; ties share the pick;
- ``model``: the highest P(first-contact resolution) of the resolution bundle, scored on the features as they
  stood when the contact started (the offline store's point-in-time join);
- ``oracle``: the highest true P(resolution).

Each pick is scored with the oracle's expected first-contact resolution, handle time and CSAT. The figure the
issue asks for is the model's share of the oracle's FCR gain over skills-only routing
(:attr:`RoutingEvaluation.gain_captured`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import OfflineStore, Registry
from training.bundle import ModelBundle
from training.errors import DatasetError
from training.resolution_frame import CONTACT_PREFIX, STARTED, pair_matrix, time_split, with_agent, with_customer
from training.world.config import Columns
from training.world.routing_oracle import (
    AGENT_TRUTH,
    CONTACT_TRUTH,
    true_csat,
    true_handle_time,
    true_resolution_probability,
)

POLICIES = ("random", "skills_only", "model", "oracle")
CANDIDATES = 20
"""Agents free at the moment a test contact is routed, drawn at random."""
GOAL_SHARE = 0.80
"""The issue's goal: model routing captures at least this share of the oracle's FCR gain over skills-only."""


@dataclass(frozen=True)
class PolicyOutcome:
    """The oracle's expected outcome, averaged over the routed test contacts, of the agents a policy picks."""

    policy: str
    fcr: float
    handle_time_s: float
    csat: float


@dataclass(frozen=True)
class RoutingEvaluation:
    """Every policy's outcome on the same contacts and candidates."""

    outcomes: tuple[PolicyOutcome, ...]
    contacts: int
    """Test contacts with at least one eligible candidate (the others are routed by no policy)."""
    candidates: int

    @classmethod
    def from_metrics(cls, metrics: dict[str, float]) -> RoutingEvaluation:
        """The evaluation :meth:`metrics` flattened (as a model version's logged metrics hold it)."""
        m = metrics
        outcomes = tuple(
            PolicyOutcome(p, m[f"routing_fcr_{p}"], m[f"routing_handle_time_s_{p}"], m[f"routing_csat_{p}"])
            for p in POLICIES
        )
        return cls(outcomes, int(m["routing_contacts"]), int(m["routing_candidates"]))

    def outcome(self, policy: str) -> PolicyOutcome:
        """The row of ``policy`` (one of :data:`POLICIES`)."""
        return next(o for o in self.outcomes if o.policy == policy)

    @property
    def gain_captured(self) -> float:
        """The model's FCR gain over skills-only routing as a share of the oracle's (1.0 when there is none)."""
        skills, oracle = self.outcome("skills_only").fcr, self.outcome("oracle").fcr
        gain = oracle - skills
        return (self.outcome("model").fcr - skills) / gain if gain > 0 else 1.0

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow: ``routing_{fcr,handle_time_s,csat}_<policy>`` and the totals."""
        out = {
            f"routing_{name}_{o.policy}": value
            for o in self.outcomes
            for name, value in (("fcr", o.fcr), ("handle_time_s", o.handle_time_s), ("csat", o.csat))
        }
        return out | {
            "routing_gain_captured": self.gain_captured,
            "routing_contacts": float(self.contacts),
            "routing_candidates": float(self.candidates),
        }

    def lines(self) -> list[str]:
        """The table a command prints: a header, one line per policy, the goal figure."""
        head = (
            f"routing {self.contacts:,} test contacts among {self.candidates} free agents; the true expected outcome "
            "of the agent each policy picks:"
        )
        rows = [f"  {'policy':<12} {'FCR':>6} {'handle time':>12} {'CSAT':>5}"]
        rows += [
            f"  {o.policy.replace('_', '-'):<12} {o.fcr:>6.3f} {o.handle_time_s:>10.0f} s {o.csat:>5.2f}"
            for o in self.outcomes
        ]
        return [head, *rows, self.goal_line()]

    def goal_line(self) -> str:
        """The model's share of the oracle's FCR gain over skills-only routing, against :data:`GOAL_SHARE`."""
        met = "met" if self.gain_captured >= GOAL_SHARE else "NOT met"
        return (
            f"model captures {self.gain_captured:.1%} of the oracle's FCR gain over skills-only routing "
            f"(goal ≥ {GOAL_SHARE:.0%}: {met})"
        )


def held_out_contacts(contacts: pa.Table, source: Path) -> pa.Table:
    """The contacts of the newest 30 days, the resolution model's test split."""
    return contacts.filter(pa.array(time_split(contacts.column(STARTED), source)[2]))


def oracle_inputs(root: Path, rows: pa.Table) -> tuple[Columns, Columns]:
    """The oracle's inputs for ``rows`` (a frame's rows: ``contact_id``, ``agent_id``, ``started_at``, the
    ``contact_`` fields, ``repeat``): the contact's side with the customer's hidden state, and the agent's
    profile and latent skill in the month the contact started, from the world's truth tables in ``root``."""
    paths = (root / f"{CONTACT_TRUTH}.parquet", root / f"{AGENT_TRUTH}.parquet")
    if not all(p.is_file() for p in paths):
        raise DatasetError(f"{root}: no {CONTACT_TRUTH} and {AGENT_TRUTH} tables; only a simulated world has an oracle")
    hidden = pq.read_table(paths[0])
    at = pc.index_in(rows.column("contact_id"), value_set=hidden.column("contact_id"))
    if at.null_count:
        raise DatasetError(f"{paths[0]}: {at.null_count} contact(s) the world did not write")
    contacts: dict[str, np.ndarray] = {
        name: rows.column(CONTACT_PREFIX + name).to_numpy(zero_copy_only=False).astype(str)
        for name in ("intent", "channel", "language")
    }
    contacts["repeat"] = rows.column("repeat").to_numpy(zero_copy_only=False).astype(bool)
    for name in ("complaint", "mood"):
        contacts[name] = hidden.column(name).take(at).to_numpy(zero_copy_only=False)
    truth = pq.read_table(paths[1])
    # A contact belongs to the month whose closing snapshot is the first at or after its start.
    months = np.unique(truth.column("month_end").to_numpy())
    started = rows.column(STARTED).to_numpy()
    if len(started) and started.max() > months[-1]:
        raise DatasetError(f"{paths[1]}: no month holds contacts started after {months[-1]}")
    keys = pa.table(
        {
            "agent_id": rows.column("agent_id"),
            "month_end": pa.array(months[np.searchsorted(months, started)], truth.schema.field("month_end").type),
            "_row": pa.array(np.arange(rows.num_rows)),
        }
    )
    joined = keys.join(truth, ["agent_id", "month_end"], join_type="inner").sort_by("_row")
    if joined.num_rows != rows.num_rows:
        raise DatasetError(f"{paths[1]}: {rows.num_rows - joined.num_rows} pair(s) with an agent the world lacks")
    agents = {
        name: joined.column(name).to_numpy(zero_copy_only=False)
        for name in truth.column_names
        if name not in ("agent_id", "month_end")
    }
    return contacts, agents


def evaluate_routing(
    bundle: ModelBundle,
    registry: Registry,
    offline: OfflineStore,
    contacts: pa.Table,
    *,
    seed: int,
    candidates: int = CANDIDATES,
) -> RoutingEvaluation:
    """Route ``contacts`` (rows of the world's contacts table, e.g. :func:`held_out_contacts`) by every policy among
    ``candidates`` agents drawn per contact, each pick scored by the oracle (see the module's docstring)."""
    agent_ids = offline.latest("agent").column("agent_id")
    k = min(candidates, len(agent_ids))
    if k == 0:
        raise DatasetError(f"{offline.table_path('agent')}: no agents to route the test contacts to")
    rng = np.random.default_rng(seed)
    joined = with_customer(offline, contacts)
    n = joined.num_rows
    drawn = np.concatenate([rng.choice(len(agent_ids), k, replace=False) for _ in range(n)])
    rows = joined.take(np.repeat(np.arange(n), k))
    rows = with_agent(offline, rows.set_column(rows.column_names.index("agent_id"), "agent_id", agent_ids.take(drawn)))
    skill = np.array([registry.intent_skills[i] for i in rows.column("contact_intent").to_pylist()])
    language = rows.column("contact_language").to_numpy(zero_copy_only=False).astype(str)
    eligible = np.zeros(len(skill), dtype=bool)
    rating = np.zeros(len(skill))
    for s in set(registry.intent_skills.values()):
        m = skill == s
        eligible[m] = _flag(rows, f"skill_{s}")[m]
        rating[m] = np.nan_to_num(_number(rows, f"proficiency_{s}")[m], nan=-1.0)
    for lang in set(language.tolist()):
        m = language == lang
        eligible[m] &= _flag(rows, f"speaks_{lang}")[m]
    truth_contacts, truth_agents = oracle_inputs(offline.root, rows)
    fcr = true_resolution_probability(truth_contacts, truth_agents)
    outcomes = np.stack(
        [fcr, true_handle_time(truth_contacts, truth_agents), true_csat(truth_contacts, truth_agents)], axis=1
    ).reshape(n, k, 3)
    shaped = eligible.reshape(n, k)
    served = shaped.any(axis=1)
    if not served.any():
        raise DatasetError("routing evaluation: no test contact had an eligible candidate agent")
    scores = {
        "random": np.zeros(n * k),
        "skills_only": rating,
        "model": bundle.predict(pair_matrix(registry, offline, rows)),
        "oracle": fcr,
    }
    results = []
    for policy in POLICIES:
        pick = pick_shares(scores[policy].reshape(n, k), shaped)[served]
        mean = (pick[:, :, None] * outcomes[served]).sum(axis=1).mean(axis=0)
        results.append(PolicyOutcome(policy, float(mean[0]), float(mean[1]), float(mean[2])))
    return RoutingEvaluation(tuple(results), int(served.sum()), k)


def pick_shares(scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per contact (row), the probability each candidate is picked: the eligible with the top score share it."""
    masked = np.where(eligible, scores, -np.inf)
    top = eligible & (masked == masked.max(axis=1, keepdims=True))
    return top / np.maximum(top.sum(axis=1, keepdims=True), 1)


def _flag(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(pc.fill_null(table.column(name), False).to_numpy(zero_copy_only=False), dtype=bool)


def _number(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
