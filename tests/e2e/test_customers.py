"""The customer routes over HTTP: the online state read back as data, and erased on request.

Real uvicorn, real Redis (the test world materialized), real MLflow. Where a test needs the store in a state
materialization does not produce (a missing field, a stale view) it writes the raw hash with redis-py, the
way a partial event update or an old snapshot would leave it.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from features import OfflineStore, Registry
from tests.conftest import free_port, serve, settings_for

CUSTOMER = "C000042"
DAY = 86_400.0


def _latest_row(offline: OfflineStore, customer_id: str) -> dict[str, Any]:
    return next(r for r in offline.latest("customer").to_pylist() if r["customer_id"] == customer_id)


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_features_are_the_latest_snapshot_in_contract_order(
    http: httpx.Client, offline: OfflineStore, registry: Registry
) -> None:
    row = _latest_row(offline, CUSTOMER)
    observed: datetime = row["feature_ts"]
    assert time.time() - observed.timestamp() < 45 * DAY, "the test customer's snapshot should be fresh"

    response = http.get(f"/v1/customers/{CUSTOMER}/features")
    assert response.status_code == 200
    body = response.json()
    schema = registry.entity("customer")
    assert body["customer_id"] == CUSTOMER
    assert body["found"] is True
    assert body["feature_contract"] == registry.version
    assert [f["name"] for f in body["features"]] == list(schema.names)
    assert {f["name"]: f["view"] for f in body["features"]} == schema.view_of
    assert {f["name"]: f["value"] for f in body["features"]} == {n: row[n] for n in schema.names}
    assert not any(f["defaulted"] for f in body["features"])
    # Human form: category names and booleans, not the codes the models see.
    values = {f["name"]: f["value"] for f in body["features"]}
    assert values["plan"] == row["plan"]
    assert isinstance(values["plan"], str)
    assert values["consent_marketing"] is row["consent_marketing"]
    assert isinstance(values["tenure_months"], int)

    views = _by_name(body["views"])
    assert list(views) == [v.name for v in schema.views]
    for view in schema.views:
        out = views[view.name]
        assert out["stale"] is False
        assert out["ttl_seconds"] == view.ttl_days * DAY
        assert out["age_seconds"] == pytest.approx(time.time() - observed.timestamp(), abs=60)


def test_a_missing_field_is_served_as_its_default_and_flagged(
    http: httpx.Client, redis_client: redis.Redis, offline: OfflineStore, registry: Registry
) -> None:
    # price_increase_pct has a default (0.0); last_sentiment has none, so it is unknown.
    redis_client.hdel(f"nba:customer:{{{CUSTOMER}}}", "price_increase_pct", "last_sentiment")
    body = http.get(f"/v1/customers/{CUSTOMER}/features").json()
    features = _by_name(body["features"])
    assert features["price_increase_pct"] == {
        "name": "price_increase_pct",
        "view": "customer_profile",
        "value": 0.0,
        "defaulted": True,
    }
    assert features["last_sentiment"] == {
        "name": "last_sentiment",
        "view": "customer_sentiment",
        "value": None,
        "defaulted": True,
    }
    defaulted = {name for name, f in features.items() if f["defaulted"]}
    assert defaulted == {"price_increase_pct", "last_sentiment"}
    assert features["tenure_months"]["value"] == _latest_row(offline, CUSTOMER)["tenure_months"]


def test_a_view_past_its_ttl_is_stale_and_served_as_defaults(
    http: httpx.Client, redis_client: redis.Redis, registry: Registry
) -> None:
    redis_client.hset(f"nba:customer:{{{CUSTOMER}}}", "_ts:customer_activity", repr(time.time() - 100 * DAY))
    body = http.get(f"/v1/customers/{CUSTOMER}/features").json()
    views = _by_name(body["views"])
    assert views["customer_activity"]["stale"] is True
    assert views["customer_activity"]["age_seconds"] == pytest.approx(100 * DAY, abs=60)
    assert [name for name, v in views.items() if v["stale"]] == ["customer_activity"]

    features = _by_name(body["features"])
    activity = registry.views["customer_activity"].features
    assert {f.name: features[f.name]["value"] for f in activity} == {
        "logins_30d": 0,
        "usage_change_pct_30d": 0.0,
        "days_since_last_activity": None,  # no default: unknown
    }
    assert {name for name, f in features.items() if f["defaulted"]} == {f.name for f in activity}


def test_unknown_customer_is_404_naming_the_id(http: httpx.Client) -> None:
    response = http.get("/v1/customers/C999999/features")
    assert response.status_code == 404
    assert response.json()["detail"] == "customer 'C999999' is not in the online store"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize(
    "customer_id",
    ["C0 42;DROP", "-C000042", "C" * 65, "C00004%"],
    ids=["space-and-semicolon", "leading-dash", "too-long", "percent"],
)
def test_a_malformed_id_is_422_naming_customer_id(http: httpx.Client, method: str, customer_id: str) -> None:
    path = f"/v1/customers/{customer_id}" + ("/features" if method == "GET" else "")
    response = http.request(method, path)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("customer_id: ")


@pytest.mark.parametrize(
    ("method", "path"), [("GET", f"/v1/customers/{CUSTOMER}/features"), ("DELETE", f"/v1/customers/{CUSTOMER}")]
)
def test_without_redis_customer_routes_are_503_with_retry_after(
    data_dir: Path, champions: dict[str, str], method: str, path: str
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    with (
        serve(settings_for(data_dir, dead)) as served,
        httpx.Client(base_url=served.url, timeout=10) as client,
    ):
        response = client.request(method, path)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["detail"].startswith("online store unavailable: ")


def test_erase_deletes_the_online_state_once_then_recommend_is_a_cold_start(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    key = f"nba:customer:{{{CUSTOMER}}}"
    neighbour = "nba:customer:{C000043}"
    assert redis_client.exists(key, neighbour) == 2

    first = http.delete(f"/v1/customers/{CUSTOMER}")
    assert first.status_code == 200
    assert first.json() == {"customer_id": CUSTOMER, "erased": True}
    assert redis_client.exists(key) == 0
    assert redis_client.exists(neighbour) == 1

    second = http.delete(f"/v1/customers/{CUSTOMER}")
    assert second.status_code == 200
    assert second.json() == {"customer_id": CUSTOMER, "erased": False}

    recommended = http.post("/v1/recommend", json={"customer_id": CUSTOMER, "channel": "voice"}).json()
    assert recommended["cold_start"] is True
    assert recommended["degraded"] is False
    assert http.get(f"/v1/customers/{CUSTOMER}/features").status_code == 404


def test_openapi_documents_the_customer_routes(http: httpx.Client) -> None:
    schema = http.get("/schema/openapi.json").json()
    features = schema["paths"]["/v1/customers/{customer_id}/features"]["get"]
    erase = schema["paths"]["/v1/customers/{customer_id}"]["delete"]
    assert features["operationId"] == "customer_features"
    assert erase["operationId"] == "erase_customer"
    (parameter,) = features["parameters"]
    assert parameter["name"] == "customer_id"
    assert parameter["schema"]["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"
