"""The action catalog end to end over HTTP: contact policies, dates, triggers, priority groups, context weights,
the escape hatch, feedback and reloads, on one served app with real Redis and the session's champion models.

The app serves a catalog file of this module's own, polled every 0.1 s; each test puts the catalog it needs in
force through ``POST /v1/admin/catalog/reload``. Customers are made for each test by the events a producer would
send (a consent, a complaint, a failed payment), under a namespace of the module's own.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from service.arbitration import scaled
from service.decisioning import PRIOR_REASON
from tests.conftest import Served, age_decision, logged, serve, session_keys, settings_for
from tests.e2e.processes import Load, Request

NS = "nbacat"
RUN = uuid.uuid4().hex[:6]
_ids = itertools.count()
PRIORITY = {"compliance": 0, "service": 1, "retention": 2, "sales": 2, "none": 2}


def _action(action_id: str, group: str, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": action_id, "title": action_id.replace("_", " "), "script": f"Do {action_id}.",
                            "group": group, "channels": ["voice", "chat", "email"], "value": 0, "cost": 0,
                            "prior_accept": 0.3}  # fmt: skip
    return spec | fields


def _catalog(*extra: dict[str, Any], weights: list[dict[str, Any]] | None = None, **escape: Any) -> dict[str, Any]:
    """A catalog of the real offers (the models know them) and a transfer, plus ``extra`` (replacing by id)."""
    actions = {
        a["id"]: a
        for a in [
            _action("no_action", "none", offer=False, prior_accept=1.0),
            _action("retention_offer", "retention", cost=120, prior_accept=0.25, requires_consent=True),
            _action("discount_10", "retention", cost=60, requires_consent=True),
            _action("plan_upgrade", "sales", value=80, prior_accept=0.1, requires_consent=True),
            _action("transfer_specialist", "service", offer=False, channels=["voice", "chat"], prior_accept=0.9),
            *extra,
        ]
    }
    escape_spec = {"action": "transfer_specialist", "min_propensity": 0.0} | escape
    return {
        "arbitration": {"groups": PRIORITY, "escape": escape_spec},
        "context_weights": weights or [],
        "actions": list(actions.values()),
    }


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    path.write_text(yaml.safe_dump(_catalog()))
    return path


@pytest.fixture(scope="module")
def served(data_dir: Path, redis_url: str, champions: dict[str, str], catalog_path: Path) -> Iterator[Served]:
    base = settings_for(data_dir, redis_url)
    service = base.service.model_copy(update={"catalog_path": catalog_path, "catalog_poll_s": 0.1})
    redis_settings = base.redis.model_copy(update={"namespace": NS})
    with serve(base.model_copy(update={"service": service, "redis": redis_settings})) as running:
        yield running


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with served.client() as client:
        yield client


@pytest.fixture(scope="module")
def store(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client to look at what the service keeps (never flushed here)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _write(catalog_path: Path, data: dict[str, Any]) -> None:
    """Replace the file at once, as a deployment does (the poll never sees it half written)."""
    staged = catalog_path.with_suffix(".new")
    staged.write_text(yaml.safe_dump(data, sort_keys=False))
    staged.replace(catalog_path)


def _use(http: httpx.Client, catalog_path: Path, data: dict[str, Any]) -> str:
    """Put ``data`` in force; its version."""
    _write(catalog_path, data)
    response = http.post("/v1/admin/catalog/reload")
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def _send(http: httpx.Client, customer: str, *events: dict[str, Any]) -> None:
    body = {"events": [{"event_id": f"e-{RUN}-{next(_ids)}", "customer_id": customer, **e} for e in events]}
    response = http.post("/v1/events", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == len(events)


def _customer(http: httpx.Client, *, consent: bool = True) -> str:
    """A new customer the store knows from one consent event."""
    customer = f"K{RUN}{next(_ids):04d}"
    _send(http, customer, {"type": "consent_changed", "purpose": "marketing", "granted": consent})
    return customer


def _recommend(http: httpx.Client, customer: str, **body: Any) -> dict[str, Any]:
    response = http.post("/v1/recommend", json={"customer_id": customer, "channel": "voice", "top_k": 20, **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["degraded"] is False, answer["degraded_reasons"]
    return answer


def _ids_of(answer: dict[str, Any]) -> list[str]:
    return [a["action_id"] for a in answer["actions"]]


def _features(http: httpx.Client, customer: str) -> dict[str, Any]:
    return {f["name"]: f["value"] for f in http.get(f"/v1/customers/{customer}/features").json()["features"]}


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def _written(read: Callable[[], Any]) -> Any:
    """What ``read`` returns once the service's write (sent after its answer, not awaited) has landed."""
    deadline = time.monotonic() + 2
    while (value := read()) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def _assert_arbitrated(answer: dict[str, Any]) -> None:
    keys = [(PRIORITY[a["group"]], -a["score"]) for a in answer["actions"] if a["action_id"] != "transfer_specialist"]
    assert keys == sorted(keys)


# ---- feedback -----------------------------------------------------------------------------------------------


def test_feedback_is_kept_with_the_decision_feeds_the_state_and_counts_once(
    http: httpx.Client, catalog_path: Path, store: redis.Redis
) -> None:
    version = _use(http, catalog_path, _catalog())
    customer = _customer(http)
    answer = _recommend(http, customer)
    decision = answer["decision_id"]
    assert answer["catalog_version"] == version
    assert "plan_upgrade" in _ids_of(answer)

    record = json.loads(_written(lambda: store.get(f"{NS}:decision:{{{decision}}}")))
    assert record == {
        "v": 1,
        "kind": "recommend",
        "customer": customer,
        "at": pytest.approx(time.time(), abs=30),
        "actions": _ids_of(answer),
        "catalog": version,
        "models": answer["model_versions"],
        "contract": answer["feature_contract"],
    }
    # Kept past the churn horizon (30 days) by a margin of 10, for the retention answer to arrive.
    assert 39 * 86_400 < store.ttl(f"{NS}:decision:{{{decision}}}") <= 40 * 86_400

    accepted = {"decision_id": decision, "action_id": "plan_upgrade", "outcome": "accepted"}
    first = http.post("/v1/feedback", json=accepted)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "decision_id": decision,
        "kind": "recommend",
        "recorded": ["plan_upgrade"],
        "duplicates": [],
        "events_applied": 2,
    }
    state = _features(http, customer)
    assert (state["offers_accepted_90d"], state["last_offer"], state["days_since_last_offer"]) == (1, "plan_upgrade", 0)

    for repeat in (accepted, {**accepted, "outcome": "declined"}):
        again = http.post("/v1/feedback", json=repeat).json()
        assert (again["recorded"], again["duplicates"], again["events_applied"]) == ([], ["plan_upgrade"], 0)
    state = _features(http, customer)
    assert (state["offers_accepted_90d"], state["offers_declined_90d"]) == (1, 0)
    kept = {k.decode(): json.loads(v) for k, v in store.hgetall(f"{NS}:feedback:{{{decision}}}").items()}
    assert kept == {"plan_upgrade": {"outcome": "accepted", "at": pytest.approx(time.time(), abs=30)}}
    assert store.ttl(f"{NS}:feedback:{{{decision}}}") > 39 * 86_400

    age_decision(store, NS, decision, days=30)  # the churn horizon has ended: the retention can be answered
    nothing = {"decision_id": decision, "action_id": "no_action", "outcome": "declined", "retained": True}
    declined = http.post("/v1/feedback", json=nothing).json()
    assert declined["recorded"] == ["no_action", "retained"], "an action's answer and the retention, in one request"
    assert declined["events_applied"] == 0, "no_action is no offer, and the retention is kept with the decision only"
    churned = http.post("/v1/feedback", json={"decision_id": decision, "retained": False}).json()
    assert (churned["recorded"], churned["duplicates"]) == ([], ["retained"]), "the first retention answer stands"
    kept = {k.decode(): json.loads(v) for k, v in store.hgetall(f"{NS}:feedback:{{{decision}}}").items()}
    assert kept["retained"] == {"retained": True, "at": pytest.approx(time.time(), abs=30)}
    assert _features(http, customer)["offers_declined_90d"] == 0


def test_the_retention_is_answered_once_the_churn_horizon_has_ended(
    http: httpx.Client, catalog_path: Path, store: redis.Redis
) -> None:
    _use(http, catalog_path, _catalog())
    decision = _recommend(http, _customer(http))["decision_id"]
    _written(lambda: store.get(f"{NS}:decision:{{{decision}}}"))
    left = {"decision_id": decision, "retained": False}
    age_decision(store, NS, decision, days=29.9)
    early = http.post("/v1/feedback", json={**left, "action_id": "no_action", "outcome": "ignored"})
    assert early.status_code == 422, "a churn known on day 5 still waits for the horizon: no early answers"
    at = json.loads(store.get(f"{NS}:decision:{{{decision}}}"))["at"]
    ends = datetime.fromtimestamp(at + 30 * 86_400, UTC).isoformat(timespec="seconds")
    assert early.json()["detail"] == (
        f"retained: known at the end of the churn horizon, 30 days after the decision: post it from {ends}"
    )
    age_decision(store, NS, decision, days=0.1)
    answered = http.post("/v1/feedback", json=left)
    assert answered.status_code == 200, answered.text
    assert answered.json()["recorded"] == ["retained"], "alone"
    later = http.post("/v1/feedback", json={"decision_id": decision, "action_id": "no_action", "outcome": "ignored"})
    assert later.json()["recorded"] == ["no_action"], "the refused request recorded nothing: the action's answer is new"


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"decision_id": "0" * 32, "action_id": "plan_upgrade", "outcome": "accepted"}, 404, "0" * 32),
        ({"decision_id": None, "action_id": "loyalty_bonus", "outcome": "accepted"}, 422, "action_id"),
        ({"decision_id": None, "resolved": True}, 422, "action_id"),
        ({"decision_id": "not-an-id", "action_id": "plan_upgrade", "outcome": "accepted"}, 422, "decision_id"),
        ({"decision_id": None, "action_id": "plan_upgrade", "outcome": "maybe"}, 422, "outcome"),
        ({"decision_id": None, "action_id": "plan_upgrade"}, 422, "action_id and outcome"),
        ({"decision_id": None, "outcome": "accepted", "retained": True}, 422, "action_id and outcome"),
        ({"decision_id": None, "retained": "maybe"}, 422, "retained"),
        ({"decision_id": None, "retained": True, "resolved": True}, 422, "not both"),
        ({"decision_id": "0" * 32, "retained": True}, 404, "0" * 32),
    ],
    ids=[
        "unknown-decision",
        "action-not-served",
        "assign-answer-to-recommend",
        "malformed-id",
        "bad-outcome",
        "half",
        "half-beside-retained",
        "retained-not-a-bool",
        "retained-beside-assign-answer",
        "retained-for-unknown-decision",
    ],
)
def test_feedback_that_does_not_fit_names_what(
    http: httpx.Client, catalog_path: Path, body: dict[str, Any], status: int, names: str
) -> None:
    _use(http, catalog_path, _catalog())
    if body["decision_id"] is None:
        body = {**body, "decision_id": _recommend(http, _customer(http))["decision_id"]}
    response = http.post("/v1/feedback", json=body)
    assert response.status_code == status, response.text
    assert names in response.json()["detail"]


def test_an_assign_decision_takes_resolution_and_csat_once(http: httpx.Client, store: redis.Redis) -> None:
    customer = _customer(http)
    contact = {"customer_id": customer, "intent": "billing", "channel": "voice", "language": "en"}
    assigned = http.post("/v1/assign", json={**contact, "agent_ids": ["A0001", "A0002"]}).json()
    decision = assigned["decision_id"]
    record = json.loads(_written(lambda: store.get(f"{NS}:decision:{{{decision}}}")))
    assert (record["kind"], record["customer"], record["intent"]) == ("assign", customer, "billing")
    assert record["agents"] == [a["agent_id"] for a in assigned["agents"]]

    answer = {"decision_id": decision, "resolved": True, "csat": 4, "agent_id": "A0002"}
    first = http.post("/v1/feedback", json=answer).json()
    assert (first["kind"], first["recorded"], first["events_applied"]) == ("assign", ["resolved", "csat"], 1)
    assert _features(http, customer)["last_csat"] == 4
    again = http.post("/v1/feedback", json={**answer, "csat": 1}).json()
    assert (again["recorded"], again["duplicates"]) == ([], ["resolved", "csat"])
    assert _features(http, customer)["last_csat"] == 4
    offer = {"decision_id": decision, "action_id": "plan_upgrade", "outcome": "declined"}
    wrong = http.post("/v1/feedback", json=offer)
    assert wrong.status_code == 422
    assert "action_id" in wrong.json()["detail"]
    stayed = http.post("/v1/feedback", json={"decision_id": decision, "retained": True})
    assert stayed.status_code == 422
    assert stayed.json()["detail"].startswith("retained: an assign decision's feedback gives resolved and/or csat")


# ---- contact policies ---------------------------------------------------------------------------------------


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cap=st.integers(1, 3), window=st.sampled_from([1, 7]), calls=st.integers(1, 5), top_k=st.sampled_from([1, 20]))
def test_presentations_never_pass_the_cap_across_calls(
    http: httpx.Client, catalog_path: Path, store: redis.Redis, cap: int, window: int, calls: int, top_k: int
) -> None:
    policy = {"max_presentations": cap, "window_days": window}
    upgrade = _action("plan_upgrade", "sales", value=80, prior_accept=0.1, requires_consent=True, contact_policy=policy)
    _use(http, catalog_path, _catalog(upgrade))
    customer = _customer(http)
    shown = sum("plan_upgrade" in _ids_of(_recommend(http, customer, top_k=top_k)) for _ in range(calls))
    assert shown <= cap
    if top_k == 20:
        assert shown == min(cap, calls), "an admissible action is shown until its cap"
    # The count the service keeps (its write follows the answer) is the count the answers show.
    today = math.floor(time.time() / 86_400)

    def counted() -> int | None:
        value = int(store.hget(f"{NS}:contacts:customer:{{{customer}}}", f"p:plan_upgrade:{today}") or 0)
        return value if value == shown else None

    assert shown == 0 or _written(counted) == shown


def test_a_decline_cools_an_action_down_and_an_acceptance_suppresses_it(
    http: httpx.Client, catalog_path: Path, store: redis.Redis
) -> None:
    _use(
        http,
        catalog_path,
        _catalog(
            _action("retention_offer", "retention", cost=120, requires_consent=True,
                    contact_policy={"cooldown_after_decline_days": 30}),
            _action("discount_10", "retention", cost=60, requires_consent=True,
                    contact_policy={"suppress_after_accept_days": 90}),
        ),
    )  # fmt: skip
    customer = _customer(http)
    answer = _recommend(http, customer)
    assert {"retention_offer", "discount_10", "plan_upgrade"} <= set(_ids_of(answer))
    for action, outcome in (("retention_offer", "declined"), ("discount_10", "accepted")):
        body = {"decision_id": answer["decision_id"], "action_id": action, "outcome": outcome}
        assert http.post("/v1/feedback", json=body).json()["recorded"] == [action]
    after = set(_ids_of(_recommend(http, customer)))
    assert "retention_offer" not in after
    assert "discount_10" not in after
    assert "plan_upgrade" in after, "an action without a policy is unaffected"
    # 31 days later the cool-down is over; the suppression (90 days) is not.
    store.hset(f"{NS}:contacts:customer:{{{customer}}}", "d:retention_offer", repr(time.time() - 31 * 86_400))
    store.hset(f"{NS}:contacts:customer:{{{customer}}}", "a:discount_10", repr(time.time() - 31 * 86_400))
    later = set(_ids_of(_recommend(http, customer)))
    assert "retention_offer" in later
    assert "discount_10" not in later


# ---- dates, triggers, groups, weights, escape ----------------------------------------------------------------


def test_an_action_is_given_only_between_its_dates(http: httpx.Client, catalog_path: Path) -> None:
    today = datetime.now(UTC).date()
    _use(
        http,
        catalog_path,
        _catalog(
            _action("discount_10", "retention", cost=60, end=str(today - timedelta(days=1))),
            _action("retention_offer", "retention", cost=120, start=str(today + timedelta(days=1))),
            _action("plan_upgrade", "sales", value=80, start=str(today), end=str(today)),
        ),
    )
    ids = set(_ids_of(_recommend(http, _customer(http))))
    assert "plan_upgrade" in ids
    assert not ids & {"discount_10", "retention_offer"}


def test_a_trigger_makes_an_action_a_candidate_only_while_it_holds(http: httpx.Client, catalog_path: Path) -> None:
    _use(
        http,
        catalog_path,
        _catalog(
            _action("payment_plan", "service", cost=15, trigger={"event": "payment_failed", "within_hours": 1}),
            _action("cart_rescue", "sales", value=30, offer=False, trigger={"context": {"cart_value": {"min": 100}}}),
        ),
    )
    customer = _customer(http)
    assert not {"payment_plan", "cart_rescue"} & set(_ids_of(_recommend(http, customer)))
    _send(http, customer, {"type": "payment_failed", "amount": 40.0, "occurred_at": _ago(hours=2)})
    assert "payment_plan" not in _ids_of(_recommend(http, customer)), "a failure two hours ago is not in the hour"
    _send(http, customer, {"type": "payment_failed", "amount": 40.0, "occurred_at": _ago(minutes=5)})
    answer = _recommend(http, customer)
    assert _ids_of(answer)[0] == "payment_plan", "a service action leads any offer"
    cart = _recommend(http, customer, context={"cart_value": 150.0})
    rescue = next(a for a in cart["actions"] if a["action_id"] == "cart_rescue")
    assert rescue["reasons"] == [PRIOR_REASON]
    assert rescue["propensity"] == 0.3, "an action the models never learned is scored on its prior"
    assert "cart_rescue" not in _ids_of(_recommend(http, customer, context={"cart_value": 50.0}))


def test_a_service_group_comes_before_any_offer_whatever_the_scores(http: httpx.Client, catalog_path: Path) -> None:
    complaint = _action("resolve_complaint", "service", cost=10, offer=False, prior_accept=0.9,
                        eligibility={"open_complaint": {"in": [True]}})  # fmt: skip
    _use(http, catalog_path, _catalog(complaint))
    customer = _customer(http)
    assert "resolve_complaint" not in _ids_of(_recommend(http, customer))
    _send(http, customer, {"type": "complaint", "open": True})
    answer = _recommend(http, customer)
    first, *rest = answer["actions"]
    assert first["action_id"] == "resolve_complaint"
    assert first["score"] == pytest.approx(0.9 * -10)
    assert any(a["score"] > first["score"] for a in rest), "an offer scoring higher still ranks after it"
    _assert_arbitrated(answer)


def test_a_context_weight_lifts_its_group_when_the_context_holds(http: httpx.Client, catalog_path: Path) -> None:
    cancel = {"name": "cancel_intent", "when": {"context": {"intent": ["cancel"]}}, "lift": {"retention": 2.0}}
    _use(http, catalog_path, _catalog(weights=[cancel]))
    customer = _customer(http)
    plain = {a["action_id"]: a for a in _recommend(http, customer, context={"intent": "billing"})["actions"]}
    lifted = _recommend(http, customer, context={"intent": "cancel"})
    _assert_arbitrated(lifted)
    for action in lifted["actions"]:
        before = plain[action["action_id"]]
        assert action["expected_value"] == pytest.approx(before["expected_value"])
        weight = 2.0 if action["group"] == "retention" else 1.0
        assert action["context_weight"] == weight
        assert action["score"] == pytest.approx(scaled(before["expected_value"], weight))
    retention = [a for a in lifted["actions"] if a["group"] == "retention"]
    assert retention
    assert all(a["score"] > plain[a["action_id"]]["score"] for a in retention)


def test_the_escape_hatch_transfers_when_asked_or_when_nothing_is_likely(
    http: httpx.Client, catalog_path: Path
) -> None:
    _use(http, catalog_path, _catalog())
    customer = _customer(http)
    assert "transfer_specialist" not in _ids_of(_recommend(http, customer))
    asked = _recommend(http, customer, context={"wants_person": True})
    assert asked["actions"][0]["action_id"] == "transfer_specialist"
    assert asked["actions"][0]["reasons"] == ["the customer asked for a person"]
    by_email = _recommend(http, customer, channel="email", context={"wants_person": True})
    assert "transfer_specialist" not in _ids_of(by_email), "the transfer keeps its own channels"

    _use(http, catalog_path, _catalog(min_propensity=0.99))
    unsure = _recommend(http, customer)
    assert unsure["actions"][0]["action_id"] == "transfer_specialist"
    assert unsure["actions"][0]["reasons"][0].startswith("no action is likely to be accepted (best P(accept) ")
    assert "no_action" in _ids_of(unsure)


# ---- reload -------------------------------------------------------------------------------------------------


def _reloads(http: httpx.Client, outcome: str) -> float:
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "nba_catalog_reloads_total" and sample.labels == {"outcome": outcome}:
                return sample.value
    return 0.0


def test_a_bad_catalog_never_replaces_the_running_one_and_a_good_one_is_picked_up_by_itself(
    http: httpx.Client, catalog_path: Path
) -> None:
    running = _use(http, catalog_path, _catalog())
    failed_before = _reloads(http, "failed")
    bad = _catalog(_action("discount_10", "retention", cost=60, contact_policy={"max_presentations": 2}))
    _write(catalog_path, bad)
    refused = http.post("/v1/admin/catalog/reload")
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert str(catalog_path) in detail
    assert "actions[discount_10].contact_policy" in detail
    assert refused.json()["errors"][0] | {"message": ""} == {
        "file": str(catalog_path),
        "action": "discount_10",
        "field": "contact_policy",
        "message": "",
    }
    assert _reloads(http, "failed") >= failed_before + 1
    assert _recommend(http, _customer(http))["catalog_version"] == running, "the running catalog stayed"

    # A good file is put in force by the poll alone, within a few intervals.
    _write(catalog_path, _catalog(_action("plan_upgrade", "sales", value=90, requires_consent=True)))
    deadline, version = time.monotonic() + 5, running
    while version == running and time.monotonic() < deadline:
        time.sleep(0.05)
        version = _recommend(http, _customer(http))["catalog_version"]
    assert version != running
    assert http.post("/v1/admin/catalog/reload").json()["reloaded"] is False, "already in force"
    operations = {
        op["operationId"] for path in http.get("/schema/openapi.json").json()["paths"].values() for op in path.values()
    }
    assert {"feedback", "reload_catalog"} <= operations


def test_a_bad_catalog_seen_by_the_poll_under_load_is_refused_once_reported_and_the_running_one_stays(
    served: Served, http: httpx.Client, catalog_path: Path
) -> None:
    """No admin call: the file changes under a running load, as a deployment changes it, and only the poll sees it."""
    running = _use(http, catalog_path, _catalog())
    customer = _customer(http)
    failed_before = _reloads(http, "failed")
    bad = _catalog(_action("discount_10", "retention", cost=60, contact_policy={"max_presentations": 2}))
    body = {"customer_id": customer, "channel": "voice"}
    with (
        logged("service.catalog_source") as records,
        Load(served.url, [Request("recommend", "/v1/recommend", body)], headers=session_keys().headers()) as load,
    ):
        load.wait_for("answers", lambda answers: len(answers) >= 10)
        _write(catalog_path, bad)
        deadline = time.monotonic() + 5
        while (problem := http.get("/health").json()["catalog_problem"]) is None:
            assert time.monotonic() < deadline, "the refused file is not reported in /health"
            time.sleep(0.05)
        time.sleep(0.5)  # five more polls: the refused file is not tried again while it stays as it is
        failed = _reloads(http, "failed") - failed_before
        seen = len(load.answers)
        load.wait_for("answers after the refusal", lambda answers: len(answers) >= seen + 10)
        _write(catalog_path, _catalog(_action("plan_upgrade", "sales", value=90, requires_consent=True)))
        load.wait_for("the good file in force", lambda answers: answers[-1].body["catalog_version"] != running)  # type: ignore[index]
    assert {a.status for a in load.answers} == {200}
    assert not any(a.degraded for a in load.answers)
    versions = [a.body["catalog_version"] for a in load.answers]  # type: ignore[index]
    switched = next(i for i, v in enumerate(versions) if v != running)
    assert switched >= seen + 10, "the bad file never came into force"
    assert set(versions[switched:]) == {versions[-1]}
    assert problem.startswith(f"{catalog_path}: ")
    assert "actions[discount_10].contact_policy" in problem
    assert failed == 1
    errors = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert errors == [f"catalog not reloaded, the running one (version {running}) stays: {problem}"]
    assert http.get("/health").json()["catalog_problem"] is None, "a good file clears the problem"
