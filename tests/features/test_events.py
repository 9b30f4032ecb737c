"""Event features: live application, materialization and the point-in-time join agree, event by event."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features import Event, OfflineStore, OnlineStore, Registry, materialize_events
from features.events import batch_model, to_event

NOW = datetime(2026, 6, 15, 13, 30, tzinfo=UTC).timestamp()
_counter = itertools.count()


def _random_events(rng: random.Random, registry: Registry, customer: str, n: int) -> list[Event]:
    """Events of every customer type spread over the last 200 days, some at day boundaries."""
    events = []
    types = [name for name, e in registry.events.items() if e.entity == "customer"]
    for i in range(n):
        kind = rng.choice(types)
        spec = registry.events[kind].fields
        day = int(NOW // 86_400) - rng.randint(0, 200)
        second = rng.choice([0, 1, 86_399, rng.randint(0, 86_399)])
        occurred = min(day * 86_400 + second, NOW)
        fields: dict[str, object] = {}
        for name, f in spec.items():
            if not f.required and rng.random() < 0.3:
                continue  # an optional field left out: a `last` of it reads as unknown, a mean skips it
            if f.dtype == "bool":
                fields[name] = rng.random() < 0.5
            elif f.dtype == "category":
                fields[name] = rng.choice(f.categories or ("x",))
            elif f.dtype == "float":
                fields[name] = round(
                    rng.uniform(f.min if f.min is not None else -5, f.max if f.max is not None else 5), 3
                )
            elif f.dtype == "int":
                fields[name] = rng.randint(
                    int(f.min if f.min is not None else -5), int(f.max if f.max is not None else 5)
                )
            else:
                fields[name] = rng.choice(["retention_offer", "discount_10", "not_in_the_catalog"])
        events.append(Event(f"e{i:04d}-{customer}", customer, kind, float(occurred), fields))
    return events


def _events_table(registry: Registry, events: list[Event]) -> pa.Table:
    columns = registry.event_columns("customer")
    types = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "category": pa.string(), "str": pa.string()}
    data: dict[str, pa.Array] = {
        "event_id": pa.array([e.event_id for e in events]),
        "customer_id": pa.array([e.entity_id for e in events]),
        "occurred_at": pa.array(
            [datetime.fromtimestamp(e.occurred_at, UTC) for e in events], type=pa.timestamp("us", tz="UTC")
        ),
        "type": pa.array([e.type for e in events]),
    }
    for name, dtype in columns.items():
        data[name] = pa.array([e.fields.get(name) for e in events], type=types[dtype])
    return pa.table(data)


def _offline(tmp: Path, registry: Registry, events: list[Event]) -> OfflineStore:
    """An offline store with the given events and one empty-ish snapshot per customer."""
    tmp.mkdir(parents=True, exist_ok=True)
    pq.write_table(_events_table(registry, events), tmp / "customer_events.parquet")
    schema = registry.entity("customer")
    ids = sorted({e.entity_id for e in events})
    snapshot: dict[str, pa.Array] = {
        "customer_id": pa.array(ids),
        "feature_ts": pa.array(
            [datetime.fromtimestamp(NOW - 86_400, UTC)] * len(ids), type=pa.timestamp("us", tz="UTC")
        ),
    }
    for f in schema.snapshot_features:
        value = {"int": 1, "float": 1.5, "bool": True, "category": (f.categories or ("",))[0]}[f.dtype]
        snapshot[f.name] = pa.array([value] * len(ids))
    pq.write_table(pa.table(snapshot), tmp / "customer_snapshots.parquet")
    return OfflineStore(tmp, registry)


def _offline_vectors(offline: OfflineStore, ids: list[str], at: float) -> np.ndarray:
    labels = pa.table(
        {
            "customer_id": ids,
            "ts": pa.array([datetime.fromtimestamp(at, UTC)] * len(ids), type=pa.timestamp("us", tz="UTC")),
        }
    )
    frame = offline.point_in_time("customer", labels)
    order = {c: i for i, c in enumerate(frame.column("customer_id").to_pylist())}
    return offline.matrix("customer", frame)[[order[c] for c in ids]]


async def _read(store: OnlineStore, ids: list[str], at: float) -> np.ndarray:
    return np.vstack([(await store.read(c, now=at))[0].values for c in ids])


def _event_columns(registry: Registry) -> list[int]:
    schema = registry.entity("customer")
    return [schema.index[f.name] for f in schema.event_features]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60))
def test_live_events_read_back_as_the_point_in_time_join_computes(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, registry: Registry, seed: int, n: int
) -> None:
    rng = random.Random(seed)
    customer = f"P{next(_counter)}"
    events = _random_events(rng, registry, customer, n)
    offline = _offline(tmp_path_factory.mktemp("pit"), registry, events)
    shuffled = events + rng.sample(events, k=min(5, len(events)))  # out of order, some sent twice
    rng.shuffle(shuffled)

    async def run() -> tuple[np.ndarray, list[str]]:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry, namespace=f"t{seed}")
        try:
            statuses = await store.apply_events("customer", shuffled, now=NOW)
            return await _read(store, [customer], NOW), statuses
        finally:
            await client.aclose()

    online, statuses = asyncio.run(run())
    horizon = NOW - registry.entity("customer").event_horizon_days * 86_400
    fresh = [e for e in events if e.occurred_at > horizon]
    assert statuses.count("applied") == len(fresh)
    assert statuses.count("too_old") == len(shuffled) - len(fresh) - statuses.count("duplicate")
    cols = _event_columns(registry)
    expected = _offline_vectors(offline, [customer], NOW)
    assert np.allclose(online[:, cols], expected[:, cols], equal_nan=True, rtol=0, atol=1e-9), (
        online[:, cols],
        expected[:, cols],
    )


def test_materialized_state_reads_back_as_the_point_in_time_join(
    tmp_path: Path, redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    rng = random.Random(7)
    events = [e for c in range(20) for e in _random_events(rng, registry, f"M{c}", 40)]
    offline = _offline(tmp_path, registry, events)
    ids = sorted({e.entity_id for e in events})

    async def run() -> np.ndarray:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        try:
            assert await materialize_events(offline, store, "customer", now=NOW) == len(ids)
            return await _read(store, ids, NOW)
        finally:
            await client.aclose()

    online = asyncio.run(run())
    cols = _event_columns(registry)
    expected = _offline_vectors(offline, ids, NOW)
    assert np.allclose(online[:, cols], expected[:, cols], equal_nan=True, rtol=0, atol=1e-9)
    # Counts are not all zero: the test would pass vacuously otherwise.
    assert np.nansum(online[:, cols]) > 0


def test_a_window_holds_whole_utc_days(redis_client: redis.Redis, redis_url: str, registry: Registry) -> None:
    today = int(NOW // 86_400)
    first_day = (today - 6) * 86_400  # the oldest day of a 7-day window
    events = [
        Event("in-early", "W1", "login", float(first_day), {}),
        Event("in-late", "W1", "login", float(first_day + 86_399), {}),
        Event("out", "W1", "login", float(first_day - 1), {}),  # the day before: in 30 days, not in 7
    ]

    async def run() -> np.ndarray:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        try:
            await store.apply_events("customer", events, now=NOW)
            return (await store.read("W1", now=NOW))[0].values
        finally:
            await client.aclose()

    values = asyncio.run(run())
    schema = registry.entity("customer")
    assert values[schema.index["logins_7d"]] == 2
    assert values[schema.index["logins_30d"]] == 3
    assert values[schema.index["days_since_last_activity"]] == int((NOW - (first_day + 86_399)) // 86_400)


def test_a_retried_event_counts_once_and_a_newer_value_wins(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    older = Event("s1", "R1", "sentiment", NOW - 3_600, {"score": -0.8})
    newer = Event("s2", "R1", "sentiment", NOW - 60, {"score": 0.4})

    async def run() -> tuple[list[str], list[str], np.ndarray]:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        try:
            first = await store.apply_events("customer", [newer, older], now=NOW)
            again = await store.apply_events("customer", [older, newer], now=NOW)
            return first, again, (await store.read("R1", now=NOW))[0].values
        finally:
            await client.aclose()

    first, again, values = asyncio.run(run())
    schema = registry.entity("customer")
    assert first == ["applied", "applied"]
    assert again == ["duplicate", "duplicate"]
    assert values[schema.index["last_sentiment"]] == pytest.approx(0.4)  # the late, older event does not win
    assert values[schema.index["sentiment_mean_30d"]] == pytest.approx((-0.8 + 0.4) / 2)


def test_an_event_older_than_the_horizon_is_refused(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    ancient = Event("old", "H1", "login", NOW - timedelta(days=400).total_seconds(), {})

    async def run() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        try:
            return await store.apply_events("customer", [ancient], now=NOW)
        finally:
            await client.aclose()

    assert asyncio.run(run()) == ["too_old"]
    assert redis_client.exists("nba:customer:{H1}") == 0


def test_a_server_that_forgot_the_script_is_given_it_again(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    async def run() -> list[list[str]]:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        try:
            first = await store.apply_events("customer", [Event("f1", "F1", "login", NOW - 60, {})], now=NOW)
            redis_client.script_flush()  # as after a restart or a failover
            second = await store.apply_events("customer", [Event("f2", "F1", "login", NOW - 30, {})], now=NOW)
            return [first, second]
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [["applied"], ["applied"]]
    assert redis_client.hget("nba:ev:customer:{F1}", f"n|login|@{int(NOW // 86_400)}") == b"2"


def test_last_of_a_field_the_newest_event_lacks_is_unknown_everywhere(
    tmp_path: Path, redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    """An older survey with an NPS must not stand in for a newer one without: live, materialized and offline."""
    events = [
        Event("n1", "N1", "survey_answered", NOW - 7_200, {"csat": 2, "nps": 3}),
        Event("n2", "N1", "survey_answered", NOW - 3_600, {"csat": 5}),
        Event("m1", "N2", "survey_answered", NOW - 3_600, {"csat": 4, "nps": 9}),
    ]
    offline = _offline(tmp_path / "offline", registry, events)
    index = registry.entity("customer").index["last_nps"]

    async def run() -> tuple[np.ndarray, np.ndarray]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            live = OnlineStore(client, registry, namespace="live")
            await live.apply_events("customer", events, now=NOW)
            materialized = OnlineStore(client, registry, namespace="mat")
            await materialize_events(offline, materialized, "customer", now=NOW)
            return await _read(live, ["N1", "N2"], NOW), await _read(materialized, ["N1", "N2"], NOW)
        finally:
            await client.aclose()

    live, materialized = asyncio.run(run())
    expected = _offline_vectors(offline, ["N1", "N2"], NOW)
    for values in (live, materialized, expected):
        assert np.isnan(values[0, index])
        assert values[1, index] == 9.0


# ---- event schemas ---------------------------------------------------------------------------------

_VALID: dict[str, dict[str, object]] = {
    "usage": {"units": 12.0},
    "contact_started": {"intent": "billing", "channel": "chat"},
    "survey_answered": {"csat": 4, "nps": 9},
    "cart_abandoned": {"cart_value": 79.9},
    "consent_changed": {"purpose": "sms", "granted": False},
}


def _body(kind: str, **fields: object) -> dict[str, object]:
    event = {"type": kind, "event_id": f"v-{kind}", "customer_id": "C000001", "occurred_at": "2026-06-01T10:00:00Z"}
    return {"events": [event | fields]}


def test_each_new_event_type_validates_into_a_store_event(registry: Registry) -> None:
    model = batch_model(registry)
    for kind, fields in _VALID.items():
        (validated,) = model.model_validate(_body(kind, **fields)).events  # type: ignore[attr-defined]
        entity, event = to_event(validated, registry)
        assert (entity, event.type, event.entity_id, event.fields) == ("customer", kind, "C000001", fields)
        assert event.occurred_at == datetime(2026, 6, 1, 10, tzinfo=UTC).timestamp()
    # NPS is optional: a survey without it is valid and carries none.
    (survey,) = model.model_validate(_body("survey_answered", csat=2)).events  # type: ignore[attr-defined]
    assert to_event(survey, registry)[1].fields == {"csat": 2, "nps": None}


@pytest.mark.parametrize(
    ("kind", "fields", "loc"),
    [
        ("survey_answered", {"csat": 6}, "survey_answered.csat"),
        ("survey_answered", {"csat": 3, "nps": 11}, "survey_answered.nps"),
        ("survey_answered", {"nps": 7}, "survey_answered.csat"),
        ("usage", {"units": -1.0}, "usage.units"),
        ("usage", {"units": 3.0, "minutes": 3}, "usage.minutes"),
        ("contact_started", {"intent": "billing", "channel": "fax"}, "contact_started.channel"),
        ("cart_abandoned", {"cart_value": "lots"}, "cart_abandoned.cart_value"),
        ("consent_changed", {"purpose": "email", "granted": True}, "consent_changed.purpose"),
        ("consent_changed", {"purpose": "sms"}, "consent_changed.granted"),
    ],
    ids=[
        "csat-above-5",
        "nps-above-10",
        "csat-missing",
        "negative-usage",
        "unknown-field",
        "unknown-channel",
        "cart-value-not-a-number",
        "unknown-purpose",
        "granted-missing",
    ],
)
def test_a_bad_field_of_a_new_event_is_named(
    registry: Registry, kind: str, fields: dict[str, object], loc: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        batch_model(registry).model_validate(_body(kind, **fields))
    assert [".".join(str(p) for p in error["loc"]) for error in caught.value.errors()] == [f"events.0.{loc}"]
