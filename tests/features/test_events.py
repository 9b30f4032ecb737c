"""Event features: live application, materialization and the point-in-time join agree, event by event."""

from __future__ import annotations

import asyncio
import itertools
import random
import tempfile
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
import redis.asyncio as aioredis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features import Event, EventLayout, OfflineStore, OfflineStoreError, OnlineStore, Registry, materialize_events
from features.event_state import ID_BYTES, id_width
from features.events import batch_model, body_model, to_event
from features.materialize import event_state

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
        # Ids of 8 to 64 bytes: the state's ids are as wide as the longest, and widen when a longer one arrives.
        suffix = "x" * rng.choice([0, 0, 0, 7, 30, 52])
        events.append(Event(f"e{i:04d}-{customer}{suffix}"[:ID_BYTES], customer, kind, float(occurred), fields))
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


def _live_and_materialized(
    redis_url: str, registry: Registry, offline: OfflineStore, events: list[Event], ids: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``ids``' event features read back after applying ``events`` live, and after materializing them instead."""

    async def run() -> tuple[np.ndarray, np.ndarray]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            live = OnlineStore(client, registry, namespace="live")
            await live.apply_events("customer", events, now=NOW)
            materialized = OnlineStore(client, registry, namespace="mat")
            await materialize_events(offline, materialized, "customer", now=NOW)
            return await _read(live, ids, NOW), await _read(materialized, ids, NOW)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _event_columns(registry: Registry) -> list[int]:
    schema = registry.entity("customer")
    return [schema.index[f.name] for f in schema.event_features]


def _consent(purpose: str) -> dict[str, object]:
    return {"kind": "last", "event": "consent_changed", "where": {"purpose": purpose}, "field": "granted"}


@pytest.fixture(scope="module")
def consent_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The packaged contract plus consent per purpose from events: `last` and `days_since` narrowed by `where`,
    and an unfiltered `last` of the same event beside them."""
    data = yaml.safe_load(resources.files("features").joinpath("registry.yaml").read_text(encoding="utf-8"))
    feature = {"dtype": "bool", "description": "d", "reason": "r"}
    data["views"].append(
        {
            "name": "customer_consent_events",
            "entity": "customer",
            "source": "events",
            "ttl_days": 120,
            "owner": "privacy",
            "description": "Consent per purpose, as the consent platform's events say.",
            "features": [
                {**feature, "name": "marketing_granted", "aggregation": _consent("marketing")},
                {**feature, "name": "sms_granted", "aggregation": _consent("sms")},
                {
                    **feature,
                    "name": "days_since_marketing_consent",
                    "dtype": "int",
                    "aggregation": {
                        "kind": "days_since",
                        "event": "consent_changed",
                        "where": {"purpose": "marketing"},
                    },
                },
                {
                    **feature,
                    "name": "last_consent_purpose",
                    "dtype": "category",
                    "categories": ["marketing", "profiling", "phone"],  # sms left out: unknown, not defaulted
                    "aggregation": {"kind": "last", "event": "consent_changed", "field": "purpose"},
                },
            ],
        }
    )
    path = tmp_path_factory.mktemp("contract") / "registry.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return Registry.load(path)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), later=st.lists(st.integers(0, 100), max_size=3))
def test_live_events_read_back_as_the_point_in_time_join_computes(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    consent_registry: Registry,
    seed: int,
    n: int,
    later: list[int],
) -> None:
    """Applied out of order and twice, then read that day and days later (windows slide, rings wrap), the
    events give what the point-in-time join computes at each moment."""
    registry = consent_registry
    rng = random.Random(seed)
    customer = f"P{next(_counter)}"
    events = _random_events(rng, registry, customer, n)
    offline = _offline(tmp_path_factory.mktemp("pit"), registry, events)
    shuffled = events + rng.sample(events, k=min(5, len(events)))  # out of order, some sent twice
    rng.shuffle(shuffled)
    moments = [NOW, *(NOW + days * 86_400 + rng.randint(0, 86_399) for days in later)]

    async def run() -> tuple[list[np.ndarray], list[str]]:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry, namespace=f"t{seed}")
        try:
            statuses = await store.apply_events("customer", shuffled, now=NOW)
            return [await _read(store, [customer], at) for at in moments], statuses
        finally:
            await client.aclose()

    online, statuses = asyncio.run(run())
    schema = registry.entity("customer")
    horizon = NOW - schema.event_horizon_days * 86_400
    sent: dict[str, list[str]] = {}
    for event, status in zip(shuffled, statuses, strict=True):
        sent.setdefault(event.event_id, []).append(status)
    for event in events:
        got = sent[event.event_id]
        if event.occurred_at > horizon:  # applied once, however often sent
            assert sorted(got) == ["applied"] + ["duplicate"] * (len(got) - 1), (event, got)
        elif event.type in schema.timeless_events:
            # Past the horizon a timeless event (consent) is applied, and again when it comes again unless its id
            # is still remembered (ids that old are trimmed once a day): either way it changes nothing the second
            # time, since only a newer event replaces the newest.
            assert got[0] == "applied", (event, got)
            assert set(got) <= {"applied", "duplicate"}, (event, got)
        else:
            assert set(got) == {"too_old"}, (event, got)
    cols = _event_columns(registry)
    for at, served in zip(moments, online, strict=True):
        expected = _offline_vectors(offline, [customer], at)
        # Sums of floats added in another order may differ in the last bits; counts are whole and exact.
        assert np.allclose(served[:, cols], expected[:, cols], equal_nan=True, rtol=0, atol=1e-9), (
            at,
            served[:, cols],
            expected[:, cols],
        )


def test_materialized_state_reads_back_as_the_point_in_time_join(
    tmp_path: Path, redis_client: redis.Redis, redis_url: str, consent_registry: Registry
) -> None:
    registry = consent_registry
    rng = random.Random(7)
    events = [e for c in range(20) for e in _random_events(rng, registry, f"M{c}", 40)]
    offline = _offline(tmp_path, registry, events)
    ids = sorted({e.entity_id for e in events})
    later = NOW + 45 * 86_400

    async def run() -> tuple[np.ndarray, np.ndarray]:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        try:
            assert await materialize_events(offline, store, "customer", now=NOW) == len(ids)
            return await _read(store, ids, NOW), await _read(store, ids, later)
        finally:
            await client.aclose()

    online, aged = asyncio.run(run())
    cols = _event_columns(registry)
    expected = _offline_vectors(offline, ids, NOW)
    # Per-day totals come from the same DuckDB sums and are added oldest day first, as the join adds them.
    assert np.array_equal(online[:, cols], expected[:, cols], equal_nan=True)
    assert np.array_equal(aged[:, cols], _offline_vectors(offline, ids, later)[:, cols], equal_nan=True)
    # Counts are not all zero, and the filtered groups are exercised: the test would pass vacuously otherwise.
    assert np.nansum(online[:, cols]) > 0
    schema = registry.entity("customer")
    assert (~np.isnan(online[:, schema.index["marketing_granted"]])).sum() >= 3


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 90))
def test_materialized_state_is_the_same_however_the_events_are_batched(
    registry: Registry, seed: int, batch: int
) -> None:
    """Materialization reads the events a batch at a time and gathers each type's across batches: every value
    is byte for byte the one read in a single batch, day totals added in the same order, ties of one microsecond
    (some events here share their stamp) broken alike, and events out of the horizon left out alike."""
    rng = random.Random(seed)
    events = [e for c in range(6) for e in _random_events(rng, registry, f"B{c}", 30)]
    events += [Event(f"t{i}", e.entity_id, e.type, e.occurred_at, e.fields) for i, e in enumerate(events[::7])]
    rng.shuffle(events)
    layout = EventLayout(registry.entity("customer"))
    with tempfile.TemporaryDirectory() as tmp:
        offline = _offline(Path(tmp), registry, events)
        whole = event_state(offline, layout, "customer", now=NOW)
        batched = event_state(offline, layout, "customer", now=NOW, scan_rows=batch)
    assert batched.ids == whole.ids == sorted({e.entity_id for e in events})
    assert batched.values(0, len(whole.ids)) == whole.values(0, len(whole.ids))


def test_last_and_days_since_narrowed_by_where_follow_their_own_events(
    tmp_path: Path, redis_client: redis.Redis, redis_url: str, consent_registry: Registry
) -> None:
    """A withdrawn SMS consent after a marketing grant changes the SMS feature, not the marketing one."""
    registry = consent_registry
    events = [
        Event("c1", "K1", "consent_changed", NOW - 10 * 86_400, {"purpose": "marketing", "granted": True}),
        Event("c2", "K1", "consent_changed", NOW - 2 * 86_400, {"purpose": "sms", "granted": False}),
        Event("c3", "K1", "consent_changed", NOW - 3_600, {"purpose": "phone", "granted": True}),
        Event("c4", "K2", "consent_changed", NOW - 3_600, {"purpose": "sms", "granted": True}),
    ]
    offline = _offline(tmp_path / "offline", registry, events)
    schema = registry.entity("customer")

    live, materialized = _live_and_materialized(redis_url, registry, offline, list(reversed(events)), ["K1", "K2"])
    expected = _offline_vectors(offline, ["K1", "K2"], NOW)
    names = ["marketing_granted", "sms_granted", "days_since_marketing_consent", "last_consent_purpose"]
    at = [schema.index[n] for n in names]
    want = np.array([[1.0, 0.0, 10.0, 2.0], [np.nan, 1.0, np.nan, np.nan]])  # K2's last purpose (sms) is unlisted
    for values in (live, materialized, expected):
        assert np.array_equal(values[:, at], want, equal_nan=True)


def test_the_newest_of_two_events_of_the_same_microsecond_is_the_greater_id(
    tmp_path: Path, redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    """The offline store orders by (occurred_at, event_id); live ingestion in either order and materialization
    pick the same event."""
    at = NOW - 600.000_001
    a = Event("tie-a", "T1", "sentiment", at, {"score": 0.9})
    b = Event("tie-b", "T1", "sentiment", at, {"score": -0.3})
    offline = _offline(tmp_path / "offline", registry, [a, b])
    index = registry.entity("customer").index["last_sentiment"]

    async def run() -> list[float]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            served = []
            for ns, batches in (("ab", [[a], [b]]), ("ba", [[b], [a]]), ("one", [[a, b]])):
                store = OnlineStore(client, registry, namespace=ns)
                for batch in batches:
                    await store.apply_events("customer", batch, now=NOW)
                served.append((await store.read("T1", now=NOW))[0].values[index])
            store = OnlineStore(client, registry, namespace="mat")
            await materialize_events(offline, store, "customer", now=NOW)
            served.append((await store.read("T1", now=NOW))[0].values[index])
            return served
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [-0.3] * 4
    assert _offline_vectors(offline, ["T1"], NOW)[0, index] == -0.3


def test_ids_widen_for_a_longer_id_and_still_break_ties(
    tmp_path: Path, redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    """Materialized ids of 8 bytes, then a live event with a 40-byte id: the value is rewritten with every id
    padded to 40 and its records moved along, and a tie with the materialized newest still goes to the greater
    id, read as the point-in-time join reads it."""
    at = NOW - 600.000_001
    events = [
        Event("s-5", "W1", "sentiment", at, {"score": 0.5}),
        Event("l-1", "W1", "login", NOW - 3 * 86_400, {}),
        Event("l-2", "W1", "login", NOW - 86_400, {}),
    ]
    later = [
        Event("u-" + "9" * 38, "W1", "usage", NOW - 300, {"units": 12.5}),  # widens: 40 bytes
        Event("s-4", "W1", "sentiment", at, {"score": -0.9}),  # a tie the held "s-5" wins
        Event("s-6", "W1", "sentiment", at, {"score": 0.1}),  # a tie it loses
    ]
    schema = registry.entity("customer")
    layout = EventLayout(schema)
    key = "wide:events:customer:{W1}"

    async def run() -> list[tuple[int, float]]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = OnlineStore(client, registry, namespace="wide")
            await materialize_events(_offline(tmp_path / "before", registry, events), store, "customer", now=NOW)
            seen = []
            for event in later:
                await store.apply_events("customer", [event], now=NOW)
                stored = redis_client.get(key)
                assert isinstance(stored, bytes)
                seen.append(
                    (id_width(stored), (await store.read("W1", now=NOW))[0].values[schema.index["last_sentiment"]])
                )
            return seen
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [(40, 0.5), (40, 0.5), (40, 0.1)]
    stored = redis_client.get(key)
    assert isinstance(stored, bytes)
    assert (len(stored) - layout.records_at(stored)) % 16 == 0
    ids = [stored[layout.ids_at + 40 * k : layout.ids_at + 40 * (k + 1)].rstrip(b"\0") for k in range(layout.id_slots)]
    assert b"s-6" in ids  # the held ids kept whole through the rewrite, the new one written at the new width
    offline = _offline(tmp_path / "after", registry, events + later)

    async def read() -> np.ndarray:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await _read(OnlineStore(client, registry, namespace="wide"), ["W1"], NOW)
        finally:
            await client.aclose()

    cols = _event_columns(registry)
    assert np.allclose(asyncio.run(read())[:, cols], _offline_vectors(offline, ["W1"], NOW)[:, cols], equal_nan=True)


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
    schema = registry.entity("customer")
    vector = asyncio.run(_read_one(redis_url, registry, "F1"))
    assert vector[schema.index["logins_7d"]] == 2


async def _read_one(redis_url: str, registry: Registry, customer: str, namespace: str = "nba") -> np.ndarray:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return (await OnlineStore(client, registry, namespace=namespace).read(customer, now=NOW))[0].values
    finally:
        await client.aclose()


def test_a_ring_keeps_only_the_days_its_windows_can_reach(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    """A day a ring has moved past is dropped, a later day zeroes the days it skips, and a gap longer than the
    ring starts it over: each read equals counting the events by hand."""
    today = int(NOW // 86_400)
    day = lambda d: float((today - d) * 86_400 + 3_600)  # noqa: E731
    index = registry.entity("customer").index
    steps = [
        ([Event("r1", "G1", "payment_failed", day(0), {"amount": 10.0})], 1),
        ([Event("r2", "G1", "payment_failed", day(89), {"amount": 1.0})], 2),
        ([Event("r3", "G1", "payment_failed", day(90), {"amount": 1.0})], 2),  # out
        ([Event("r4", "G1", "payment_failed", day(5), {"amount": 1.0})], 3),
    ]

    async def run() -> list[float]:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        try:
            counts = []
            for events, _ in steps:
                await store.apply_events("customer", events, now=NOW)
                counts.append((await store.read("G1", now=NOW))[0].values[index["failed_payments_90d"]])
            # 60 days on, r1 and r4 are still in the window; 200 days on, none is.
            for days in (60, 200):
                counts.append((await store.read("G1", now=NOW + days * 86_400))[0].values[index["failed_payments_90d"]])
            late = Event("r5", "G1", "payment_failed", NOW + 200 * 86_400, {"amount": 1.0})
            await store.apply_events("customer", [late], now=NOW + 200 * 86_400)
            counts.append((await store.read("G1", now=NOW + 200 * 86_400))[0].values[index["failed_payments_90d"]])
            return counts
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [c for _, c in steps] + [2, 0, 1]


def test_day_records_a_ring_has_moved_past_are_skipped_then_dropped(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    """A ring keeps a record per day with events; one its ring has moved past is skipped by reads (it would land
    in the slot of a day 30 days later) and is gone from the value after the entity's first event of a later day."""
    today = int(NOW // 86_400)
    layout = EventLayout(registry.entity("customer"))
    key = "nba:events:customer:{D1}"
    logins = registry.entity("customer").index["logins_30d"]
    steps = [
        (["d1", "d2"], today - 40, NOW),  # two logins 40 days ago: out of the window, the ring at day -40
        (["d3"], today - 10, NOW),  # the ring moves on 30 days: day -40 is past it, and shares day -10's slot
        (["d4"], today + 1, NOW + 86_400),  # a day later: the daily trim drops day -40's record
    ]

    async def run() -> list[tuple[int, float]]:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        seen = []
        try:
            for ids, day, now in steps:
                events = [Event(i, "D1", "login", day * 86_400 + 60.0, {}) for i in ids]
                await store.apply_events("customer", events, now=now)
                stored = redis_client.get(key)
                assert isinstance(stored, bytes)
                value = (await store.read("D1", now=now))[0].values[logins]
                at = layout.records_at(stored)
                seen.append(((len(stored) - at) // 16, value))
                if len(stored) == at + 32:  # records in either order read alike
                    swapped = stored[:at] + stored[-16:] + stored[-32:-16]
                    redis_client.set(key, swapped)
                    assert (await store.read("D1", now=now))[0].values[logins] == value
                    redis_client.set(key, stored)
            return seen
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [(1, 0.0), (2, 1.0), (2, 2.0)]


def test_state_of_another_layout_reads_as_absent_and_is_started_over(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    """After a contract change the old state is not misread: a cold start, until an event starts it over."""
    login = Event("l1", "X1", "login", NOW - 60, {})
    asyncio.run(_apply(redis_url, registry, [login]))
    key = "nba:events:customer:{X1}"
    stored = redis_client.get(key)
    assert isinstance(stored, bytes)
    layout = EventLayout(registry.entity("customer"))
    assert len(stored) == layout.ids_at + layout.id_slots * 8 + 16  # the fixed part, ids of 8 bytes, one day record
    redis_client.set(key, b"\x00" * 8 + stored[8:])  # same size, another layout's tag
    schema = registry.entity("customer")
    assert np.isnan(asyncio.run(_read_one(redis_url, registry, "X1"))[schema.index["days_since_last_activity"]])
    asyncio.run(_apply(redis_url, registry, [Event("l2", "X1", "login", NOW - 30, {})]))
    values = asyncio.run(_read_one(redis_url, registry, "X1"))
    assert values[schema.index["logins_7d"]] == 1  # l1 went with the foreign bytes; l2 counts on a fresh state
    assert redis_client.get(key)[:8] == EventLayout(schema).tag  # type: ignore[index]


async def _apply(redis_url: str, registry: Registry, events: list[Event]) -> list[str]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return await OnlineStore(client, registry).apply_events("customer", events, now=NOW)
    finally:
        await client.aclose()


def test_an_event_id_longer_than_the_state_keeps_is_refused(redis_url: str, registry: Registry) -> None:
    long = Event("x" * (ID_BYTES + 1), "Y1", "sentiment", NOW - 60, {"score": 0.5})
    with pytest.raises(ValueError, match=f"at most {ID_BYTES} bytes"):
        asyncio.run(_apply(redis_url, registry, [long]))


def test_materializing_an_event_id_longer_than_the_state_keeps_names_the_event(
    tmp_path: Path, redis_url: str, registry: Registry
) -> None:
    """The newest sentiment's id goes to the tail: one longer than it holds stops the run, naming the event type."""
    events = [
        Event("s1", "Y1", "sentiment", NOW - 120, {"score": 0.1}),
        Event("x" * (ID_BYTES + 1), "Y1", "sentiment", NOW - 60, {"score": 0.5}),
    ]
    offline = _offline(tmp_path, registry, events)

    async def materialized() -> int:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await materialize_events(offline, OnlineStore(client, registry), "customer", now=NOW)
        finally:
            await client.aclose()

    with pytest.raises(OfflineStoreError, match=f"event_id of 'sentiment' is longer than {ID_BYTES} bytes"):
        asyncio.run(materialized())


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

    live, materialized = _live_and_materialized(redis_url, registry, offline, events, ["N1", "N2"])
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
    # Sent on its own, the same event is refused naming the same field, without the batch's prefix.
    (alone,) = _body(kind, **fields)["events"]  # type: ignore[misc]
    with pytest.raises(ValidationError) as caught:
        body_model(registry).model_validate(alone)
    assert [".".join(str(p) for p in error["loc"]) for error in caught.value.errors()] == [loc]


def test_a_body_is_one_event_or_a_batch_and_either_way_a_list(registry: Registry) -> None:
    model = body_model(registry)
    (usage,) = _body("usage", units=12.0)["events"]  # type: ignore[misc]
    (survey,) = _body("survey_answered", csat=2)["events"]  # type: ignore[misc]
    (alone,) = model.model_validate(usage).events
    assert to_event(alone, registry) == (
        "customer",
        Event(
            event_id="v-usage",
            entity_id="C000001",
            type="usage",
            occurred_at=datetime(2026, 6, 1, 10, tzinfo=UTC).timestamp(),
            fields={"units": 12.0},
        ),
    )
    batch = model.model_validate({"events": [survey, usage]}).events
    assert [to_event(e, registry)[1] for e in batch] == [
        to_event(e, registry)[1]
        for e in batch_model(registry).model_validate({"events": [survey, usage]}).events  # type: ignore[attr-defined]
    ]
    assert [e.event_id for e in batch] == ["v-survey_answered", "v-usage"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], 'a body is one event or {"events": [...]}, each a JSON object'),
        ("login", 'a body is one event or {"events": [...]}, each a JSON object'),
        ({}, "Unable to extract tag using discriminator 'type'"),
        ({"events": []}, "List should have at least 1 item after validation, not 0"),
    ],
    ids=["a-bare-list", "a-string", "an-empty-object", "an-empty-batch"],
)
def test_a_body_of_neither_shape_is_refused_saying_what_a_body_is(
    registry: Registry, body: object, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        body_model(registry).model_validate(body)
    assert [error["msg"] for error in caught.value.errors()] == [message]
