"""``POST /v1/events`` end to end: validated, applied once, visible to the next decision."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis
import redis.asyncio as aioredis

from features import ConsumeStats, EventArchive, OfflineStore, OnlineStore, Registry, StreamConsumer
from tests.conftest import free_port, serve, settings_for


def _now(minutes_ago: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def _features(redis_url: str, registry: Registry, customer: str) -> dict[str, float]:
    async def read() -> dict[str, float]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            vector, _ = await OnlineStore(client, registry).read(customer)
        finally:
            await client.aclose()
        return dict(zip(registry.entity("customer").names, vector.values.tolist(), strict=True))

    return asyncio.run(read())


def test_events_change_the_state_once(http: httpx.Client, redis_url: str, registry: Registry) -> None:
    customer = "C000042"
    before = _features(redis_url, registry, customer)
    batch = {
        "events": [
            {
                "type": "contact_ended",
                "event_id": "t-1",
                "customer_id": customer,
                "occurred_at": _now(30),
                "intent": "billing",
                "resolved": False,
                "transferred": True,
                "repeat": True,
                "handle_time_s": 420.0,
            },
            {"type": "sentiment", "event_id": "t-2", "customer_id": customer, "occurred_at": _now(29), "score": -0.9},
            {"type": "complaint", "event_id": "t-3", "customer_id": customer, "occurred_at": _now(28), "open": True},
        ]
    }
    first = http.post("/v1/events", json=batch)
    assert first.status_code == 200
    assert first.json()["applied"] == 3
    assert [r["status"] for r in first.json()["results"]] == ["applied"] * 3
    again = http.post("/v1/events", json=batch).json()
    assert again["duplicates"] == 3
    assert again["applied"] == 0
    after = _features(redis_url, registry, customer)
    assert after["contacts_7d"] == before["contacts_7d"] + 1
    assert after["repeat_contacts_30d"] == before["repeat_contacts_30d"] + 1
    assert after["transfers_30d"] == before["transfers_30d"] + 1
    assert after["last_sentiment"] == -0.9
    assert after["open_complaint"] == 1.0


def test_new_event_types_reach_their_features(http: httpx.Client, redis_url: str, registry: Registry) -> None:
    customer = "C000044"
    before = _features(redis_url, registry, customer)
    header = {"customer_id": customer}
    batch = {
        "events": [
            {
                "type": "contact_started",
                "event_id": "n-1",
                "occurred_at": _now(40),
                "intent": "cancel",
                "channel": "chat",
            },
            {
                "type": "contact_ended",
                "event_id": "n-2",
                "occurred_at": _now(30),
                "intent": "cancel",
                "resolved": True,
                "transferred": False,
                "repeat": False,
                "handle_time_s": 600.0,
            },
            {"type": "survey_answered", "event_id": "n-3", "occurred_at": _now(20), "csat": 2},
            {"type": "usage", "event_id": "n-4", "occurred_at": _now(15), "units": 40.0},
            {"type": "offer_presented", "event_id": "n-5", "occurred_at": _now(10), "action_id": "discount_10"},
            {"type": "cart_abandoned", "event_id": "n-6", "occurred_at": _now(5), "cart_value": 129.5},
            {"type": "consent_changed", "event_id": "n-7", "occurred_at": _now(1), "purpose": "sms", "granted": True},
        ]
    }
    response = http.post("/v1/events", json={"events": [header | event for event in batch["events"]]})
    assert response.status_code == 200
    assert response.json()["applied"] == 7
    after = _features(redis_url, registry, customer)
    schema = registry.entity("customer")
    assert after["last_contact_reason"] == schema.feature("last_contact_reason").encode("cancel")
    assert after["last_csat"] == 2.0
    assert after["usage_7d"] == before["usage_7d"] + 40.0
    assert after["last_offer"] == schema.feature("last_offer").encode("discount_10")
    assert after["abandoned_cart_value"] == 129.5
    assert after["days_since_abandoned_cart"] == 0.0
    bad = {"type": "survey_answered", "event_id": "n-8", "occurred_at": _now(), "csat": 0} | header
    response = http.post("/v1/events", json={"events": [bad]})
    assert response.status_code == 422
    assert "events.0.survey_answered.csat" in response.json()["detail"]


def test_the_next_recommendation_sees_the_event(http: httpx.Client) -> None:
    body = {"customer_id": "C000042", "channel": "voice"}
    before = http.post("/v1/recommend", json=body).json()["customer"]
    http.post(
        "/v1/events",
        json={
            "events": [
                {
                    "type": "sentiment",
                    "event_id": "s-1",
                    "customer_id": "C000042",
                    "occurred_at": _now(1),
                    "score": -1.0,
                }
            ]
        },
    )
    after = http.post("/v1/recommend", json=body).json()["customer"]
    assert after["sentiment"] == -1.0
    assert after["churn_risk"] != before["churn_risk"]


def test_one_bad_event_rejects_the_batch_naming_the_field(
    http: httpx.Client, redis_client: redis.Redis, registry: Registry, redis_url: str
) -> None:
    before = _features(redis_url, registry, "C000043")
    batch = {
        "events": [
            {"type": "login", "event_id": "ok-1", "customer_id": "C000043", "occurred_at": _now(5)},
            {"type": "sentiment", "event_id": "bad-1", "customer_id": "C000043", "occurred_at": _now(5), "score": 3},
        ]
    }
    response = http.post("/v1/events", json=batch)
    assert response.status_code == 422
    assert "events.1" in response.json()["detail"]
    assert "score" in response.json()["detail"]
    assert _features(redis_url, registry, "C000043")["logins_7d"] == before["logins_7d"]


def test_events_from_the_future_or_without_a_time_zone_are_refused(http: httpx.Client) -> None:
    future = {"type": "login", "event_id": "f-1", "customer_id": "C000042", "occurred_at": _now(-60)}
    naive = {"type": "login", "event_id": "f-2", "customer_id": "C000042", "occurred_at": "2026-01-01T10:00:00"}
    for event in (future, naive):
        response = http.post("/v1/events", json={"events": [event]})
        assert response.status_code == 422
        assert "occurred_at" in response.json()["detail"]


def test_unknown_event_type_is_refused(http: httpx.Client) -> None:
    response = http.post(
        "/v1/events",
        json={"events": [{"type": "teleported", "event_id": "x", "customer_id": "C1", "occurred_at": _now()}]},
    )
    assert response.status_code == 422
    assert "type" in response.json()["detail"] or "teleported" in response.json()["detail"]


def test_without_redis_events_are_refused_with_retry_after(data_dir: Path, champions: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    with serve(settings_for(data_dir, dead)) as served:
        response = httpx.post(
            f"{served.url}/v1/events",
            json={"events": [{"type": "login", "event_id": "d-1", "customer_id": "C1", "occurred_at": _now()}]},
            timeout=10,
        )
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0


def test_a_posted_event_reaches_the_offline_store_through_the_stream(
    http: httpx.Client, redis_url: str, registry: Registry, world: Path, tmp_path: Path
) -> None:
    """Applied online by the POST, archived by the consumer: the next training frame sees what serving saw."""
    for table in ("customer_snapshots.parquet", "customer_events.parquet"):
        (tmp_path / table).symlink_to(world / table)  # the session's world, with an archive of this test's own
    event = {
        "type": "contact_ended",
        "event_id": "arch-1",
        "customer_id": "C000042",
        "occurred_at": _now(30),
        "intent": "billing",
        "resolved": True,
        "transferred": False,
        "repeat": False,
        "handle_time_s": 300.0,
    }
    assert http.post("/v1/events", json={"events": [event]}).json()["applied"] == 1

    async def consume() -> ConsumeStats:
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = OnlineStore(client, registry)
            consumer = StreamConsumer(
                client, store, EventArchive(tmp_path, registry), registry, namespace="nba", consumer="t", block_ms=50
            )
            return await consumer.run(asyncio.Event(), max_events=1)
        finally:
            await client.aclose()

    stats = asyncio.run(consume())
    assert (stats.entries, stats.applied, stats.duplicates) == (1, 0, 1)  # the API had applied it already
    archived = OfflineStore(tmp_path, registry).events("customer", since=datetime.now(UTC) - timedelta(hours=1))
    row = next(r for r in archived.to_pylist() if r["event_id"] == "arch-1")
    assert row["occurred_at"] == datetime.fromisoformat(event["occurred_at"])  # the time it was placed at online
    assert (row["intent"], row["handle_time_s"]) == ("billing", 300.0)
    served = OfflineStore(tmp_path, registry).as_of("customer", ["C000042"]).to_pylist()[0]
    trained_without = OfflineStore(world, registry).as_of("customer", ["C000042"]).to_pylist()[0]
    assert served["contacts_7d"] == trained_without["contacts_7d"] + 1
    assert _features(redis_url, registry, "C000042")["contacts_7d"] == served["contacts_7d"]
