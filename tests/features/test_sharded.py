"""Reads and commands on a real 3-shard Redis Cluster over our own connections (:mod:`features.sharded`): the same
bytes as one server, a slot that moves to another shard, a shard that stops answering, connections the servers
close, and a shard that goes away.

The module starts its own cluster (:func:`features.local_cluster.local_cluster`) with the test world materialized,
since one test moves a slot between shards and another pauses a shard; the test that shuts a shard down starts a
cluster of its own. Replies that redis-py answered carry its
response callbacks (``HGETALL`` as a dict) where ours are raw RESP (a flat list): what tells the tests which path a
command took.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from features import EntityBatch, EntityVector, OfflineStore, OnlineStore, OnlineStoreUnavailable, Registry, connect
from features.identity import Identifier
from features.local_cluster import Cluster, Shard, local_cluster
from features.sharded import ShardedPipeline, routed
from tests.conftest import materialize_world, run_with_store
from training.console import Reporter
from training.demo import ensure_materialized

T = TypeVar("T")
TIMEOUT_S = 0.2  # the service's read timeout in the tests (settings_for uses 200 ms)
PAUSE_MS = 2_000  # how long a shard stops answering: past every read of the test that waits on it


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory, registry: Registry, offline: OfflineStore) -> Iterator[Cluster]:
    """Three primaries holding the test world, materialized by the demo's own path."""
    with local_cluster(tmp_path_factory.mktemp("sharded")) as cluster:
        stamp: dict[str, object] = {"built_at": f"sharded-test-{time.time_ns()}"}
        asyncio.run(ensure_materialized(cluster.url, "nba", registry, offline, stamp, Reporter(), cluster=True))
        yield cluster


def _run(url: str, registry: Registry, body: Callable[[OnlineStore], Awaitable[T]], *, timeout_s: float = 5.0) -> T:
    """Run ``body`` with an online store on a cluster client, both opened and closed inside the event loop."""
    return run_with_store(url, registry, body, "nba", cluster=True, timeout_s=timeout_s)


def _home(cluster: Cluster, key: str) -> Shard:
    (shard,) = [s for s in cluster.shards if s.owns(key)]
    return shard


Read = tuple[EntityVector, EntityBatch]


def _bytes(reads: list[Read]) -> list[tuple[object, ...]]:
    """Everything a read decodes to, as bytes and plain values: equal lists mean identical answers."""
    out: list[tuple[object, ...]] = []
    for customer, agents in reads:
        out.append(
            (
                customer.entity_id,
                customer.values.tobytes(),
                customer.known.tobytes(),
                customer.found,
                sorted(customer.view_age_s.items()),
                customer.stale_views,
                agents.ids,
                agents.values.tobytes(),
                agents.known.tobytes(),
                agents.found.tobytes(),
                agents.ages.tobytes(),
            )
        )
    return out


def test_reads_decode_to_the_same_bytes_as_on_one_server(
    clustered: Cluster, redis_url: str, registry: Registry, offline: OfflineStore
) -> None:
    materialize_world(redis_url, registry, offline)
    customers = [*offline.latest("customer").column("customer_id").to_pylist()[:150], "C-nobody"]
    agents = [*offline.latest("agent").column("agent_id").to_pylist(), *(f"AX{i:03d}" for i in range(20))]
    assert all(any(s.owns(f"nba:agent:{{{a}}}") for a in agents) for s in clustered.shards)
    phone = Identifier("phone", "+15550100042")
    now = time.time()

    async def reads(store: OnlineStore) -> list[Read]:
        await store.link(customers[3], [phone])
        out = [await store.read(c, agents, now=now) for c in customers]
        out += [await store.read(c, agents[:7], now=now, events=False) for c in customers[:20]]
        out.append(await store.read(phone, agents, now=now))
        await store.unlink(customers[3], [phone])
        return out

    single = run_with_store(redis_url, registry, reads, "nba")
    sharded = _run(clustered.url, registry, reads)
    assert len(single) == len(customers) + 21
    assert _bytes(sharded) == _bytes(single)
    # The data is real: found customers and agents, the identifier resolved, the unknowns cold.
    assert [c.found for c, _ in single[: len(customers)]] == [True] * (len(customers) - 1) + [False]
    assert int(single[0][1].found.sum()) == 100
    assert single[-1][0].entity_id == customers[3]
    assert single[-1][0].values.tobytes() == single[3][0].values.tobytes()


def test_commands_run_on_their_keys_primaries_over_our_connections(clustered: Cluster, registry: Registry) -> None:
    """Each command goes to its key's primary (a script's by its first key), replies in the order sent, raw: ``SET``
    answers ``b"OK"`` and ``HGETALL`` a flat list, where redis-py would have answered ``True`` and a dict."""
    keys = [f"t:k:{{k{i}}}".encode() for i in range(40)]
    hashes = [f"t:h:{{k{i}}}".encode() for i in range(40)]
    assert all(any(s.owns(k) for k in keys) for s in clustered.shards)
    get = b"return redis.call('GET', KEYS[1])"
    n = len(keys)

    async def body(store: OnlineStore) -> list[object]:
        await store.ping()  # redis-py loads its slot map (a client without one sends everything through redis-py)
        return await store.execute(
            [[b"SET", k, b"v%d" % i] for i, k in enumerate(keys)]
            + [[b"HSET", h, b"f", b"%d" % i] for i, h in enumerate(hashes)]
            + [[b"EVAL", get, b"1", k] for k in keys]
            + [[b"EVAL", b"return 7", b"0"]]
            + [[b"HGETALL", h] for h in hashes]
            + [[b"DEL", k] for k in keys + hashes]
        )

    replies = _run(clustered.url, registry, body)
    assert replies[:n] == [b"OK"] * n
    assert replies[n : 2 * n] == [1] * n
    assert replies[2 * n : 3 * n] == [b"v%d" % i for i in range(n)]
    assert replies[3 * n] == 7
    assert replies[3 * n + 1 : 4 * n + 1] == [[b"f", b"%d" % i] for i in range(n)]
    assert replies[4 * n + 1 :] == [1] * 2 * n


def _node_id(shard: Shard) -> str:
    with shard.client() as client:
        return str(client.execute_command("CLUSTER", "MYID").decode())


def _begin_move(slot: int, source: Shard, target: Shard) -> None:
    """Start moving ``slot`` as an operator's resharding does: IMPORTING, MIGRATING, then MIGRATE of its keys (the
    source answers ASK for them from then on)."""
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", _node_id(source))
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", _node_id(target))
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)


def _end_move(cluster: Cluster, slot: int, target: Shard) -> None:
    """Tell every node ``target`` owns ``slot`` now (the others answer MOVED for it)."""
    owner = _node_id(target)
    for shard in cluster.shards:
        with shard.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", owner)


def test_a_slot_moved_to_another_shard_is_read_through_redis_py_then_from_its_new_owner(
    clustered: Cluster, registry: Registry, offline: OfflineStore
) -> None:
    agents = offline.latest("agent").column("agent_id").to_pylist()
    key = f"nba:agent:{{{agents[0]}}}"
    probe = f"t:probe:{{{agents[0]}}}".encode()  # a hash in the agent's slot: its reply tells whose path answered
    slot = key_slot(key.encode())
    source = _home(clustered, key)
    target = next(s for s in clustered.shards if s is not source)
    now = time.time()

    async def body() -> tuple[list[Read], list[object]]:
        client = connect(clustered.url, timeout_s=5.0, cluster=True)
        assert isinstance(client, RedisCluster)
        store, reads = OnlineStore(client, registry), ShardedPipeline(client)
        try:
            await store.execute([[b"HSET", probe, b"f", b"v"]])
            before = await store.read("C000042", agents, now=now)  # slot map loaded, our connections open
            _begin_move(slot, source, target)
            migrating = await store.read("C000042", agents, now=now)  # the source answers ASK: redis-py follows it
            (asked,) = await reads.exchange([routed([b"HGETALL", probe])])
            _end_move(clustered, slot, target)
            (moved,) = await reads.exchange([routed([b"HGETALL", probe])])  # MOVED: redis-py patches its map
            owner = client.nodes_manager.slots_cache[slot][0].port
            (direct,) = await reads.exchange([routed([b"HGETALL", probe])])  # now straight to the new owner
            after = await store.read("C000042", agents, now=now)
            await store.execute([[b"DEL", probe]])
        finally:
            _begin_move(slot, target, source)  # back, for the other tests
            _end_move(clustered, slot, source)
            await reads.aclose()
            await store.aclose()
            await client.aclose()
        return [before, migrating, after], [asked, moved, owner, direct]

    (before, migrating, after), (asked, moved, owner, direct) = asyncio.run(body())
    assert before[1].found[0]
    assert _bytes([migrating]) == _bytes([before])
    assert _bytes([after]) == _bytes([before])
    assert asked == {b"f": b"v"}  # redis-py's answer (a dict), after ASK
    assert moved == {b"f": b"v"}  # redis-py's answer, after MOVED
    assert owner == target.port
    assert direct == [b"f", b"v"]  # raw: our connection to the new owner
    with source.client() as admin:
        assert admin.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) >= 1  # moved back


def test_a_paused_shard_fails_the_read_within_the_timeout_and_the_others_keep_serving(
    clustered: Cluster, registry: Registry, offline: OfflineStore
) -> None:
    paused = clustered.shards[1]
    customers = offline.latest("customer").column("customer_id").to_pylist()
    elsewhere = next(c for c in customers if not paused.owns(f"nba:customer:{{{c}}}"))
    agents = offline.latest("agent").column("agent_id").to_pylist()
    assert any(paused.owns(f"nba:agent:{{{a}}}") for a in agents)
    now = time.time()

    async def body(store: OnlineStore) -> tuple[list[float], list[Read]]:
        before = await store.read(elsewhere, agents, now=now)  # the connections are open
        with paused.client() as admin:
            admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        paused_at = time.monotonic()
        timings = []
        started = time.monotonic()
        with pytest.raises(OnlineStoreUnavailable, match="TimeoutError"):
            await store.read(elsewhere, agents, now=now)  # some agents live on the paused shard
        timings.append(time.monotonic() - started)
        started = time.monotonic()
        alone = await store.read(elsewhere, now=now)  # the customer's own shard still answers
        timings.append(time.monotonic() - started)
        started = time.monotonic()
        with pytest.raises(OnlineStoreUnavailable):
            await store.read(elsewhere, agents, now=now)  # through redis-py now: it has its own say on the node
        timings.append(time.monotonic() - started)
        await asyncio.sleep(max(0.0, PAUSE_MS / 1000 - (time.monotonic() - paused_at)) + 0.1)
        healed = [await store.read(elsewhere, agents, now=now) for _ in range(2)]  # redis-py's, then ours again
        return timings, [before, alone, *healed]

    timings, (before, alone, *healed) = _run(clustered.url, registry, body, timeout_s=TIMEOUT_S)
    first, other_shard, through_redis_py = timings
    # One timeout; redis-py's pipeline takes two (its one retry: 0.40 s measured), and never the pause.
    assert first < 1.5 * TIMEOUT_S
    assert other_shard < TIMEOUT_S
    assert through_redis_py < PAUSE_MS / 1000 / 2  # bounded by redis-py's own budget, never the pause
    assert alone[0].values.tobytes() == before[0].values.tobytes()
    assert _bytes(healed) == _bytes([before, before])


def test_connections_killed_by_the_servers_are_opened_again(
    clustered: Cluster, registry: Registry, offline: OfflineStore
) -> None:
    agents = offline.latest("agent").column("agent_id").to_pylist()
    now = time.time()

    async def body(store: OnlineStore) -> list[Read]:
        reads = [await store.read("C000042", agents, now=now)]
        for shard in clustered.shards:  # every client connection, ours and redis-py's
            with shard.client() as admin:
                admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await asyncio.sleep(0.05)  # the closes reach the client
        reads += [await store.read("C000042", agents, now=now) for _ in range(2)]
        return reads

    reads = _run(clustered.url, registry, body)
    assert reads[0][1].found.all()
    assert _bytes(reads) == _bytes(reads[:1] * 3)


def test_a_shard_that_went_away_hands_its_keys_to_redis_py_which_finds_their_new_owner(
    tmp_path: Path, registry: Registry
) -> None:
    """A slot given to another shard, then its old owner shut down (a failover, in effect): our connection to the old
    owner is refused, so its commands go through redis-py's pipeline, whose retry reloads the slot map and finds the
    new owner. A key the dead shard still owns is unavailable, at once: nothing waits for a timeout or hangs."""
    with local_cluster(tmp_path) as cluster:
        slot = key_slot(b"moved")
        keys = [f"t:{{moved}}:{i}".encode() for i in range(10)]
        gone = next(s for s in cluster.shards if s.first_slot <= slot <= s.last_slot)
        heir = next(s for s in cluster.shards if s is not gone)
        stranded = next(f"t:{{s{i}}}".encode() for i in range(1000) if gone.owns(f"t:{{s{i}}}"))

        async def body(store: OnlineStore) -> tuple[list[object], list[object], float]:
            await store.ping()
            await store.execute([[b"SET", k, k] for k in keys])
            before = await store.execute([[b"GET", k] for k in keys])  # our connections open, the slot map loaded
            _begin_move(slot, gone, heir)
            _end_move(cluster, slot, heir)
            for shard in cluster.shards:  # the others keep serving their slots without the dead one's (not CLUSTERDOWN)
                with shard.client() as admin:
                    admin.config_set("cluster-require-full-coverage", "no")
            with gone.client() as admin, contextlib.suppress(redis.ConnectionError):
                admin.shutdown(nosave=True)
            after = await store.execute([[b"GET", k] for k in keys])
            started = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable, match="ConnectionError"):
                await store.execute([[b"GET", stranded]])
            return before, after, time.monotonic() - started

        before, after, elapsed = _run(cluster.url, registry, body, timeout_s=TIMEOUT_S)
    assert before == keys
    assert after == keys
    assert elapsed < TIMEOUT_S
