"""The online store serves exactly what the offline store holds, in one round trip, and says when it is stale.

Each test opens its own ``redis.asyncio`` client inside the coroutine it runs with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from features import (
    EntitySchema,
    EntityVector,
    Event,
    OfflineStore,
    OnlineStore,
    OnlineStoreUnavailable,
    Registry,
    materialize,
    materialize_events,
)
from features.event_state import EventLayout
from features.identity import Identifier
from features.packed import PackedLayout
from tests.conftest import run_with_store, served_known

T = TypeVar("T")
DAY = 86_400.0
NS = "t"  # a namespace of our own for the tests that write their own rows


def _run(redis_url: str, registry: Registry, body: Callable[[OnlineStore], Awaitable[T]], ns: str = NS) -> T:
    return run_with_store(redis_url, registry, body, ns)


def _defaults(schema: EntitySchema) -> np.ndarray:
    return np.array([f.encode(None) for f in schema.features], dtype=np.float64)


def _agent(agent_id: str, i: int) -> dict[str, Any]:
    """A synthetic agent whose every feature differs from its defaults and from its neighbours'."""
    return {
        "agent_id": agent_id,
        "skill_billing": i % 2 == 0,
        "skill_technical": i % 3 == 0,
        "skill_retention": True,
        "skill_sales": i % 5 == 0,
        "speaks_en": True,
        "speaks_es": i % 2 == 1,
        "speaks_fr": i % 7 == 0,
        "proficiency_billing": 0.001 * i,
        "proficiency_technical": 0.9 - 0.001 * i,
        "proficiency_retention": 1 / (i + 3),
        "proficiency_sales": 0.25,
        **{
            f"resolution_rate_{s}_{w}": 0.4 + 0.001 * (i + j) + 0.05 * k
            for j, s in enumerate(("billing", "technical", "retention", "sales"))
            for k, w in enumerate(("90d", "180d"))
        },
        **{
            f"contacts_{s}_{w}": (k + 1) * (i + j + 1)
            for j, s in enumerate(("billing", "technical", "retention", "sales"))
            for k, w in enumerate(("90d", "180d"))
        },
        "experience_months": 3 * i + 1,
        "resolution_rate_30d": 0.5 + 0.002 * i,
        "handle_time_mean_30d_s": 300.0 + i,
        "available": i % 4 != 0,
        "current_load": i % 4,
        "max_load": 4 + i,
        "idle_seconds": 10 * i,
    }


def _expected(schema: EntitySchema, row: dict[str, Any]) -> np.ndarray:
    return np.array([f.encode(row[f.name]) for f in schema.features], dtype=np.float64)


# ---- round trip of the simulated world -------------------------------------------------------------


def _newest_events(offline: OfflineStore, since: float, until: float) -> dict[tuple[str, str], float]:
    """Epoch seconds of each (customer, event type)'s newest event in ``(since, until]`` (from the first for the
    timeless types, which no horizon limits)."""
    events = offline.events(
        "customer",
        since=datetime.fromtimestamp(since, UTC),
        until=datetime.fromtimestamp(until, UTC),
        whole=offline.registry.entity("customer").timeless_events,
    )
    newest = events.group_by(["customer_id", "type"]).aggregate([("occurred_at", "max")])
    return {
        (c, t): ts.timestamp()
        for c, t, ts in zip(
            newest.column("customer_id").to_pylist(),
            newest.column("type").to_pylist(),
            newest.column("occurred_at_max").to_pylist(),
            strict=True,
        )
    }


def test_round_trip_matches_the_offline_matrix(
    materialized: None, redis_url: str, registry: Registry, offline: OfflineStore
) -> None:
    customers, agents = offline.latest("customer"), offline.latest("agent")
    schema = registry.entity("customer")
    snapshot_views = [v for v in schema.views if v.source == "snapshot"]
    ttl = {v.name: v.ttl_days * DAY for v in snapshot_views}
    # Every snapshot view shares one TTL, so a customer's snapshot is fresh or stale as a whole.
    assert len(set(ttl.values())) == 1
    now = time.time()
    ages = [now - ts.timestamp() for ts in customers.column("feature_ts").to_pylist()]
    fresh = [i for i, age in enumerate(ages) if age <= next(iter(ttl.values()))]
    stale = [i for i, age in enumerate(ages) if age > next(iter(ttl.values()))]
    assert len(fresh) > 1_000
    assert len(stale) > 10
    ids = customers.column("customer_id").to_pylist()
    agent_ids = agents.column("agent_id").to_pylist()

    async def body(store: OnlineStore) -> tuple[list[EntityVector], list[EntityVector]]:
        first, served_agents = await store.read(ids[0], agent_ids, now=now)
        served = [first]
        for customer_id in ids[1:]:
            vector, _ = await store.read(customer_id, now=now)
            served.append(vector)
        return served, served_agents

    served, served_agents = _run(redis_url, registry, body, ns="nba")

    # Every customer, fresh or stale, is served what the offline store says about them at the same moment.
    expected = offline.as_of("customer", ids, at=datetime.fromtimestamp(now, UTC))
    assert np.array_equal(np.stack([v.values for v in served]), offline.matrix("customer", expected), equal_nan=True)
    assert [v.entity_id for v in served] == ids
    assert all(v.found for v in served)
    known = served_known(schema, expected)
    assert np.array_equal(np.stack([v.known for v in served]), known)
    assert [v.defaulted for v in served] == [
        tuple(n for n, k in zip(schema.names, row, strict=True) if not k) for row in known
    ]
    # Each view's age: a snapshot view's from the snapshot, an events view's from its newest event of its types.
    horizon = registry.entity("customer").event_horizon_days
    newest = _newest_events(offline, now - horizon * DAY, now)
    for vector, age in zip(served, ages, strict=True):
        for view in schema.views:
            if view.source == "snapshot":
                want: float | None = age
            else:
                seen = [
                    newest[(vector.entity_id, e)]
                    for e in {f.aggregation.event for f in view.features if f.aggregation}
                    if (vector.entity_id, e) in newest
                ]
                want = now - max(seen) if seen else None
            got = vector.view_age_s[view.name]
            assert (got is None) == (want is None), (vector.entity_id, view.name)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-3), (vector.entity_id, view.name)
        assert vector.stale_views == tuple(
            v.name for v in schema.views if (a := vector.view_age_s[v.name]) is not None and a > v.ttl_seconds
        )
    # Customers who churned long ago are still served, with every snapshot view reported stale and defaulted.
    snapshot_at = [schema.index[n] for n in schema.snapshot_names]
    for i in stale:
        vector = served[i]
        assert set(ttl) <= set(vector.stale_views)
        assert np.array_equal(vector.values[snapshot_at], _defaults(schema)[snapshot_at], equal_nan=True)
        assert not vector.known[snapshot_at].any()
    for i in fresh:
        assert not set(ttl) & set(served[i].stale_views)
        assert served[i].known[snapshot_at].all()
    assert np.array_equal(np.stack([a.values for a in served_agents]), offline.matrix("agent", agents), equal_nan=True)
    assert [a.entity_id for a in served_agents] == agent_ids


def test_unknown_id_is_a_cold_start(redis_client: redis.Redis, redis_url: str, registry: Registry) -> None:
    customer, agents = _run(redis_url, registry, lambda s: s.read("C999999", ["A9999"]))
    for vector, schema in ((customer, registry.entity("customer")), (agents[0], registry.entity("agent"))):
        assert vector.found is False
        assert np.array_equal(vector.values, _defaults(schema), equal_nan=True)
        assert vector.defaulted == schema.names
        assert vector.known.tolist() == [False] * len(schema.names)
        assert dict(vector.view_age_s) == {v.name: None for v in schema.views}
        assert vector.stale_views == ()
    assert agents[0].entity_id == "A9999"
    # tenure_months defaults to 0, plan has no default (NaN), max_load defaults to 1.
    assert customer.values[0] == 0.0
    assert np.isnan(customer.values[1])
    assert agents[0].values[registry.entity("agent").index["max_load"]] == 1.0


# ---- one pipeline for a customer and 200 agents ----------------------------------------------------


def _calls(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}


def test_one_customer_and_200_agents(redis_client: redis.Redis, redis_url: str, registry: Registry) -> None:
    schema = registry.entity("agent")
    rows = [_agent(f"A{i:04d}", i) for i in range(200)]
    now = time.time()
    customer_row = {
        "customer_id": "C000042",
        "tenure_months": 17,
        "plan": "premium",
        "language": "es",
    }

    async def write(store: OnlineStore) -> int:
        written = await store.write("agent", rows, observed_at=[now] * len(rows))
        return written + await store.write("customer", [customer_row], observed_at=[now])

    assert _run(redis_url, registry, write) == 201
    redis_client.config_resetstat()
    ids = [r["agent_id"] for r in reversed(rows)]  # order of the reply follows the order asked
    customer, agents = _run(redis_url, registry, lambda s: s.read("C000042", ids))
    # The customer's packed value and event state, and one MGET for all 200 agents, in the one pipeline.
    calls = _calls(redis_client)
    assert {k: calls.get(k) for k in ("get", "getrange", "mget", "hmget", "evalsha")} == {
        "get": 2,
        "getrange": None,
        "mget": 1,
        "hmget": None,
        "evalsha": None,
    }

    assert len(agents) == 200
    assert [a.entity_id for a in agents] == ids
    expected = np.stack([_expected(schema, r) for r in reversed(rows)])
    assert np.array_equal(np.stack([a.values for a in agents]), expected)
    assert all(a.found and a.known.all() and a.stale_views == () for a in agents)
    c = registry.entity("customer")
    assert customer.values[c.index["tenure_months"]] == 17.0
    assert customer.values[c.index["plan"]] == 2.0
    assert customer.values[c.index["language"]] == 1.0
    # Only customer_profile was written: its unwritten features and the other views are defaulted, but for
    # the windowed counts and sums of a customer the store knows (no event state: no events, so zero of each).
    counts = {f.name for f in c.event_features if f.aggregation and f.aggregation.kind in ("count", "sum")}
    assert set(customer.defaulted) == set(c.names) - {"tenure_months", "plan", "language"} - counts
    assert all(customer.values[c.index[n]] == 0.0 for n in counts)
    assert customer.view_age_s["customer_profile"] is not None
    assert customer.view_age_s["customer_account"] is None
    assert all(customer.view_age_s[v.name] is None for v in c.views if v.source == "events")
    assert customer.stale_views == ()


# ---- freshness, deletes, keys ----------------------------------------------------------------------


def test_view_older_than_its_ttl_is_stale_and_defaulted(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    schema = registry.entity("agent")
    row = _agent("A0001", 1)
    observed = time.time() - 2 * DAY  # agent_state's TTL is 1 day, agent_profile's 30 days

    async def body(store: OnlineStore) -> EntityVector:
        await store.write("agent", [row], observed_at=[observed])
        _, agents = await store.read("C000001", ["A0001"])
        return agents[0]

    agent = _run(redis_url, registry, body)
    state = [f.name for f in registry.views["agent_state"].features]
    assert agent.found
    assert agent.stale_views == ("agent_state",)
    assert agent.defaulted == tuple(state)
    for name in schema.names:
        feature = schema.feature(name)
        expected = feature.encode(None) if name in state else feature.encode(row[name])
        assert agent.values[schema.index[name]] == expected, name
        assert agent.known[schema.index[name]] == (name not in state)
    assert agent.view_age_s["agent_state"] == pytest.approx(2 * DAY, abs=60)
    assert agent.view_age_s["agent_profile"] == pytest.approx(2 * DAY, abs=60)


def test_writing_none_deletes_the_field(redis_client: redis.Redis, redis_url: str, registry: Registry) -> None:
    schema = registry.entity("agent")
    first, later = time.time() - 600, time.time() - 60
    key = f"{NS}:agent:{{A0007}}"

    async def body(store: OnlineStore) -> EntityVector:
        await store.write("agent", [_agent("A0007", 7)], observed_at=[first])
        await store.write("agent", [{"agent_id": "A0007", "current_load": None}], observed_at=[later])
        _, agents = await store.read("C1", ["A0007"])
        return agents[0]

    agent = _run(redis_url, registry, body)
    assert agent.found
    assert agent.defaulted == ("current_load",)
    assert agent.values[schema.index["current_load"]] == 0.0  # the declared default
    assert agent.values[schema.index["max_load"]] == 11.0
    # The write re-stamped only the view it touched.
    layout = PackedLayout(schema)
    slots, present = layout.unpack([redis_client.get(key)])  # type: ignore[list-item]
    assert present.tolist() == [True]
    stamps = dict(zip((v.name for v in layout.views), slots[0, layout.stamp_slots].tolist(), strict=True))
    assert stamps == {"agent_profile": first, "agent_state": later}


def test_keys_carry_the_id_as_hash_tag(redis_client: redis.Redis, redis_url: str, registry: Registry) -> None:
    now = time.time()
    row = {"customer_id": "C000123", "plan": "basic", "language": "en", "monthly_charge": 25.5}

    async def body(store: OnlineStore) -> str:
        await store.write("customer", [row], observed_at=[now])
        return store.key("customer", "C000123")

    key = _run(redis_url, registry, body)
    assert key == "t:customer:{C000123}"
    assert redis_client.keys("*") == [key.encode()]
    schema = registry.entity("customer")
    layout = PackedLayout(schema)
    stored = redis_client.get(key)
    assert isinstance(stored, bytes)
    assert len(stored) == layout.size
    assert stored.startswith(layout.tag)
    slots = layout.unpack([stored])[0][0]
    values = dict(zip((f.name for f in layout.features), slots[layout.value_slots].tolist(), strict=True))
    assert {n: v for n, v in values.items() if not np.isnan(v)} == {
        "plan": 0.0,
        "language": 0.0,
        "monthly_charge": 25.5,
    }
    stamps = dict(zip((v.name for v in layout.views), slots[layout.stamp_slots].tolist(), strict=True))
    assert stamps == {v.name: now if v.name == "customer_profile" else 0.0 for v in layout.views}


def test_a_value_of_another_layout_reads_as_absent(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    """After a contract change the old packed values are not misread: the entity reads as a cold start."""
    now = time.time()
    _run(redis_url, registry, lambda s: s.write("agent", [_agent("A0001", 1)], observed_at=[now]))
    key = "t:agent:{A0001}"
    stored = redis_client.get(key)
    assert isinstance(stored, bytes)
    redis_client.set(key, b"\x00" * 8 + stored[8:])  # same size, another layout's tag
    _, agents = _run(redis_url, registry, lambda s: s.read("C1", ["A0001"]))
    assert not agents[0].found
    # A partial write onto it starts from an empty value rather than keeping the foreign bytes.
    _run(redis_url, registry, lambda s: s.write("agent", [{"agent_id": "A0001", "current_load": 3}], observed_at=[now]))
    _, agents = _run(redis_url, registry, lambda s: s.read("C1", ["A0001"]))
    schema = registry.entity("agent")
    assert agents[0].found
    assert agents[0].values[schema.index["current_load"]] == 3.0
    assert set(agents[0].defaulted) == set(schema.names) - {"current_load"}


def test_a_row_without_declared_features_is_ignored(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    rows: list[dict[str, object]] = [
        {"agent_id": "A0001", "current_load": 2},
        {"agent_id": "A0002", "nickname": "Sam"},
    ]
    written = _run(redis_url, registry, lambda s: s.write("agent", rows, observed_at=[time.time()] * 2))
    assert written == 2
    _, agents = _run(redis_url, registry, lambda s: s.read("C1", ["A0001", "A0002"]))
    assert agents[0].values[registry.entity("agent").index["current_load"]] == 2.0
    assert agents[0].found
    assert not agents[1].found
    assert redis_client.exists("t:agent:{A0002}") == 0


# ---- materialization -------------------------------------------------------------------------------


def _dump(client: redis.Redis, pattern: str) -> dict[bytes, Any]:
    """Every key matching ``pattern`` with its value: the bytes of a string, the fields of a hash."""
    keys = sorted(client.scan_iter(match=pattern, count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key) if client.type(key) == b"hash" else pipe.get(key)
    return dict(zip(keys, pipe.execute(), strict=True))


def test_materialize_is_idempotent(
    redis_client: redis.Redis, redis_url: str, registry: Registry, offline: OfflineStore
) -> None:
    latest = offline.latest("customer")
    progress: list[tuple[int, int]] = []

    now = time.time()

    async def body(store: OnlineStore) -> tuple[int, int, int, int]:
        first = await materialize(offline, store, "customer", batch_size=1_500)
        events = await materialize_events(offline, store, "customer", now=now)
        return first, events, await store.count("customer"), await store.count("agent")

    async def again(store: OnlineStore) -> tuple[int, int, int]:
        second = await materialize(
            offline,
            store,
            "customer",
            batch_size=1_500,
            progress=lambda done, total: progress.append((done, total)),
        )
        events = await materialize_events(offline, store, "customer", now=now, batch_size=1_500)
        return second, events, await store.count("customer")

    first, events, count, agents = _run(redis_url, registry, body)
    snapshot = _dump(redis_client, f"{NS}:customer:*")
    state = _dump(redis_client, f"{NS}:events:customer:*")
    second, events_again, count_again = _run(redis_url, registry, again)

    n = latest.num_rows
    assert first == second == count == count_again == len(snapshot) == n
    assert 0 < events == events_again == len(state) <= n  # customers with events in the horizon
    assert agents == 0
    assert _dump(redis_client, f"{NS}:customer:*") == snapshot
    assert _dump(redis_client, f"{NS}:events:customer:*") == state
    events = EventLayout(registry.entity("customer"))
    assert all(value.startswith(events.tag) for value in state.values())
    assert all(len(value) >= events.records_at(value) for value in state.values())
    assert all((len(value) - events.records_at(value)) % 16 == 0 for value in state.values())  # fixed, ids, records
    assert all(re.fullmatch(rb"t:events:customer:\{C\d{6}\}", key) for key in state)
    assert progress == [(min(d, n), n) for d in range(1_500, n + 1_500, 1_500)]
    assert all(re.fullmatch(rb"t:customer:\{C\d{6}\}", key) for key in snapshot)
    # The stamp of every view is the snapshot's own time, not the time it was copied.
    first_id, first_ts = latest.column("customer_id")[0].as_py(), latest.column("feature_ts")[0].as_py()
    layout = PackedLayout(registry.entity("customer"))
    slots = layout.unpack([snapshot[f"{NS}:customer:{{{first_id}}}".encode()]])[0][0]
    assert set(slots[layout.stamp_slots].tolist()) == {first_ts.timestamp()}


def test_materialize_as_of_serves_old_snapshots_as_stale(
    redis_client: redis.Redis, redis_url: str, registry: Registry, offline: OfflineStore
) -> None:
    schema = registry.entity("customer")
    then = time.time() - 100 * DAY
    as_of = datetime.fromtimestamp(then, tz=UTC)
    old = offline.latest("customer", as_of)
    active = offline.as_of("customer", old.column("customer_id").to_pylist(), at=as_of)
    # A customer with a fresh snapshot, a login and a sentiment within their TTLs when the state was taken:
    # 100 days later every snapshot view and customer_activity (TTL 90 d) are past their TTL.
    customer_id = next(
        r["customer_id"]
        for r in active.to_pylist()
        if r["tenure_months"] is not None
        and r["days_since_last_activity"] is not None
        and r["last_sentiment"] is not None
    )

    async def body(store: OnlineStore) -> tuple[int, int, EntityVector, EntityVector]:
        written = await materialize(offline, store, "customer", as_of=as_of)
        events = await materialize_events(offline, store, "customer", now=then)
        vector, _ = await store.read(customer_id)
        at_the_time, _ = await store.read(customer_id, now=then)
        return written, events, vector, at_the_time

    written, events, vector, at_the_time = _run(redis_url, registry, body)
    assert written == old.num_rows > 0
    assert events > 0
    assert vector.found
    snapshot_views = {v.name for v in schema.views if v.source == "snapshot"}
    assert snapshot_views <= set(vector.stale_views)
    assert "customer_consent" not in vector.stale_views, "a consent never goes stale"
    assert "customer_activity" in vector.stale_views
    assert vector.view_age_s["customer_activity"] >= 100 * DAY  # type: ignore[operator]
    assert vector.stale_views == tuple(
        v.name for v in schema.views if (age := vector.view_age_s[v.name]) is not None and age > v.ttl_seconds
    )
    for name in ("days_since_last_activity", "last_sentiment", "plan"):
        assert name in vector.defaulted
    # Read at the moment it was taken, the same state is fresh and is what the offline store held then.
    assert not {*snapshot_views, "customer_activity", "customer_sentiment"} & set(at_the_time.stale_views)
    row = offline.as_of("customer", [customer_id], at=as_of)
    assert np.array_equal(at_the_time.values, offline.matrix("customer", row)[0], equal_nan=True)


# ---- queues and failures ---------------------------------------------------------------------------


def test_queue_set_and_get(redis_client: redis.Redis, redis_url: str, registry: Registry) -> None:
    async def body(store: OnlineStore) -> list[list[str]]:
        seen = [await store.queue_members("billing")]
        await store.set_queue("billing", ["A0003", "A0001", "A0002"])
        seen.append(await store.queue_members("billing"))
        await store.set_queue("billing", ["A0009"])
        seen.append(await store.queue_members("billing"))
        await store.set_queue("billing", [])
        seen.append(await store.queue_members("billing"))
        return seen

    assert _run(redis_url, registry, body) == [[], ["A0001", "A0002", "A0003"], ["A0009"], []]
    assert redis_client.exists("t:queue:billing") == 0


DEAD = "redis://127.0.0.1:1"
OPERATIONS: list[Callable[[OnlineStore], Awaitable[object]]] = [
    lambda s: s.ping(),
    lambda s: s.read("C000001", ["A0001"]),
    lambda s: s.write("agent", [_agent("A0001", 1)], observed_at=[0.0]),
    lambda s: s.set_queue("billing", ["A0001"]),
    lambda s: s.queue_members("billing"),
    lambda s: s.count("customer"),
]


@pytest.mark.parametrize("operation", OPERATIONS, ids=["ping", "read", "write", "set-queue", "queue", "count"])
def test_dead_redis_raises_unavailable(
    registry: Registry, operation: Callable[[OnlineStore], Awaitable[object]]
) -> None:
    with pytest.raises(OnlineStoreUnavailable, match=r"online store unavailable: ConnectionError.*127\.0\.0\.1:1"):
        _run(DEAD, registry, operation)


def test_materialize_reports_a_dead_redis(registry: Registry, offline: OfflineStore) -> None:
    with pytest.raises(OnlineStoreUnavailable, match="ConnectionError"):
        _run(DEAD, registry, lambda s: materialize(offline, s, "agent"))


def test_categories_travel_as_names(redis_client: redis.Redis, redis_url: str, registry: Registry) -> None:
    schema = registry.entity("customer")
    rows = [{"customer_id": "C000001", "plan": "standard", "contract_type": "lifetime", "language": "fr"}]

    async def body(store: OnlineStore) -> EntityVector:
        await store.write("customer", rows, observed_at=[time.time()])
        vector, _ = await store.read("C000001")
        return vector

    vector = _run(redis_url, registry, body)
    assert vector.values[schema.index["plan"]] == 1.0
    assert vector.values[schema.index["language"]] == 2.0
    # A category the contract does not know is served as missing rather than guessed.
    assert np.isnan(vector.values[schema.index["contract_type"]])
    assert "contract_type" in vector.defaulted


# ---- concurrent reads share round trips ----------------------------------------------------------------


def test_concurrent_reads_each_get_their_own_answer(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    """Reads asked in the same loop turn travel together; each still gets exactly its own customer, and a
    customer whose key holds the wrong type fails alone."""
    schema = registry.entity("customer")
    rows = [{"customer_id": f"C{i:06d}", "tenure_months": i, "plan": "basic"} for i in range(300)]
    redis_client.hset(f"{NS}:events:customer:{{BROKEN}}", "not", "a string")

    async def body(store: OnlineStore) -> list[object]:
        await store.write("customer", rows, observed_at=[time.time()] * len(rows))
        redis_client.config_resetstat()
        reads = [store.read(r["customer_id"]) for r in rows]
        reads.insert(150, store.read("BROKEN"))
        return await asyncio.gather(*reads, return_exceptions=True)

    answers = _run(redis_url, registry, body)
    broken = answers.pop(150)
    assert isinstance(broken, OnlineStoreUnavailable)
    assert "WRONGTYPE" in str(broken)
    tenure = [a[0].values[schema.index["tenure_months"]] for a in answers]  # type: ignore[index]
    assert tenure == [float(i) for i in range(300)]
    assert [a[0].entity_id for a in answers] == [r["customer_id"] for r in rows]  # type: ignore[index]
    stats: dict[str, Any] = redis_client.info("commandstats")
    assert stats["cmdstat_get"]["calls"] == 2 * 301  # each read's packed value and event state


@settings(max_examples=25, deadline=None)
@given(
    end_day=st.integers(min_value=19_000, max_value=22_000),
    first_offset_s=st.floats(min_value=0.0, max_value=DAY - 1),
    days_apart=st.integers(min_value=1, max_value=40),
)
def test_days_to_contract_end_counts_down_with_the_day_of_the_read(
    redis_url: str, registry: Registry, end_day: int, first_offset_s: float, days_apart: int
) -> None:
    """A derived feature is computed at read time: the same snapshot read ``days_apart`` days later says exactly
    that many fewer days to the contract's end, until the view's TTL (45 days) makes it unknown."""
    schema = registry.entity("customer")
    observed = 20_000 * DAY  # a UTC midnight; every read below is within the view's TTL of it
    first = observed + first_offset_s
    second = first + days_apart * DAY
    at, source_at = schema.index["days_to_contract_end"], schema.index["contract_end_day"]

    async def body(store: OnlineStore) -> tuple[EntityVector, EntityVector, EntityVector]:
        await store.write("customer", [{"customer_id": "CEND", "contract_end_day": end_day}], observed_at=[observed])
        before, _ = await store.read("CEND", now=first)
        after, _ = await store.read("CEND", now=second)
        stale, _ = await store.read("CEND", now=observed + 46 * DAY)
        return before, after, stale

    before, after, stale = _run(redis_url, registry, body)
    assert before.values[at] == end_day - 20_000
    assert before.values[at] - after.values[at] == days_apart
    assert before.values[source_at] == after.values[source_at] == end_day
    assert before.known[at]
    assert after.known[at]
    # Past the TTL the source is stale, and the derived value is unknown with it.
    assert np.isnan(stale.values[at])
    assert not stale.known[at]
    assert not stale.known[source_at]


def test_a_write_refuses_what_events_or_derivation_set(redis_url: str, registry: Registry) -> None:
    async def body(store: OnlineStore) -> None:
        row = {"customer_id": "C1", "plan": "basic", "consent_marketing": True, "days_to_contract_end": 3}
        await store.write("customer", [row], observed_at=[time.time()])

    with pytest.raises(ValueError, match=r"^consent_marketing, days_to_contract_end: not a stored snapshot feature"):
        _run(redis_url, registry, body)


# ---- a read without the event state -------------------------------------------------------------------


def test_a_read_without_event_state_serves_the_snapshot_views_alone(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    """``events=False`` (a snapshot view's HTTP read): the same snapshot values and ages as a whole read, event
    features not known (their defaults) and their views never observed, and ``found`` still counting a customer
    who has only events, also when read by an identifier."""
    schema = registry.entity("customer")
    now = time.time()
    event_at = np.array([f in schema.event_features for f in schema.features])
    event_views = {v.name for v in schema.views if v.source == "events"}
    email = Identifier("email", "only-events@example.com")

    async def body(store: OnlineStore) -> list[tuple[EntityVector, EntityVector]]:
        await store.write("customer", [{"customer_id": "C1", "tenure_months": 7, "plan": "premium"}], observed_at=[now])
        sentiment = [Event(f"e{c}", c, "sentiment", now - 60, {"score": -0.5}) for c in ("C1", "C2")]
        assert await store.apply_events("customer", sentiment, now=now) == ["applied", "applied"]
        await store.link("C2", [email])
        pairs = []
        for who in ("C1", "C2", "C3", email):
            (whole, _), (lean, _) = await store.read(who, now=now), await store.read(who, now=now, events=False)
            pairs.append((whole, lean))
        return pairs

    pairs = _run(redis_url, registry, body)
    assert [(whole.found, lean.found) for whole, lean in pairs] == [(True, True)] * 2 + [(False, False), (True, True)]
    assert [lean.entity_id for _, lean in pairs] == ["C1", "C2", "C3", "C2"]
    whole, lean = pairs[0]
    np.testing.assert_array_equal(lean.values[~event_at], whole.values[~event_at])
    np.testing.assert_array_equal(lean.known[~event_at], whole.known[~event_at])
    assert lean.values[schema.index["tenure_months"]] == 7.0
    assert whole.known[event_at].any()
    assert not lean.known[event_at].any()
    np.testing.assert_array_equal(lean.values[event_at], _defaults(schema)[event_at])
    assert whole.view_age_s["customer_sentiment"] == pytest.approx(60, abs=1)
    assert {v: lean.view_age_s[v] for v in event_views} == dict.fromkeys(event_views)
    snapshot_ages = {v: a for v, a in whole.view_age_s.items() if v not in event_views}
    assert {v: a for v, a in lean.view_age_s.items() if v not in event_views} == snapshot_ages
    assert snapshot_ages["customer_profile"] == pytest.approx(0, abs=1)
