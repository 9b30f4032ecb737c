"""``POST /v1/events`` end to end: validated, applied once, visible to the next decision."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from features import ConsumeStats, EventArchive, OfflineStore, OnlineStore, Registry, StreamConsumer
from features.events import body_model, event_models
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
    with serve(settings_for(data_dir, dead)) as served, served.client() as client:
        response = client.post(
            "/v1/events",
            json={"events": [{"type": "login", "event_id": "d-1", "customer_id": "C1", "occurred_at": _now()}]},
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
            return await consumer.run(asyncio.Event(), max_entries=1)
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


# One event on its own: the same JSON as one element of ``events``, answered in the batch's shape.


def _served(http: httpx.Client, customer: str) -> dict[str, object]:
    """The customer's features as ``GET /v1/customers/{id}/features`` serves them, by name."""
    response = http.get(f"/v1/customers/{customer}/features")
    assert response.status_code == 200
    return {f["name"]: f["value"] for f in response.json()["features"]}


def _answer(**statuses: str) -> dict[str, object]:
    """The answer to events of these ids with these statuses, in this order."""
    counts = {s: list(statuses.values()).count(s) for s in ("applied", "duplicate", "too_old", "erased")}
    return {
        "applied": counts["applied"],
        "duplicates": counts["duplicate"],
        "too_old": counts["too_old"],
        "erased": counts["erased"],
        "results": [{"event_id": event_id, "status": status} for event_id, status in statuses.items()],
    }


def test_one_event_is_applied_once_and_answered_like_a_batch(http: httpx.Client) -> None:
    customer = "C000045"
    before = _served(http, customer)
    login = {"type": "login", "event_id": "one-1", "customer_id": customer, "occurred_at": _now(3)}
    sentiment = {
        "type": "sentiment",
        "event_id": "one-2",
        "customer_id": customer,
        "occurred_at": _now(2),
        "score": -0.4,
    }

    first = http.post("/v1/events", json=login)
    assert first.status_code == 200
    assert first.json() == _answer(**{"one-1": "applied"})
    assert http.post("/v1/events", json=sentiment).json() == _answer(**{"one-2": "applied"})
    after = _served(http, customer)
    assert after["logins_7d"] == before["logins_7d"] + 1
    assert after["last_sentiment"] == -0.4

    # Replayed alone or inside a batch, the same event_id is a duplicate and counts nothing.
    assert http.post("/v1/events", json=login).json() == _answer(**{"one-1": "duplicate"})
    again = http.post("/v1/events", json={"events": [sentiment, login]})
    assert again.json() == _answer(**{"one-2": "duplicate", "one-1": "duplicate"})
    assert _served(http, customer) == after


def test_a_batch_event_replayed_alone_is_a_duplicate(http: httpx.Client) -> None:
    customer = "C000045"
    before = _served(http, customer)
    usage = {"type": "usage", "event_id": "b-1", "customer_id": customer, "occurred_at": _now(5), "units": 7.5}
    login = {"type": "login", "event_id": "b-2", "customer_id": customer, "occurred_at": _now(4)}
    assert http.post("/v1/events", json={"events": [usage, login]}).json() == _answer(
        **{"b-1": "applied", "b-2": "applied"}
    )
    assert http.post("/v1/events", json=usage).json() == _answer(**{"b-1": "duplicate"})
    after = _served(http, customer)
    assert after["usage_7d"] == before["usage_7d"] + 7.5
    assert after["logins_7d"] == before["logins_7d"] + 1


_GOOD = {"type": "sentiment", "event_id": "bad-x", "customer_id": "C000046", "score": -0.2}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (_GOOD | {"occurred_at": "2026-01-01T10:00:00"}, "sentiment.occurred_at: Input should have timezone info"),
        (_GOOD | {"occurred_at": "2999-01-01T10:00:00Z"}, "sentiment.occurred_at: Value error, is in the future"),
        (_GOOD | {"score": 3}, "sentiment.score: Input should be less than or equal to 1"),
        (_GOOD | {"mood": "grumpy"}, "sentiment.mood: Extra inputs are not permitted"),
        ({k: v for k, v in _GOOD.items() if k != "customer_id"}, "sentiment.customer_id: Field required"),
        (_GOOD | {"type": "teleported"}, "body: Input tag 'teleported' found using 'type' does not match"),
        (
            {"events": [{"type": "login", "event_id": "ok-x", "customer_id": "C000046"}, _GOOD | {"score": 3}]},
            "events.1.sentiment.score: Input should be less than or equal to 1",
        ),
    ],
    ids=["no-time-zone", "in-the-future", "score-above-1", "unknown-field", "no-customer", "unknown-type", "batch"],
)
def test_an_invalid_body_is_refused_naming_the_field_and_stores_nothing(
    http: httpx.Client, redis_client: redis.Redis, body: dict[str, object], detail: str
) -> None:
    """One event or a batch, the body is validated whole before anything is applied or published."""
    customer = "C000046"
    keys = {k for k in redis_client.scan_iter(f"*{customer}*")} | {b"nba:events"}
    stored = {k: redis_client.dump(k) for k in keys}
    served = _served(http, customer)

    response = http.post("/v1/events", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail)
    assert {k for k in redis_client.scan_iter(f"*{customer}*")} | {b"nba:events"} == keys
    assert {k: redis_client.dump(k) for k in keys} == stored
    assert _served(http, customer) == served
    # Nothing of it was remembered either: the corrected event, under the same id, is applied.
    assert http.post("/v1/events", json=_GOOD).json() == _answer(**{"bad-x": "applied"})
    assert _served(http, customer)["last_sentiment"] == -0.2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([_GOOD], 'body: a body is one event or {"events": [...]}, each a JSON object'),
        ({}, "body: Unable to extract tag using discriminator 'type'"),
        ({"events": []}, "events: List should have at least 1 item after validation, not 0"),
    ],
    ids=["a-bare-list", "an-empty-object", "an-empty-batch"],
)
def test_a_body_of_neither_shape_is_refused_saying_what_a_body_is(
    http: httpx.Client, body: object, message: str
) -> None:
    response = http.post("/v1/events", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == message


def test_openapi_documents_one_event_and_a_batch_with_examples(http: httpx.Client, registry: Registry) -> None:
    schema = http.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert http.get("/schema/swagger").status_code == 200
    operation = schema.json()["paths"]["/v1/events"]["post"]
    assert operation["operationId"] == "ingest_events"
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    batch, one = body["oneOf"]
    assert batch == {"$ref": "#/components/schemas/EventBatch"}
    models = [model.__name__ for model in event_models(registry).values()]
    assert [s["$ref"] for s in one["oneOf"]] == [f"#/components/schemas/{m}" for m in models]
    components = schema.json()["components"]["schemas"]
    assert components["EventBatch"]["properties"]["events"]["items"] == one
    assert components["SentimentEvent"]["properties"]["score"]["maximum"] == 1
    # One example of each shape, and each is a body the service accepts.
    single, many = body["examples"]
    assert single["type"] == "sentiment"
    assert len(many["events"]) == 2
    request = body_model(registry)
    assert [len(request.model_validate(example).events) for example in (single, many)] == [1, 2]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/EventsResponse"}
