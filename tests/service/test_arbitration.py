"""Arbitration over random catalogs, customers and situations, with the session's real champion models.

The properties are checked against an oracle written here from the catalog's plain description (the YAML as
data), not through :class:`~service.catalog.Catalog`'s compiled rules: an ineligible, out-of-date, untriggered,
capped or non-consented action is never returned, ``no_action`` always is when there is room, and the answer is
ranked by (group priority, score) with the escape action, when it leads, at the head of its group.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import OfflineStore, Registry
from service.arbitration import scaled
from service.catalog import NO_ACTION, Catalog, LiveContext, Situation, _CatalogFile
from service.contact_policy import DAY_SECONDS, PolicyState
from service.decisioning import ScoredAction, recommend, recommend_by_priors
from service.model_holder import Models
from training import ModelRegistry

NOW = time.time()
TODAY = math.floor(NOW / DAY_SECONDS)
LEARNED = ("retention_offer", "discount_10", "plan_upgrade", "tech_callback", "loyalty_bonus", "payment_plan")
INVENTED = ("gift_card", "vip_callback")
GROUPS = ("compliance", "service", "retention", "sales")
CHANNELS = ("voice", "chat", "email")
INTENTS = ("billing", "technical", "cancel", "sales")
ESCAPE = "transfer_specialist"


@pytest.fixture(scope="module")
def scoring(
    champions: dict[str, str], model_registry: ModelRegistry, offline: OfflineStore, registry: Registry
) -> tuple[Models, np.ndarray]:
    """The champion models and 300 of the test world's customers as they stand now."""
    churn, churn_version = model_registry.load("churn")
    propensity, propensity_version = model_registry.load("propensity")
    models = Models(churn, propensity, {"nba-churn": churn_version, "nba-propensity": propensity_version})
    ids = offline.latest("customer").column("customer_id").to_pylist()[:300]
    return models, offline.matrix("customer", offline.as_of("customer", ids))


def _day(offset: int) -> date:
    return (datetime.fromtimestamp(NOW, UTC) + timedelta(days=offset)).date()


@st.composite
def _rules(draw: st.DrawFn) -> dict[str, Any]:
    plans = st.lists(st.sampled_from(["basic", "standard", "premium"]), min_size=1, unique=True)
    choices = {
        "tenure_months": st.builds(lambda v: {"min": v}, st.integers(0, 60)),
        "plan": st.builds(lambda v: {"in": v}, plans),
        "open_complaint": st.builds(lambda v: {"in": [v]}, st.booleans()),
        "failed_payments_90d": st.builds(lambda v: {"min": v}, st.integers(0, 2)),
        "contacts_30d": st.builds(lambda v: {"max": v}, st.integers(0, 4)),
    }
    names = draw(st.lists(st.sampled_from(sorted(choices)), max_size=2, unique=True))
    return {name: draw(choices[name]) for name in names}


@st.composite
def _action(draw: st.DrawFn, action_id: str, group: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": action_id,
        "title": action_id,
        "script": "say it",
        "group": group or draw(st.sampled_from(GROUPS)),
        "offer": action_id in LEARNED,
        "channels": draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=3, unique=True)),
        "value": draw(st.sampled_from([0, 20, 80])),
        "cost": draw(st.sampled_from([0, 15, 60, 120])),
        "lever": draw(st.sampled_from([0.5, 1.0, 2.0])),
        "prior_accept": draw(st.sampled_from([0.05, 0.3, 0.9])),
        "requires_consent": draw(st.booleans()),
        "eligibility": draw(_rules()),
    }
    start, end = draw(st.sampled_from([None, -30, -1, 0, 2])), draw(st.sampled_from([None, -2, 0, 1, 30]))
    if start is not None and (end is None or end >= start):
        spec["start"] = _day(start)
    if end is not None and (start is None or end >= start):
        spec["end"] = _day(end)
    trigger = draw(st.sampled_from([None, "event", "context"]))
    if trigger == "event":
        spec["trigger"] = {"event": "payment_failed", "within_hours": draw(st.sampled_from([1, 24]))}
    elif trigger == "context":
        spec["trigger"] = {"context": {"intent": draw(st.lists(st.sampled_from(INTENTS), min_size=1, unique=True))}}
    if draw(st.booleans()):
        spec["contact_policy"] = {
            "max_presentations": draw(st.integers(1, 3)),
            "window_days": draw(st.sampled_from([1, 7, 30])),
            "cooldown_after_decline_days": draw(st.sampled_from([0, 14])),
            "suppress_after_accept_days": draw(st.sampled_from([0, 60])),
        }
    return spec


@st.composite
def _catalog_data(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(st.sampled_from(LEARNED + INVENTED), min_size=1, max_size=6, unique=True))
    groups = {g: draw(st.integers(0, 3)) for g in GROUPS} | {"none": draw(st.integers(0, 3))}
    no_action = {"id": NO_ACTION, "title": "nothing", "script": "-", "group": "none", "offer": False,
                 "channels": list(CHANNELS), "value": 0, "cost": 0, "prior_accept": 1.0}  # fmt: skip
    actions = [no_action] + [draw(_action(i)) for i in ids]
    arbitration: dict[str, Any] = {"groups": groups}
    if draw(st.booleans()):
        actions.append(draw(_action(ESCAPE, "service")) | {"offer": False, "requires_consent": False})
        arbitration["escape"] = {"action": ESCAPE, "min_propensity": draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))}
    lifts = st.tuples(st.sampled_from(INTENTS), st.sampled_from(GROUPS), st.sampled_from([0.5, 2.0]))
    weights = [
        {"name": f"w{i}", "when": {"context": {"intent": [intent]}}, "lift": {group: lift}}
        for i, (intent, group, lift) in enumerate(draw(st.lists(lifts, max_size=2)))
    ]
    return {"arbitration": arbitration, "context_weights": weights, "actions": actions}


@st.composite
def _situation(draw: st.DrawFn, action_ids: list[str]) -> Situation:
    some = st.lists(st.sampled_from(action_ids), max_size=3, unique=True)
    days_back = st.lists(st.integers(0, 40), max_size=3, unique=True)
    presented = {a: {TODAY - back: draw(st.integers(1, 2)) for back in draw(days_back)} for a in draw(some)}
    declined = {a: NOW - draw(st.floats(0, 60)) * DAY_SECONDS for a in draw(some)}
    accepted = {a: NOW - draw(st.floats(0, 90)) * DAY_SECONDS for a in draw(some)}
    context = LiveContext(
        intent=draw(st.sampled_from([None, *INTENTS])),
        sentiment=draw(st.sampled_from([None, -0.8, 0.5])),
        wants_person=draw(st.booleans()),
    )
    age = draw(st.sampled_from([None, 600.0, 7_200.0, 200_000.0]))
    policy = draw(st.sampled_from([PolicyState(presented, declined, accepted), None]))
    return Situation(now=NOW, context=context, view_age_s={"customer_payments": age}, policy=policy)


def _oracle_admits(spec: dict[str, Any], x: np.ndarray, channel: str, s: Situation, registry: Registry) -> bool:
    """Whether the catalog's plain description allows ``spec`` for this customer now."""
    schema = registry.entity("customer")
    if channel not in spec["channels"]:
        return False
    if spec.get("requires_consent") and x[schema.index["consent_marketing"]] != 1.0:
        return False
    rules = dict(spec.get("eligibility") or {})
    trigger = spec.get("trigger") or {}
    for name, rule in rules.items():
        human = schema.feature(name).decode(float(x[schema.index[name]]))
        if human is None:
            return False
        if "min" in rule and human < rule["min"]:
            return False
        if "max" in rule and human > rule["max"]:
            return False
        if "in" in rule and human not in rule["in"]:
            return False
    if "start" in spec and datetime.combine(spec["start"], datetime.min.time(), UTC).timestamp() > NOW:
        return False
    if "end" in spec and datetime.combine(spec["end"] + timedelta(days=1), datetime.min.time(), UTC).timestamp() <= NOW:
        return False
    if "event" in trigger:
        age = s.view_age_s.get("customer_payments")
        if age is None or age > trigger["within_hours"] * 3600:
            return False
    if "context" in trigger and s.context.intent not in trigger["context"]["intent"]:
        return False
    policy = spec.get("contact_policy")
    if policy:
        if s.policy is None:
            return False
        days = s.policy.presented.get(spec["id"], {})
        if sum(n for d, n in days.items() if d > TODAY - policy["window_days"]) >= policy["max_presentations"]:
            return False
        declined = s.policy.declined_at.get(spec["id"])
        if declined is not None and NOW - declined < policy["cooldown_after_decline_days"] * DAY_SECONDS:
            return False
        accepted = s.policy.accepted_at.get(spec["id"])
        if accepted is not None and NOW - accepted < policy["suppress_after_accept_days"] * DAY_SECONDS:
            return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=_catalog_data(),
    pick=st.integers(0, 299),
    consent=st.sampled_from([None, 0.0, 1.0]),
    channel=st.sampled_from(CHANNELS),
    top_k=st.integers(1, 6),
    with_models=st.booleans(),
    draw=st.data(),
)
def test_only_admissible_actions_come_back_ranked_by_group_priority_then_score(
    scoring: tuple[Models, np.ndarray],
    registry: Registry,
    data: dict[str, Any],
    pick: int,
    consent: float | None,
    channel: str,
    top_k: int,
    with_models: bool,
    draw: st.DataObject,
) -> None:
    models, rows = scoring
    schema = registry.entity("customer")
    x = rows[pick].copy()
    if consent is not None:
        x[schema.index["consent_marketing"]] = consent
    parsed = _CatalogFile.model_validate(data)
    catalog = Catalog(
        parsed.actions, schema, arbitration=parsed.arbitration, context_weights=parsed.context_weights, version="t"
    )
    specs = {a["id"]: a for a in data["actions"]}
    situation = draw.draw(_situation([a for a in specs if a != NO_ACTION]))

    def answer(k: int) -> list[ScoredAction]:
        if with_models:
            return recommend(
                x, known=np.isfinite(x), catalog=catalog, channel=channel, models=models, schema=schema,
                top_k=k, situation=situation,
            ).ranked[:k]  # fmt: skip
        return recommend_by_priors(x, catalog=catalog, channel=channel, top_k=k, situation=situation)

    full, ranked = answer(50), answer(top_k)
    assert [(s.action.id, s.score) for s in ranked] == [(s.action.id, s.score) for s in full[:top_k]]
    ids = [s.action.id for s in full]
    assert len(ids) == len(set(ids))
    assert NO_ACTION in ids, "doing nothing is always a candidate"
    escape = catalog.escape.id if catalog.escape else None
    offers = [s.propensity for s in full if s.action.id not in (NO_ACTION, escape)]
    for s in full:
        if s.action.id == NO_ACTION:
            continue
        spec = specs[s.action.id]
        assert _oracle_admits(spec, x, channel, situation, registry), f"{s.action.id} returned against its rules"
        if spec.get("requires_consent"):
            assert x[schema.index["consent_marketing"]] == 1.0, f"{s.action.id} returned without consent"
    others = {a: spec for a, spec in specs.items() if a not in (NO_ACTION, escape)}
    admissible = {a for a, spec in others.items() if _oracle_admits(spec, x, channel, situation, registry)}
    assert set(ids) - {NO_ACTION, escape} == admissible, "every admissible action is a candidate"
    called_for = situation.context.wants_person or bool(offers and max(offers) < catalog.min_propensity)
    escape_admissible = escape is not None and _oracle_admits(specs[escape], x, channel, situation, registry)
    assert (escape in ids) == (called_for and escape_admissible), "the escape leads exactly when called for"
    _assert_ranked(full, catalog, escape)
    _assert_weights(full, catalog, situation)


def _assert_ranked(ranked: list[ScoredAction], catalog: Catalog, escape: str | None) -> None:
    keys = [(catalog.priority_of(s.action), s.action.id != escape, -s.score, s.action.id) for s in ranked]
    assert keys == sorted(keys), f"not ranked by (group priority, score): {keys}"


def _assert_weights(ranked: list[ScoredAction], catalog: Catalog, situation: Situation) -> None:
    lifts: dict[str, float] = {}
    for weight in catalog.context_weights:
        intents = weight.when.context.intent if weight.when.context else None
        if intents is not None and situation.context.intent in intents:
            for group, lift in weight.lift.items():
                lifts[group] = lifts.get(group, 1.0) * lift
    for s in ranked:
        if catalog.escape is not None and s.action.id == catalog.escape.id:
            continue
        weight = lifts.get(s.action.group, 1.0)
        assert s.context_weight == pytest.approx(weight)
        multiplier = s.action.lever * weight
        if s.expected_value >= 0:
            assert s.score == pytest.approx(s.expected_value * multiplier)
        else:  # a loss is divided, so a lift above 1 moves it up too
            assert s.score == pytest.approx(s.expected_value / multiplier)


def test_a_lift_raises_an_action_expected_to_lose_and_one_expected_to_gain() -> None:
    assert scaled(10.0, 2.0) == 20.0
    assert scaled(-10.0, 2.0) == -5.0
    assert scaled(-10.0, 0.5) == -20.0
    assert scaled(0.0, 3.0) == 0.0
