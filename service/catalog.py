"""The action catalog: what may be recommended, to whom, when, how often, and how actions are arbitrated.

Loaded from YAML and validated at load, against the feature contract too (an eligibility rule over a feature the
contract does not declare fails then), with errors that name the file, the action and the field
(:class:`~service.errors.CatalogError`). Rules are compiled to positions in the customer vector, so a request
pays a few float comparisons per action.

An action is a candidate for a customer on a channel when all of these hold (:meth:`Catalog.eligible`):

- the channel is one of its ``channels``; marketing consent when it ``requires_consent``;
- every ``eligibility`` rule over the customer's features (a missing value fails a rule);
- now is within its ``start`` and ``end`` (a date starts at 00:00 UTC and ends at 24:00 UTC of that day);
- its ``trigger``, if any, holds: the newest event of a type within so many hours, rules over features and over
  the live context (what the desktop says of the contact now: intent, sentiment, cart value, a person asked for);
- its ``contact_policy`` allows it (:mod:`service.contact_policy`); when the policy state could not be read
  (Redis unavailable) an action under a policy is withheld rather than risk breaking it.

``no_action`` is always a candidate and takes none of these rules. The escape action (``arbitration.escape``) is
never a candidate of its own: arbitration puts it in front when the customer asks for a person or no action is
likely enough to be accepted (:mod:`service.arbitration`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features import EntitySchema, Registry
from service.contact_policy import ContactPolicy, PolicyState
from service.decision_records import RETAINED
from service.errors import CatalogError, CatalogProblem

Channel = Literal["voice", "chat", "email", "sms", "web"]
Intent = Literal["billing", "technical", "cancel", "sales"]
NO_ACTION = "no_action"
OFFER_FEATURE = "last_offer"
"""The contract's feature whose categories are the actions an offer event may name (see :attr:`Action.offer`)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Rule(_Strict):
    """A condition on one customer feature; every given bound must hold, a missing value fails it.

    ``in`` lists category names, or ``true``/``false`` for a bool feature.
    """

    min: float | None = None
    max: float | None = None
    in_: tuple[str | bool, ...] | None = Field(default=None, alias="in", min_length=1)


class Range(_Strict):
    """Bounds on a number of the live context; each given bound must hold, an unknown value fails it."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def holds(self, value: float | None) -> bool:
        """Whether ``value`` is known and within the bounds."""
        if value is None:
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class LiveContext(_Strict):
    """What the desktop knows of the live contact now, beyond the customer's stored features (all optional)."""

    intent: Intent | None = Field(default=None, description="Why the customer is in touch (IVR, chat bot, agent).")
    sentiment: float | None = Field(
        default=None, ge=-1, le=1, description="Sentiment of the conversation so far, -1 (angry) to 1 (delighted)."
    )
    cart_value: float | None = Field(default=None, ge=0, description="Value of the customer's open cart.")
    wants_person: bool = Field(default=False, description="The customer asked for a person (a specialist).")


NO_CONTEXT = LiveContext()
"""A request's context when it sends none: one shared instance (frozen), not a model built per request."""


class ContextCondition(_Strict):
    """Conditions on the live context; every one given must hold."""

    intent: tuple[Intent, ...] | None = Field(default=None, min_length=1, description="The intent is one of these.")
    sentiment: Range | None = None
    cart_value: Range | None = None
    wants_person: bool | None = None

    def holds(self, context: LiveContext) -> bool:
        """Whether ``context`` meets every condition given."""
        if self.intent is not None and context.intent not in self.intent:
            return False
        if self.sentiment is not None and not self.sentiment.holds(context.sentiment):
            return False
        if self.cart_value is not None and not self.cart_value.holds(context.cart_value):
            return False
        return self.wants_person is None or context.wants_person == self.wants_person


class Trigger(_Strict):
    """What makes an event-driven action a candidate: every condition given must hold."""

    event: str | None = Field(default=None, description="An event type of the contract...")
    within_hours: float | None = Field(default=None, gt=0, description="...whose newest event is this recent.")
    features: dict[str, Rule] = Field(default_factory=dict, description="Rules over the customer's features.")
    context: ContextCondition | None = Field(default=None, description="Conditions on the live context.")

    @model_validator(mode="after")
    def _complete(self) -> Trigger:
        if (self.event is None) != (self.within_hours is None):
            raise ValueError("give event and within_hours together (the newest event of that type within so long)")
        if self.event is None and not self.features and self.context is None:
            raise ValueError("a trigger needs a condition: event and within_hours, features or context")
        return self


class Action(_Strict):
    """One next-best action as the business defines it."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)
    title: str
    script: str
    group: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Its priority group (arbitration.groups).")
    channels: tuple[Channel, ...] = Field(min_length=1)
    value: float = Field(ge=0)
    cost: float = Field(ge=0)
    lever: float = Field(default=1.0, gt=0)
    prior_accept: float = Field(gt=0, le=1)
    requires_consent: bool = False
    eligibility: dict[str, Rule] = Field(default_factory=dict)
    offer: bool = Field(
        default=True,
        description="An offer the customer accepts or declines: feedback on it becomes offer_presented, "
        "offer_accepted and offer_declined events, which the models read (the contract's last_offer must list it).",
    )
    contact_policy: ContactPolicy | None = None
    start: date | datetime | None = Field(default=None, description="First day (or instant, UTC) it may be given.")
    end: date | datetime | None = Field(default=None, description="Last day (or instant, UTC) it may be given.")
    trigger: Trigger | None = None

    @property
    def feeds_offer_events(self) -> bool:
        """Whether feedback on it becomes offer events (never for ``no_action``)."""
        return self.offer and self.id != NO_ACTION


class ContextWhen(_Strict):
    """When a context weight applies: every condition given holds."""

    context: ContextCondition | None = None
    features: dict[str, Rule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some(self) -> ContextWhen:
        if self.context is None and not self.features:
            raise ValueError("give context, features or both")
        return self


class ContextWeight(_Strict):
    """Multipliers that lift (or lower) whole groups of actions when the live context says so."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    when: ContextWhen
    lift: dict[str, float] = Field(min_length=1, description="Group → multiplier (> 0; above 1 lifts).")

    @model_validator(mode="after")
    def _positive(self) -> ContextWeight:
        for group, weight in self.lift.items():
            if not weight > 0:
                raise ValueError(f"lift.{group}: a weight must be above 0, got {weight}")
        return self


class Escape(_Strict):
    """The escape hatch: the action recommended when the models have nothing good enough, or a person is asked for."""

    action: str = Field(description="The catalog action recommended then (a transfer to a specialist).")
    min_propensity: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="When every scored offer's P(accept) is below this, the escape action leads (0: never for "
        "that reason).",
    )


class Arbitration(_Strict):
    """How candidates are ranked beyond their scores."""

    groups: dict[str, int] = Field(
        default_factory=dict,
        description="Priority of each group: a lower number ranks first whatever the scores; equal priorities are "
        "compared by score. Empty: every group at 0 (scores alone).",
    )
    escape: Escape | None = None


class _CatalogFile(_Strict):
    arbitration: Arbitration = Field(default_factory=Arbitration)
    context_weights: tuple[ContextWeight, ...] = ()
    actions: tuple[Action, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Situation:
    """What a request knows beyond the customer's feature vector: the time, the live context, how recent each
    event view is, and the customer's contact-policy state (None: it could not be read)."""

    now: float
    context: LiveContext = NO_CONTEXT
    view_age_s: Mapping[str, float | None] = field(default_factory=dict)
    policy: PolicyState | None = field(default_factory=PolicyState)


class _Check:
    """A rule compiled against the customer vector's layout."""

    def __init__(self, index: int, rule: Rule, codes: frozenset[float] | None) -> None:
        self.index, self.rule, self.codes = index, rule, codes

    def holds(self, x: np.ndarray) -> bool:
        v = float(x[self.index])
        if math.isnan(v):
            return False
        if self.codes is not None and v not in self.codes:
            return False
        if self.rule.min is not None and v < self.rule.min:
            return False
        return not (self.rule.max is not None and v > self.rule.max)


@dataclass(frozen=True)
class _Compiled:
    """What one action's rules need at request time, resolved at load."""

    checks: tuple[_Check, ...]
    starts: float
    ends: float
    trigger_checks: tuple[_Check, ...] = ()
    trigger_view: str | None = None
    trigger_within_s: float = 0.0


def _start_s(value: datetime | date) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return datetime.combine(value, time(), UTC).timestamp()


def _end_s(value: datetime | date) -> float:
    """The first instant after ``value``: a date ends at midnight UTC after it."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return datetime.combine(value + timedelta(days=1), time(), UTC).timestamp()


class Catalog:
    """The validated catalog, compiled for one feature layout."""

    def __init__(
        self,
        actions: tuple[Action, ...],
        customer: EntitySchema,
        *,
        arbitration: Arbitration | None = None,
        context_weights: tuple[ContextWeight, ...] = (),
        version: str = "",
    ) -> None:
        arbitration = arbitration or Arbitration()
        self.actions = actions
        self.by_id = {a.id: a for a in actions}
        self.version = version
        """A short hash of the file's bytes: which catalog answered (decision records keep it)."""
        self.context_weights = context_weights
        self.priority: dict[str, int] = dict(arbitration.groups)
        self.escape = self.by_id.get(arbitration.escape.action) if arbitration.escape else None
        self.min_propensity = arbitration.escape.min_propensity if arbitration.escape else 0.0
        self._consent = customer.index["consent_marketing"]
        self._customer = customer
        problems = _check_references(actions, customer, arbitration, context_weights)
        self._compiled: dict[str, _Compiled] = {}
        for action in actions:
            trigger = action.trigger
            self._compiled[action.id] = _Compiled(
                checks=self._compile(action.eligibility, action.id, "eligibility", problems),
                starts=_start_s(action.start) if action.start is not None else -math.inf,
                ends=_end_s(action.end) if action.end is not None else math.inf,
                trigger_checks=self._compile(trigger.features, action.id, "trigger.features", problems)
                if trigger
                else (),
                trigger_view=_event_view(customer, trigger.event, action.id, problems)
                if trigger and trigger.event
                else None,
                trigger_within_s=(trigger.within_hours or 0.0) * 3600 if trigger else 0.0,
            )
        self._weights = [
            (w, self._compile(w.when.features, None, f"context_weights[{w.name}].when.features", problems))
            for w in context_weights
        ]
        if problems:
            raise CatalogError(problems)
        self.policy_horizon_days = max(
            (a.contact_policy.horizon_days for a in actions if a.contact_policy is not None), default=0.0
        )
        """The longest any contact policy looks back: how long a customer's contact-policy state is kept."""
        self._candidates = tuple(a for a in actions if self.escape is None or a.id != self.escape.id)

    def _compile(
        self, rules: Mapping[str, Rule], action: str | None, where: str, problems: list[CatalogProblem]
    ) -> tuple[_Check, ...]:
        checks = []
        for name, rule in rules.items():
            if name not in self._customer.index:
                problems.append(CatalogProblem(action, f"{where}.{name}", f"unknown feature {name!r}"))
                continue
            feature = self._customer.feature(name)
            codes = None
            if rule.in_ is not None and feature.dtype not in ("category", "bool"):
                problems.append(CatalogProblem(action, f"{where}.{name}.in", f"{name} is a number: use min and max"))
                continue
            if rule.in_ is not None:
                codes = frozenset(feature.encode(v) for v in rule.in_)
                if any(math.isnan(c) for c in codes):
                    allowed = feature.categories if feature.dtype == "category" else "true/false"
                    problems.append(CatalogProblem(action, f"{where}.{name}.in", f"a value outside {allowed}"))
                    continue
            checks.append(_Check(self._customer.index[name], rule, codes))
        return tuple(checks)

    @classmethod
    def load(cls, registry: Registry, path: Path | None = None) -> Catalog:
        """Load and validate the catalog at ``path`` (the packaged ``catalog.yaml`` by default).

        Raises :class:`CatalogError` naming the file, and each problem's action and field.
        """
        source = path if path is not None else default_path()
        try:
            raw = source.read_bytes()
            data = yaml.safe_load(raw)
        except (OSError, yaml.YAMLError) as exc:
            problem = CatalogProblem(None, "(file)", f"cannot read the catalog: {exc}")
            raise CatalogError([problem], str(source)) from exc
        try:
            parsed = _CatalogFile.model_validate(data)
        except ValidationError as exc:
            problems = [_problem(data, err["loc"], err["msg"]) for err in exc.errors()]
            raise CatalogError(problems, str(source)) from exc
        try:
            return cls(
                parsed.actions,
                registry.entity("customer"),
                arbitration=parsed.arbitration,
                context_weights=parsed.context_weights,
                version=hashlib.sha256(raw).hexdigest()[:12],
            )
        except CatalogError as exc:
            raise CatalogError(exc.problems, str(source)) from exc

    def eligible(self, x: np.ndarray, channel: str, situation: Situation | None = None) -> list[Action]:
        """The candidates for this customer on this channel (the escape action is never one).

        Without ``situation`` only the static rules are checked (channel, consent, eligibility); with it, dates,
        triggers and contact policies too (see the module's docstring).
        """
        return [a for a in self._candidates if self._admits(a, x, channel, situation)]

    def escape_for(self, x: np.ndarray, channel: str, situation: Situation | None = None) -> Action | None:
        """The escape action when it may be given to this customer now (its own rules hold), else None."""
        if self.escape is None or not self._admits(self.escape, x, channel, situation):
            return None
        return self.escape

    def _admits(self, a: Action, x: np.ndarray, channel: str, situation: Situation | None) -> bool:
        if a.id == NO_ACTION:
            return True
        if channel not in a.channels or (a.requires_consent and x[self._consent] != 1.0):
            return False
        compiled = self._compiled[a.id]
        if not all(c.holds(x) for c in compiled.checks):
            return False
        if situation is None:
            return True
        if not compiled.starts <= situation.now < compiled.ends:
            return False
        if a.trigger is not None and not self._triggered(a.trigger, compiled, x, situation):
            return False
        if a.contact_policy is not None:
            if situation.policy is None:
                return False
            return situation.policy.blocks(a.id, a.contact_policy, situation.now) is None
        return True

    @staticmethod
    def _triggered(trigger: Trigger, compiled: _Compiled, x: np.ndarray, situation: Situation) -> bool:
        if compiled.trigger_view is not None:
            age = situation.view_age_s.get(compiled.trigger_view)
            if age is None or not age <= compiled.trigger_within_s:
                return False
        if trigger.context is not None and not trigger.context.holds(situation.context):
            return False
        return all(c.holds(x) for c in compiled.trigger_checks)

    def weights(self, x: np.ndarray, context: LiveContext) -> dict[str, float]:
        """Each group's context weight for this customer and live context: the product of the lifts of every
        context weight whose conditions hold (groups no weight names are at 1)."""
        out: dict[str, float] = {}
        for weight, checks in self._weights:
            when = weight.when
            if when.context is not None and not when.context.holds(context):
                continue
            if not all(c.holds(x) for c in checks):
                continue
            for group, lift in weight.lift.items():
                out[group] = out.get(group, 1.0) * lift
        return out

    def priority_of(self, action: Action) -> int:
        """The action's group priority (lower ranks first)."""
        return self.priority.get(action.group, 0)


def default_path() -> Path:
    """The packaged catalog's file."""
    return Path(str(resources.files("service").joinpath("catalog.yaml")))


def _check_references(
    actions: tuple[Action, ...],
    customer: EntitySchema,
    arbitration: Arbitration,
    context_weights: tuple[ContextWeight, ...],
) -> list[CatalogProblem]:
    """What the file's parts say of each other and of the contract: ids unique, no_action plain, groups declared,
    the escape action known, offers known to the contract."""
    problems: list[CatalogProblem] = []
    ids = [a.id for a in actions]
    for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(CatalogProblem(duplicate, "id", "duplicate action id"))
    if RETAINED in ids:
        why = f"{RETAINED!r} is reserved: a recommend's feedback keeps its retention answer under that name"
        problems.append(CatalogProblem(RETAINED, "id", why))
    if NO_ACTION not in ids:
        problems.append(
            CatalogProblem(
                None, "actions", f"the catalog must contain {NO_ACTION!r}: doing nothing is always a candidate"
            )
        )
    groups = arbitration.groups
    offers = set(customer.feature(OFFER_FEATURE).categories or ()) if OFFER_FEATURE in customer.index else set()
    for a in actions:
        if a.id == NO_ACTION:
            for name in ("eligibility", "contact_policy", "start", "end", "trigger"):
                if getattr(a, name):
                    problems.append(CatalogProblem(a.id, name, "no_action is always a candidate: it takes no rules"))
        elif a.offer and a.id not in offers:
            problems.append(
                CatalogProblem(
                    a.id,
                    "offer",
                    f"the contract's {OFFER_FEATURE} does not list {a.id!r}, so its offer events would read as "
                    "unknown: add it there (and retrain) or set offer: false",
                )
            )
        if a.start is not None and a.end is not None and _end_s(a.end) <= _start_s(a.start):
            problems.append(CatalogProblem(a.id, "end", f"{a.end} is not after start {a.start}"))
        if groups and a.group not in groups:
            problems.append(CatalogProblem(a.id, "group", f"{a.group!r} is not in arbitration.groups {sorted(groups)}"))
    for w in context_weights:
        for group in w.lift:
            if groups and group not in groups:
                problems.append(
                    CatalogProblem(None, f"context_weights[{w.name}].lift.{group}", "not in arbitration.groups")
                )
    names = [w.name for w in context_weights]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.append(CatalogProblem(None, f"context_weights[{duplicate}]", "duplicate name"))
    if arbitration.escape is not None:
        escape = arbitration.escape.action
        if escape not in ids:
            problems.append(CatalogProblem(None, "arbitration.escape.action", f"no action {escape!r} in the catalog"))
        elif escape == NO_ACTION:
            problems.append(CatalogProblem(None, "arbitration.escape.action", "the escape cannot be no_action"))
    return problems


def _event_view(customer: EntitySchema, event: str, action: str, problems: list[CatalogProblem]) -> str | None:
    """The events view whose age is the age of ``event``'s newest occurrence: one that reads that event alone."""
    views = [v for v in customer.views if v.source == "events"]
    reading = [v for v in views if any(f.aggregation and f.aggregation.event == event for f in v.features)]
    alone = [v for v in reading if all(f.aggregation and f.aggregation.event == event for f in v.features)]
    if alone:
        return alone[0].name
    if not reading:
        why = f"no customer feature reads {event!r} events, so the store keeps no time for them"
    else:
        shared = ", ".join(sorted({v.name for v in reading}))
        why = (
            f"{event!r} shares its view ({shared}) with other events, so the store keeps no time of its own for it: "
            "give it a view of its own in registry.yaml"
        )
    problems.append(CatalogProblem(action, "trigger.event", why))
    return None


def _problem(data: object, loc: tuple[int | str, ...], message: str) -> CatalogProblem:
    """A validation error as (action id, field within the action or the file, message)."""
    if len(loc) >= 2 and loc[0] == "actions" and isinstance(loc[1], int):
        actions = data.get("actions") if isinstance(data, dict) else None
        entry = actions[loc[1]] if isinstance(actions, list) and loc[1] < len(actions) else None
        action_id = entry.get("id") if isinstance(entry, dict) else None
        return CatalogProblem(str(action_id or f"#{loc[1]}"), ".".join(str(p) for p in loc[2:]) or "(action)", message)
    if len(loc) >= 2 and loc[0] == "context_weights" and isinstance(loc[1], int):
        weights = data.get("context_weights") if isinstance(data, dict) else None
        entry = weights[loc[1]] if isinstance(weights, list) and loc[1] < len(weights) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        rest = "".join(f".{p}" for p in loc[2:])
        return CatalogProblem(None, f"context_weights[{name or loc[1]}]{rest}", message)
    return CatalogProblem(None, ".".join(str(p) for p in loc) or "(file)", message)
