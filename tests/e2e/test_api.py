"""The API end to end over HTTP: real uvicorn, real Redis, real MLflow, models trained on the test world."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pytest

from features import OfflineStore, Registry
from service.arbitration import scaled
from service.catalog import Catalog
from tests.conftest import Served, free_port, run_with_store, serve, settings_for
from training import ModelBundle, ModelRegistry
from training.calibrate import Calibrator

DEMO_CUSTOMER = "C000042"


def _ranked(scores: list[float]) -> bool:
    return all(a >= b for a, b in itertools.pairwise(scores))


def _arbitrated(actions: list[dict[str, Any]]) -> bool:
    """Ranked as the packaged catalog arbitrates: by group priority (service before offers), then score."""
    priority = Catalog.load(Registry.load()).priority
    keys = [(priority.get(a["group"], 0), -a["score"]) for a in actions]
    return keys == sorted(keys)


def test_health_is_ok_and_names_the_models_in_force(http: httpx.Client, champions: dict[str, str]) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    names = {f"nba-{kind}": version for kind, version in champions.items()}
    assert response.json() == {
        "status": "ok",
        "model_versions": names,
        "models_from": dict.fromkeys(names, "registry"),
        "model_registry": "reachable",
        "model_problems": {},
        "catalog_problem": None,
    }


def test_ready_names_the_champion_versions(http: httpx.Client, champions: dict[str, str], registry: Registry) -> None:
    body = http.get("/ready").json()
    assert body["ready"] is True
    assert body["model_versions"] == {
        "nba-churn": champions["churn"],
        "nba-propensity": champions["propensity"],
        "nba-resolution": champions["resolution"],
    }
    assert body["resolution_model"] == "ok"
    assert body["feature_contract"] == registry.version


def test_recommend_ranks_actions_from_the_registered_models(
    http: httpx.Client, offline: OfflineStore, model_registry: ModelRegistry, registry: Registry
) -> None:
    response = http.post("/v1/recommend", json={"customer_id": DEMO_CUSTOMER, "channel": "voice"})
    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] == DEMO_CUSTOMER
    assert body["cold_start"] is False
    assert body["degraded"] is False
    actions = body["actions"]
    assert len(actions) >= 3
    assert _arbitrated(actions)
    assert len({a["action_id"] for a in actions}) == len(actions)
    assert all(a["reasons"] and all(isinstance(r, str) and r for r in a["reasons"]) for a in actions)

    # The churn risk is the champion's prediction on the customer's features as they stand now (latest
    # snapshot and events aggregated up to now): same model, same vector.
    row = offline.as_of("customer", [DEMO_CUSTOMER])
    x = offline.model_matrix("customer", row)
    churn, _ = model_registry.load("churn")
    propensity, _ = model_registry.load("propensity")
    n = churn.actions.index("no_action")
    risk = float(churn.predict(np.column_stack([x, [[n, 0.0]]]))[0])
    assert body["customer"]["churn_risk"] == pytest.approx(risk, rel=1e-9)

    # Every offer is ranked by the documented arithmetic: the learned churn effect (the churn model's rows for the
    # action accepted and declined, mixed by P(accept)) times the lifetime value, plus P(accept) × (value − cost).
    catalog = Catalog.load(registry)
    ltv = float(row.column("lifetime_value")[0].as_py())
    offers = [a for a in actions if a["action_id"] != "no_action" and a["action_id"] in propensity.actions]
    p_accept = propensity.predict(propensity.with_actions(x[0], [a["action_id"] for a in offers]))
    for action, p in zip(offers, p_accept, strict=True):
        spec = catalog.by_id[action["action_id"]]
        code = churn.actions.index(spec.id)
        declined, accepted = churn.predict(np.column_stack([np.vstack([x, x]), [[code, 0.0], [code, 1.0]]]))
        if_offered = float(p) * accepted + (1 - float(p)) * declined
        gain = ltv * (risk - if_offered) + float(p) * (spec.value - spec.cost)
        assert action["propensity"] == pytest.approx(float(p), rel=1e-9)
        assert action["churn_if_offered"] == pytest.approx(if_offered, rel=1e-9)
        assert action["expected_value"] == pytest.approx(gain, rel=1e-9, abs=1e-9)
        multiplier = spec.lever * action["context_weight"]
        assert action["score"] == pytest.approx(scaled(action["expected_value"], multiplier), rel=1e-9, abs=1e-9)
    nothing = next(a for a in actions if a["action_id"] == "no_action")
    assert (nothing["expected_value"], nothing["churn_if_offered"]) == (0.0, pytest.approx(risk, rel=1e-9))


def test_recommend_is_deterministic_for_the_same_state(http: httpx.Client) -> None:
    first = http.post("/v1/recommend", json={"customer_id": DEMO_CUSTOMER, "channel": "chat"}).json()
    second = http.post("/v1/recommend", json={"customer_id": DEMO_CUSTOMER, "channel": "chat"}).json()
    assert first["actions"] == second["actions"]
    assert first["decision_id"] != second["decision_id"]


def test_channel_and_consent_limit_the_candidates(http: httpx.Client, offline: OfflineStore) -> None:
    ids = offline.latest("customer").column("customer_id").to_pylist()
    now = offline.as_of("customer", ids).to_pylist()
    without_consent = next(r["customer_id"] for r in now if r["consent_marketing"] is False)
    body = http.post("/v1/recommend", json={"customer_id": without_consent, "channel": "voice", "top_k": 50}).json()
    ids = {a["action_id"] for a in body["actions"]}
    assert ids.isdisjoint({"retention_offer", "discount_10", "loyalty_bonus", "plan_upgrade"})
    assert "no_action" in ids


def test_unknown_customer_gets_cold_start_actions(http: httpx.Client) -> None:
    response = http.post("/v1/recommend", json={"customer_id": "C999999", "channel": "voice"})
    assert response.status_code == 200
    body = response.json()
    assert body["cold_start"] is True
    assert body["degraded"] is False
    assert [a["action_id"] for a in body["actions"]][0:1]  # still ranked actions
    assert _arbitrated(body["actions"])
    # Defaults are not facts about the customer: no reason may cite them.
    assert not any("months as a customer" in r for a in body["actions"] for r in a["reasons"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "voice"}, "customer_id"),
        ({"customer_id": 42, "channel": "voice"}, "customer_id"),
        ({"customer_id": "C000042", "channel": "fax"}, "channel"),
        ({"customer_id": "C000042"}, "channel"),
        ({"customer_id": "C000042", "channel": "voice", "top_k": 0}, "top_k"),
        ({"customer_id": "C000042", "channel": "voice", "colour": "red"}, "colour"),
        ({"customer_id": "C0 42; DROP", "channel": "voice"}, "customer_id"),
    ],
    ids=[
        "missing-id",
        "id-not-string",
        "bad-channel",
        "missing-channel",
        "top-k-zero",
        "unknown-key",
        "bad-id",
    ],
)
def test_recommend_rejects_bad_bodies_naming_the_field(http: httpx.Client, body: dict[str, object], field: str) -> None:
    response = http.post("/v1/recommend", json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_recommend_rejects_a_body_that_is_not_json(http: httpx.Client) -> None:
    response = http.post("/v1/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500


def _assign_billing(http: httpx.Client, candidates: list[str]) -> dict[str, Any]:
    response = http.post(
        "/v1/assign",
        json={
            "customer_id": DEMO_CUSTOMER,
            "intent": "billing",
            "channel": "voice",
            "language": "en",
            "agent_ids": candidates,
        },
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _billing_candidates(offline: OfflineStore) -> tuple[list[dict[str, Any]], list[str], str]:
    """The agents now, those fit for an English billing contact, and one who is not available."""
    agents = offline.latest("agent").to_pylist()
    fit = [
        a["agent_id"]
        for a in agents
        if a["available"] and a["current_load"] < a["max_load"] and a["speaks_en"] and a["skill_billing"]
    ]
    busy = next(a["agent_id"] for a in agents if not a["available"])
    assert len(fit) > 3
    return agents, fit, busy


def test_assign_ranks_eligible_agents_by_the_resolution_model(
    http: httpx.Client, offline: OfflineStore, model_registry: ModelRegistry, registry: Registry, redis_url: str
) -> None:
    agents, fit, busy = _billing_candidates(offline)
    body = _assign_billing(http, [*fit, busy, "A9999"])
    assert {a["agent_id"] for a in body["agents"]} == set(fit)
    assert _ranked([a["score"] for a in body["agents"]])
    excluded = {e["agent_id"]: e["reason"] for e in body["excluded"]}
    assert excluded == {busy: "not available", "A9999": "unknown agent"}
    assert body["ranked_by"] == "resolution_model"
    assert body["degraded"] is False
    assert body["model_versions"]["nba-resolution"] == model_registry.version_for("resolution", "champion")
    assert 0 <= body["churn_risk"] <= 1
    # The same numbers as the champion bundle scoring the store's vectors itself, one row per agent.
    bundle, _ = model_registry.load("resolution")
    ids = [a["agent_id"] for a in body["agents"]]
    customer, batch = run_with_store(redis_url, registry, lambda store: store.read(DEMO_CUSTOMER, ids), "nba")
    rows = bundle.pair_rows(
        {"intent": "billing", "channel": "voice", "language": "en"},
        customer.values[registry.entity("customer").model_at],
        batch.values[:, registry.entity("agent").model_at],
    )
    np.testing.assert_allclose([a["p_resolution"] for a in body["agents"]], bundle.predict(rows), rtol=1e-9)
    seconds = [a["expected_handle_time_s"] for a in body["agents"]]
    np.testing.assert_allclose(seconds, bundle.predict_handle_time(rows), rtol=1e-9)
    assert all(60 < s < 3_600 for s in seconds)
    # The model's P(resolution) is not the rating: it differs for some agent, yet follows the agents' measured
    # results pulled toward their rating (the fallback's estimate), and weighs what the rating ignores.
    by_id = {a["agent_id"]: a for a in agents}
    rating = [by_id[a]["proficiency_billing"] for a in ids]
    p = [a["p_resolution"] for a in body["agents"]]
    assert any(abs(x - y) > 0.05 for x, y in zip(p, rating, strict=True))
    assert np.corrcoef(p, [_fallback(by_id[a]) for a in ids])[0, 1] > 0.5


def _fallback(agent: dict[str, Any]) -> float:
    """The fallback's P(resolution) of a billing contact, by hand: the 180-day rate with the rating as 20 contacts."""
    rate, n = agent["resolution_rate_billing_180d"], agent["contacts_billing_180d"]
    if rate is None:
        return float(agent["proficiency_billing"])
    return float((20 * agent["proficiency_billing"] + n * rate) / (20 + n))


def test_assign_without_a_resolution_model_falls_back_to_measured_rates(
    tmp_path: Path,
    redis_url: str,
    materialized: None,
    offline: OfflineStore,
    model_registry: ModelRegistry,
    champions: dict[str, str],
) -> None:
    # A registry with churn and propensity champions and no resolution model at all.
    settings = settings_for(tmp_path, redis_url)
    own = ModelRegistry(settings.mlflow, tmp_path)
    for kind in ("churn", "propensity"):
        bundle, _ = model_registry.load(kind)
        own.log_and_register(
            bundle, params={}, tags={"contract_version": bundle.contract_version}, aliases=("champion",)
        )
    agents, fit, _ = _billing_candidates(offline)
    with serve(settings) as served, served.client() as client:
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert "cannot load the champion resolution model" in ready.json()["resolution_model"]
        body = _assign_billing(client, fit)
    assert body["ranked_by"] == "measured_rate"
    assert body["degraded"] is True
    assert any("resolution model" in r and "measured resolution rate" in r for r in body["degraded_reasons"])
    assert "nba-resolution" not in body["model_versions"]
    assert {a["agent_id"] for a in body["agents"]} == set(fit)
    assert _ranked([a["score"] for a in body["agents"]])
    by_id = {a["agent_id"]: a for a in agents}
    for ranked in body["agents"]:
        agent = by_id[ranked["agent_id"]]
        assert ranked["p_resolution"] == pytest.approx(_fallback(agent))
        if agent["handle_time_mean_30d_s"] is None:
            assert ranked["expected_handle_time_s"] is None
        else:
            assert ranked["expected_handle_time_s"] == pytest.approx(agent["handle_time_mean_30d_s"])


def test_assign_from_a_queue_uses_its_members(http: httpx.Client, offline: OfflineStore) -> None:
    agents = offline.latest("agent").to_pylist()
    retention = {a["agent_id"] for a in agents if a["skill_retention"]}
    body = http.post(
        "/v1/assign",
        json={
            "customer_id": DEMO_CUSTOMER,
            "intent": "cancel",
            "channel": "voice",
            "language": "en",
            "queue": "retention",
        },
    ).json()
    returned = {a["agent_id"] for a in body["agents"]} | {e["agent_id"] for e in body["excluded"]}
    assert returned == retention


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"customer_id": "C000042", "intent": "billing", "channel": "voice", "language": "en"},
            "agent_ids or queue",
        ),
        (
            {
                "customer_id": "C000042",
                "intent": "refund",
                "channel": "voice",
                "language": "en",
                "queue": "billing",
            },
            "intent",
        ),
        (
            {
                "customer_id": "C000042",
                "intent": "billing",
                "channel": "voice",
                "language": "klingon",
                "queue": "billing",
            },
            "language",
        ),
        (
            {
                "customer_id": "C000042",
                "intent": "billing",
                "channel": "voice",
                "language": "en",
                "agent_ids": [f"A{i}" for i in range(201)],
            },
            "agent_ids",
        ),
        (
            {
                "customer_id": "C000042",
                "intent": "billing",
                "channel": "voice",
                "language": "en",
                "queue": "nobody_here",
            },
            "queue",
        ),
    ],
    ids=["no-candidates", "bad-intent", "bad-language", "too-many-agents", "empty-queue"],
)
def test_assign_rejects_bad_bodies_naming_the_field(http: httpx.Client, body: dict[str, object], field: str) -> None:
    response = http.post("/v1/assign", json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_openapi_schema_documents_both_decisions(http: httpx.Client) -> None:
    schema = http.get("/schema/openapi.json").json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"recommend", "assign", "health", "ready"} <= operations


def test_without_redis_answers_degraded_not_500(data_dir: Path, champions: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    with (
        serve(settings_for(data_dir, dead)) as served,
        served.client() as client,
    ):
        response = client.post("/v1/recommend", json={"customer_id": DEMO_CUSTOMER, "channel": "voice"})
        assert response.status_code == 200
        body = response.json()
        assert body["degraded"] is True
        assert "online store unavailable" in body["degraded_reasons"][0]
        assert body["actions"]
        assert _arbitrated(body["actions"])
        # The contact-policy state was not read either: no action under a contact policy is risked.
        catalog = Catalog.load(Registry.load())
        assert all(catalog.by_id[a["action_id"]].contact_policy is None for a in body["actions"])
        assert any("actions under a contact policy are withheld" in r for r in body["degraded_reasons"])
        assigned = client.post(
            "/v1/assign",
            json={
                "customer_id": DEMO_CUSTOMER,
                "intent": "billing",
                "channel": "voice",
                "language": "en",
                "agent_ids": ["A0001", "A0002"],
            },
        ).json()
        assert assigned["degraded"] is True
        assert [a["agent_id"] for a in assigned["agents"]] == ["A0001", "A0002"]
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "online store unavailable" in ready.json()["redis"]


def test_without_models_ready_is_503_and_recommend_falls_back(
    tmp_path: Path, redis_url: str, materialized: None, registry: Registry
) -> None:
    with (
        serve(settings_for(tmp_path, redis_url)) as served,
        served.client() as client,
    ):
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "nba-churn" in ready.json()["models"]
        body = client.post("/v1/recommend", json={"customer_id": DEMO_CUSTOMER, "channel": "voice"}).json()
        assert body["degraded"] is True
        assert body["model_versions"] == {}
        catalog = Catalog.load(registry)
        for action in body["actions"]:
            spec = catalog.by_id[action["action_id"]]
            expected = spec.prior_accept * (spec.value - spec.cost)
            assert action["score"] == pytest.approx(scaled(expected, spec.lever * action["context_weight"]))
            assert action["churn_if_offered"] is None
        # Without a churn model no retention value is assumed: a pure-cost offer never outranks doing nothing (a
        # service action of a higher-priority group, such as an open complaint to resolve, comes first by design).
        ids = [a["action_id"] for a in body["actions"]]
        assert "no_action" in ids
        level = catalog.priority_of(catalog.by_id["no_action"])
        pure_cost = {a.id for a in catalog.actions if a.value == 0 and a.cost > 0 and catalog.priority_of(a) == level}
        assert all(ids.index(i) > ids.index("no_action") for i in pure_cost & set(ids))


def test_a_churn_champion_without_the_action_input_is_refused(
    tmp_path: Path, redis_url: str, materialized: None, registry: Registry, model_registry: ModelRegistry
) -> None:
    """A churn model from before it learned what offers do cannot value an offer: the service says to retrain it
    and ranks by the catalog's priors rather than guess."""
    settings = settings_for(tmp_path, redis_url)
    own = ModelRegistry(settings.mlflow, tmp_path)
    names = registry.entity("customer").model_names
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, len(names))), rng.random(300) < 0.3
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_threads": 1}, lgb.Dataset(x, y), 5)
    calibrator = Calibrator(method="sigmoid").fit(np.asarray(booster.predict(x)), y)
    plain = ModelBundle("churn", booster, calibrator, names, registry.version)
    propensity, _ = model_registry.load("propensity")
    for bundle in (plain, propensity):
        own.log_and_register(bundle, params={}, tags={"contract_version": registry.version}, aliases=("champion",))
    with serve(settings) as served, served.client() as client:
        ready = client.get("/ready")
        body = client.post("/v1/recommend", json={"customer_id": DEMO_CUSTOMER, "channel": "voice"}).json()
    assert ready.status_code == 503
    assert "nba-churn v1 does not take the action as an input" in ready.json()["models"]
    assert body["degraded"] is True
    assert any("retrain it (nba train churn)" in r for r in body["degraded_reasons"])
    assert all(a["churn_if_offered"] is None for a in body["actions"])


def test_api_fixture_is_served_on_loopback(api: Served) -> None:
    assert api.url.startswith("http://127.0.0.1:")
    assert np.isfinite(api.settings.service.port)
