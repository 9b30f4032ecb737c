"""The action catalog: the packaged one against the contract, and what a catalog may say, checked at load."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from features import Registry
from service.catalog import NO_ACTION, Catalog, LiveContext, Situation
from service.contact_policy import PolicyState
from service.errors import CatalogError

NOW = time.time()
DAY = 86_400


def test_last_offer_knows_every_offer_the_catalog_can_present(registry: Registry) -> None:
    """An offer missing from ``last_offer``'s categories would read as unknown after it is presented."""
    catalog = Catalog.load(registry)
    offers = {action.id for action in catalog.actions if action.feeds_offer_events}
    categories = registry.entity("customer").feature("last_offer").categories
    assert categories is not None
    assert offers == set(categories)
    assert NO_ACTION not in offers


def test_the_packaged_catalog_uses_every_kind_of_rule(registry: Registry) -> None:
    catalog = Catalog.load(registry)
    assert catalog.escape is not None
    assert catalog.escape.id == "transfer_specialist"
    assert catalog.priority_of(catalog.by_id["resolve_complaint"]) < catalog.priority_of(catalog.by_id["plan_upgrade"])
    assert catalog.by_id["payment_plan"].trigger is not None
    assert all(catalog.by_id[a].contact_policy for a in ("retention_offer", "discount_10", "plan_upgrade"))
    assert {w.name for w in catalog.context_weights} >= {"cancel_intent", "open_complaint"}
    assert len(catalog.version) == 12


def _minimal() -> dict[str, Any]:
    return {
        "arbitration": {"groups": {"service": 1, "retention": 2, "none": 2}},
        "actions": [
            {"id": "no_action", "title": "t", "script": "s", "group": "none", "offer": False, "channels": ["voice"],
             "value": 0, "cost": 0, "prior_accept": 1.0},
            {"id": "retention_offer", "title": "t", "script": "s", "group": "retention", "channels": ["voice"],
             "value": 0, "cost": 120, "prior_accept": 0.25},
        ],
    }  # fmt: skip


def _offer(**fields: Any) -> dict[str, Any]:
    base = {"id": "discount_10", "title": "t", "script": "s", "group": "retention", "channels": ["voice"],
            "value": 0, "cost": 60, "prior_accept": 0.3}  # fmt: skip
    return {**base, **fields}


def _load(tmp_path: Path, registry: Registry, data: dict[str, Any]) -> Catalog:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Catalog.load(registry, path)


BAD = [
    (lambda d: d["actions"].append(_offer(colour="red")), "discount_10", "colour", "Extra inputs"),
    (lambda d: d["actions"].append(_offer(group="marketing")), "discount_10", "group", "not in arbitration.groups"),
    (lambda d: d["actions"].append(_offer(contact_policy={"max_presentations": 3})), "discount_10", "contact_policy",
     "together"),
    (lambda d: d["actions"].append(_offer(contact_policy={"window_days": 0, "max_presentations": 1})), "discount_10",
     "contact_policy.window_days", "greater than or equal to 1"),
    (lambda d: d["actions"].append(_offer(trigger={"event": "login", "within_hours": 1})), "discount_10",
     "trigger.event", "shares its view"),
    (lambda d: d["actions"].append(_offer(trigger={"event": "payment_failed"})), "discount_10", "trigger",
     "together"),
    (lambda d: d["actions"].append(_offer(start="2026-03-01", end="2026-02-01")), "discount_10", "end",
     "not after start"),
    (lambda d: d["actions"].append(_offer(id="gift_card")), "gift_card", "offer", "last_offer does not list"),
    (lambda d: d["actions"].append(_offer(eligibility={"shoe_size": {"min": 40}})), "discount_10",
     "eligibility.shoe_size", "unknown feature"),
    (lambda d: d["actions"].append(_offer(eligibility={"plan": {"in": ["platinum"]}})), "discount_10",
     "eligibility.plan.in", "outside"),
    (lambda d: d["actions"].append(_offer(eligibility={"tenure_months": {"in": ["12"]}})), "discount_10",
     "eligibility.tenure_months.in", "use min and max"),
    (lambda d: d["actions"].append(_offer(prior_accept=1.5)), "discount_10", "prior_accept", "less than or equal"),
    (lambda d: d["actions"].append({**_offer(), "id": "retention_offer"}), "retention_offer", "id", "duplicate"),
    (lambda d: d["actions"].append(_offer(id="retained", offer=False)), "retained", "id", "'retained' is reserved"),
    (lambda d: d["actions"][0].update(contact_policy={"suppress_after_accept_days": 3}), "no_action",
     "contact_policy", "always a candidate"),
    (lambda d: d["arbitration"].update(escape={"action": "transfer"}), None, "arbitration.escape.action",
     "no action 'transfer'"),
    (lambda d: d.update(context_weights=[{"name": "cancel", "when": {"context": {"intent": ["refund"]}},
                                          "lift": {"retention": 2}}]), None,
     "context_weights[cancel].when.context.intent.0", "Input should be"),
    (lambda d: d.update(context_weights=[{"name": "cancel", "when": {"context": {"intent": ["cancel"]}},
                                          "lift": {"sales": 2}}]), None, "context_weights[cancel].lift.sales",
     "not in arbitration.groups"),
    (lambda d: d.update(context_weights=[{"name": "cancel", "when": {"context": {"intent": ["cancel"]}},
                                          "lift": {"retention": 0}}]), None, "context_weights[cancel]",
     "above 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "action", "field", "message"),
    BAD,
    ids=[
        "unknown-key",
        "undeclared-group",
        "cap-without-window",
        "zero-window",
        "trigger-on-shared-view",
        "trigger-without-hours",
        "end-before-start",
        "offer-unknown-to-contract",
        "unknown-feature",
        "unknown-category",
        "in-on-a-number",
        "prior-above-1",
        "duplicate-id",
        "reserved-id",
        "no-action-with-policy",
        "unknown-escape",
        "unknown-intent",
        "lift-undeclared-group",
        "lift-zero",
    ],
)
def test_a_bad_catalog_fails_naming_file_action_and_field(
    tmp_path: Path, registry: Registry, change: Any, action: str | None, field: str, message: str
) -> None:
    data = _minimal()
    change(data)
    with pytest.raises(CatalogError) as caught:
        _load(tmp_path, registry, data)
    error = caught.value
    assert error.file == str(tmp_path / "catalog.yaml")
    assert str(error).startswith(f"{tmp_path / 'catalog.yaml'}: ")
    matching = [p for p in error.problems if p.action == action and p.field == field]
    assert matching, f"no problem at {action}/{field}: {error.problems}"
    assert message in matching[0].message
    where = f"actions[{action}].{field}" if action else field
    assert where in str(error)


def test_an_unreadable_file_names_itself(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("actions: [unclosed")
    with pytest.raises(CatalogError, match=r"catalog\.yaml: \(file\): cannot read the catalog"):
        Catalog.load(registry, path)


def _vector(registry: Registry, **values: float) -> np.ndarray:
    schema = registry.entity("customer")
    x = np.array([f.encode(None) for f in schema.features], dtype=np.float64)
    for name, value in values.items():
        x[schema.index[name]] = value
    return x


def test_dates_triggers_and_policies_decide_the_candidates(tmp_path: Path, registry: Registry) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime(NOW))
    data = _minimal()
    data["actions"] += [
        _offer(id="discount_10", end="2020-01-31"),  # over
        _offer(id="loyalty_bonus", start="2999-01-01"),  # not yet
        _offer(id="plan_upgrade", group="service", start=today, end=today),  # today only
        _offer(id="payment_plan", trigger={"event": "payment_failed", "within_hours": 1}),
        _offer(id="tech_callback", trigger={"context": {"intent": ["technical"]},
                                            "features": {"open_complaint": {"in": [True]}}}),
    ]  # fmt: skip
    data["actions"][1]["contact_policy"] = {"max_presentations": 2, "window_days": 7, "cooldown_after_decline_days": 10}
    catalog = _load(tmp_path, registry, data)
    x = _vector(registry, open_complaint=1.0)

    def ids(**situation: Any) -> set[str]:
        return {a.id for a in catalog.eligible(x, "voice", Situation(now=NOW, **situation))}

    assert ids() == {"no_action", "retention_offer", "plan_upgrade"}
    assert "payment_plan" in ids(view_age_s={"customer_payments": 3599.0})
    assert "payment_plan" not in ids(view_age_s={"customer_payments": 3601.0})
    assert "tech_callback" in ids(context=LiveContext(intent="technical"))
    assert "tech_callback" not in ids(context=LiveContext(intent="billing"))
    today_n = math.floor(NOW / DAY)
    shown_twice = PolicyState(presented={"retention_offer": {today_n: 1, today_n - 6: 1}})
    assert "retention_offer" not in ids(policy=shown_twice)
    shown_long_ago = PolicyState(presented={"retention_offer": {today_n: 1, today_n - 7: 5}})
    assert "retention_offer" in ids(policy=shown_long_ago)
    assert "retention_offer" not in ids(policy=PolicyState(declined_at={"retention_offer": NOW - 9.9 * DAY}))
    assert "retention_offer" in ids(policy=PolicyState(declined_at={"retention_offer": NOW - 10.1 * DAY}))
    assert "retention_offer" not in ids(policy=None), "unknown policy state withholds what a policy governs"
    assert "no_action" in ids(policy=None)
    # Without a situation only the static rules apply (what the consent test and tools use).
    assert {a.id for a in catalog.eligible(x, "voice")} >= {"discount_10", "loyalty_bonus", "payment_plan"}


def test_context_weights_multiply_the_lifts_that_hold(tmp_path: Path, registry: Registry) -> None:
    data = _minimal()
    data["arbitration"]["groups"]["sales"] = 2
    data["context_weights"] = [
        {"name": "cancel", "when": {"context": {"intent": ["cancel"]}}, "lift": {"retention": 2.0}},
        {"name": "angry", "when": {"context": {"sentiment": {"max": -0.5}}}, "lift": {"retention": 1.5, "sales": 0.5}},
        {"name": "complaint", "when": {"features": {"open_complaint": {"in": [True]}}}, "lift": {"service": 3.0}},
    ]
    catalog = _load(tmp_path, registry, data)
    calm, upset = _vector(registry, open_complaint=0.0), _vector(registry, open_complaint=1.0)
    assert catalog.weights(calm, LiveContext()) == {}
    assert catalog.weights(calm, LiveContext(intent="cancel")) == {"retention": 2.0}
    assert catalog.weights(upset, LiveContext(intent="cancel", sentiment=-0.8)) == {
        "retention": 3.0,
        "sales": 0.5,
        "service": 3.0,
    }
    assert catalog.weights(calm, LiveContext(sentiment=None)) == {}, "an unknown sentiment meets no bound"
