"""The events stream consumer against the real test Redis: applied once, archived once, whatever crashes."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import ConsumeStats, EventArchive, EventPublisher, OfflineStore, OnlineStore, Registry, StreamConsumer
from features.event_stream import dead_letter_key, stream_key
from features.events import event_adapter, to_event
from tests.conftest import write_snapshots

_namespaces = itertools.count()


def _login(event_id: str, customer: str = "C1", minutes_ago: float = 10) -> str:
    at = datetime.fromtimestamp(time.time() - minutes_ago * 60, UTC).isoformat()
    return json.dumps({"type": "login", "event_id": event_id, "customer_id": customer, "occurred_at": at})


@dataclass
class Stores:
    """The parts a consumer works with, on one namespace of the test Redis."""

    client: aioredis.Redis
    store: OnlineStore
    archive: EventArchive
    publisher: EventPublisher
    namespace: str
    registry: Registry

    def consumer(self, name: str = "w1", **options: int) -> StreamConsumer:
        return StreamConsumer(
            self.client, self.store, self.archive, self.registry, namespace=self.namespace, consumer=name, **options
        )

    def without_ack(self, name: str) -> StreamConsumer:
        """A worker whose every step but the acknowledgement lands: its group does not exist, so XACK is a no-op."""
        return StreamConsumer(
            self.client, self.store, self.archive, self.registry, namespace=self.namespace, consumer=name, group="gone"
        )

    async def apply_only(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> None:
        """A worker that applied ``entries`` online and died before archiving them."""
        adapter = event_adapter(self.registry)
        models = [adapter.validate_json(fields[b"event"]) for _, fields in entries]
        await self.store.apply_events("customer", [to_event(m, self.registry)[1] for m in models])

    async def feature(self, customer: str, name: str) -> float:
        vector, _ = await self.store.read(customer)
        return float(vector.values[self.registry.entity("customer").index[name]])

    def archived(self) -> list[str]:
        return sorted(OfflineStore(self.archive.root, self.registry).events("customer").column("event_id").to_pylist())


@asynccontextmanager
async def _stores(redis_url: str, registry: Registry, root: Path) -> AsyncIterator[Stores]:
    namespace = f"s{next(_namespaces)}"
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield Stores(
            client,
            OnlineStore(client, registry, namespace=namespace),
            EventArchive(root, registry),
            EventPublisher(client, registry, namespace=namespace, max_len=10_000),
            namespace,
            registry,
        )
    finally:
        await client.aclose()


async def _drain(consumer: StreamConsumer, n: int) -> ConsumeStats:
    """Run ``consumer`` until it has handled ``n`` entries."""
    return await consumer.run(asyncio.Event(), max_entries=n)


def test_stream_events_are_applied_and_archived(
    redis_client: redis.Redis, redis_url: str, registry: Registry, tmp_path: Path
) -> None:
    async def run() -> None:
        async with _stores(redis_url, registry, tmp_path) as s:
            await s.publisher.publish([_login(f"a{i}", f"C{i % 3}") for i in range(30)])
            stats = await _drain(s.consumer(batch=7, block_ms=50), 30)
            assert (stats.entries, stats.applied, stats.duplicates, stats.dead) == (30, 30, 0, 0)
            assert [await s.feature(f"C{c}", "logins_7d") for c in range(3)] == [10.0, 10.0, 10.0]
            assert s.archived() == sorted(f"a{i}" for i in range(30))
            assert await s.client.xpending(stream_key(s.namespace), "nba-ingest") == {
                "pending": 0,
                "min": None,
                "max": None,
                "consumers": [],
            }

    asyncio.run(run())


def test_a_crash_before_the_ack_redelivers_and_counts_once(
    redis_client: redis.Redis, redis_url: str, registry: Registry, tmp_path: Path
) -> None:
    """A consumer that dies after applying but before archiving and acknowledging (its archive folder is a file,
    so the parquet write fails for real) leaves its batch pending; restarted, it applies nothing twice."""
    broken = tmp_path / "broken"
    broken.write_text("not a folder")

    async def run() -> None:
        async with _stores(redis_url, registry, broken) as s:
            await s.publisher.publish([_login(f"k{i}") for i in range(5)])
            with pytest.raises(OSError):  # noqa: PT011 - whichever OSError the filesystem gives
                await s.consumer(block_ms=50).poll()
            assert await s.feature("C1", "logins_7d") == 5.0  # applied online, then the process "died"
            pending = await s.client.xpending(stream_key(s.namespace), "nba-ingest")
            assert pending["pending"] == 5

            s.archive = EventArchive(tmp_path / "world", registry)  # the restart, with a working disk
            stats = await _drain(s.consumer(block_ms=50), 5)
            assert (stats.applied, stats.duplicates) == (0, 5)
            assert await s.feature("C1", "logins_7d") == 5.0
            assert s.archived() == [f"k{i}" for i in range(5)]
            assert (await s.client.xpending(stream_key(s.namespace), "nba-ingest"))["pending"] == 0

    asyncio.run(run())


def test_a_crash_after_archiving_leaves_the_event_archived_once(
    redis_client: redis.Redis, redis_url: str, registry: Registry, tmp_path: Path
) -> None:
    """Applied and archived, but the acknowledgement never landed: redelivered, archived again, read once."""

    async def run() -> None:
        async with _stores(redis_url, registry, tmp_path) as s:
            stream = stream_key(s.namespace)
            await s.publisher.publish([_login(f"r{i}") for i in range(4)])
            await s.consumer().join()
            reply = await s.client.xreadgroup("nba-ingest", "w1", {stream: ">"}, count=10)
            entries = [(i.decode(), fields) for i, fields in reply[0][1]]
            done = await s.without_ack("w1").process(entries)
            assert done.applied == 4
            assert (await s.client.xpending(stream, "nba-ingest"))["pending"] == 4

            restarted = await _drain(s.consumer("w1", block_ms=50), 4)
            assert (restarted.applied, restarted.duplicates) == (0, 4)
            assert await s.feature("C1", "logins_7d") == 4.0
            assert s.archived() == [f"r{i}" for i in range(4)]
            assert (await s.client.xpending(stream, "nba-ingest"))["pending"] == 0

    asyncio.run(run())


def test_a_dead_consumers_events_are_claimed_by_another(
    redis_client: redis.Redis, redis_url: str, registry: Registry, tmp_path: Path
) -> None:
    async def run() -> None:
        async with _stores(redis_url, registry, tmp_path) as s:
            await s.publisher.publish([_login(f"d{i}") for i in range(6)])
            await s.consumer().join()
            await s.client.xreadgroup("nba-ingest", "gone", {stream_key(s.namespace): ">"}, count=10)
            await asyncio.sleep(0.2)
            stats = await _drain(s.consumer("alive", claim_idle_ms=100, block_ms=50), 6)
            assert stats.applied == 6
            assert s.archived() == [f"d{i}" for i in range(6)]
            assert (await s.client.xpending(stream_key(s.namespace), "nba-ingest"))["pending"] == 0

    asyncio.run(run())


def test_invalid_entries_go_to_the_dead_letters_naming_the_field(
    redis_client: redis.Redis, redis_url: str, registry: Registry, tmp_path: Path
) -> None:
    async def run() -> None:
        async with _stores(redis_url, registry, tmp_path) as s:
            bad_score = json.dumps({"type": "sentiment", "event_id": "b1", "customer_id": "C1", "score": 3})
            ids = await s.publisher.publish([_login("g1"), bad_score, "{not json", _login("g2")])
            await s.client.xadd(stream_key(s.namespace), {"payload": "no event field"})
            stats = await _drain(s.consumer(block_ms=50), 5)
            assert (stats.entries, stats.applied, stats.dead) == (5, 2, 3)
            assert await s.feature("C1", "logins_7d") == 2.0
            assert s.archived() == ["g1", "g2"]
            dead = await s.client.xrange(dead_letter_key(s.namespace))
            letters = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in dead]
            assert letters[0] == {
                "event": bad_score,
                "error": "sentiment.score: Input should be less than or equal to 1",
                "entry_id": ids[1],
            }
            assert letters[1]["error"].startswith("event: Invalid JSON")
            assert letters[2]["error"].startswith("event: Field required")

    asyncio.run(run())


def test_an_event_without_a_time_happened_when_it_was_added(
    redis_client: redis.Redis, redis_url: str, registry: Registry, tmp_path: Path
) -> None:
    """Not when a late consumer got to it: the entry id's clock places it, the same on every redelivery."""

    async def run() -> None:
        async with _stores(redis_url, registry, tmp_path) as s:
            [entry_id] = await s.publisher.publish(
                [json.dumps({"type": "login", "event_id": "n1", "customer_id": "C1"})]
            )
            await asyncio.sleep(0.05)
            await _drain(s.consumer(block_ms=50), 1)
            table = OfflineStore(s.archive.root, registry).events("customer")
            added = int(entry_id.split("-")[0]) / 1000
            assert table.column("occurred_at")[0].as_py().timestamp() == pytest.approx(added, abs=1e-6)

    asyncio.run(run())


def test_the_stream_is_trimmed_only_behind_every_group(
    redis_client: redis.Redis, redis_url: str, registry: Registry, tmp_path: Path
) -> None:
    async def run() -> None:
        async with _stores(redis_url, registry, tmp_path) as s:
            stream = stream_key(s.namespace)
            await s.publisher.publish([_login(f"t{i}") for i in range(10)])
            consumer = s.consumer(block_ms=50)
            await _drain(consumer, 10)
            await s.client.xgroup_create(stream, "audit", id="0")  # a second group that has read nothing
            await consumer.trim()
            assert await s.client.xlen(stream) == 10
            await s.client.xgroup_destroy(stream, "audit")
            await consumer.trim()
            assert await s.client.xlen(stream) == 0

    asyncio.run(run())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sent=st.lists(
        st.tuples(st.integers(0, 15), st.sampled_from(["C1", "C2"]), st.floats(0, 20 * 24 * 60)),
        min_size=1,
        max_size=40,
    ),
    batch=st.integers(1, 12),
    crashed=st.integers(0, 40),
    archived=st.booleans(),
)
def test_whatever_is_resent_or_redelivered_online_and_offline_agree(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    registry: Registry,
    sent: list[tuple[int, str, float]],
    batch: int,
    crashed: int,
    archived: bool,
) -> None:
    """Events sent any number of times, a worker that applied some and died: the online event features equal
    the point-in-time join over the archive, and each distinct event counts once on both sides."""
    root = tmp_path_factory.mktemp("agree")
    schema = registry.entity("customer")
    customers = ["C1", "C2"]
    write_snapshots(root, registry, customers, at=time.time() - 86_400)
    # An event id names one event: a resend repeats it byte for byte, as a producer's retry would.
    first: dict[tuple[int, str], str] = {}
    for number, customer, minutes in sent:
        first.setdefault((number, customer), _login(f"e{number}", customer, minutes))
    payloads = [first[(n, c)] for n, c, _ in sent]

    async def run() -> tuple[np.ndarray, float]:
        async with _stores(redis_url, registry, root) as s:
            stream = stream_key(s.namespace)
            await s.publisher.publish(payloads)
            await s.consumer().join()
            if crashed:  # w1 read this many and died before acknowledging, after archiving them or before
                reply = await s.client.xreadgroup("nba-ingest", "w1", {stream: ">"}, count=crashed)
                entries = [(i.decode(), fields) for i, fields in reply[0][1]]
                if archived:
                    await s.without_ack("w1").process(entries)
                else:
                    await s.apply_only(entries)
            await _drain(s.consumer("w1", batch=batch, block_ms=20), len(payloads))
            now = time.time()
            online = np.vstack([(await s.store.read(c, now=now))[0].values for c in customers])
            return online, now

    online, now = asyncio.run(run())
    labels = pa.table(
        {
            "customer_id": pa.array(customers),
            "ts": pa.array([datetime.fromtimestamp(now, UTC)] * 2, pa.timestamp("us", "UTC")),
        }
    )
    offline = OfflineStore(root, registry)
    frame = offline.point_in_time("customer", labels)
    assert frame.column("customer_id").to_pylist() == customers
    cols = [schema.index[f.name] for f in schema.event_features]
    assert np.allclose(online[:, cols], offline.matrix("customer", frame)[:, cols], equal_nan=True, atol=1e-9)
    logins = schema.index["logins_30d"]
    assert online[:, logins].tolist() == [float(sum(1 for _, c in first if c == cust)) for cust in customers]


def test_an_erasure_deletes_the_entitys_entries_from_the_stream_and_the_dead_letters(
    redis_client: redis.Redis, redis_url: str, registry: Registry, tmp_path: Path
) -> None:
    """Unconsumed and pending events of an erased customer leave the stream (a producer's own spelling of the JSON
    too) and so never reach the archive; a neighbour whose id holds theirs keeps everything; the consumer
    acknowledges the deleted pending entries as nothing to do."""

    async def run() -> None:
        async with _stores(redis_url, registry, tmp_path) as s:
            stream, dead = stream_key(s.namespace), dead_letter_key(s.namespace)
            spaced = '{"type" : "login", "event_id" : "x3", "customer_id" : "C1"}'  # a producer's own XADD
            await s.publisher.publish([_login("x1", "C1"), _login("n1", "C11"), _login("x2", "C1")])
            await s.consumer().join()
            await s.client.xreadgroup("nba-ingest", "gone", {stream: ">"}, count=2)  # x1, n1 read, never acknowledged
            await s.publisher.publish([spaced, _login("n2", "C11"), _login("m1", "C2")])
            await s.client.xadd(dead, {"event": '{"customer_id": "C1", "score": 3', "error": "not JSON"})
            await s.client.xadd(dead, {"event": '{"customer_id": "C11", "score": 3', "error": "not JSON"})
            # Over a slice, so the walk goes on from where the last one stopped.
            await s.publisher.publish([_login(f"p{i}", "C2") for i in range(1_000)] + [_login("x4", "C1")])

            assert await s.store.erase("customer", "C1") is True
            left = [json.loads(f[b"event"])["event_id"] for _, f in await s.client.xrange(stream)]
            assert left[:3] == ["n1", "n2", "m1"]
            assert len(left) == 1_003
            assert "C1" not in {json.loads(f[b"event"])["customer_id"] for _, f in await s.client.xrange(stream)}
            assert [f[b"event"] for _, f in await s.client.xrange(dead)] == [b'{"customer_id": "C11", "score": 3']
            assert await s.store.erase("customer", "C1") is False  # nothing left to delete: safe to retry

            stats = await _drain(s.consumer("alive", claim_idle_ms=0, block_ms=50), 1_004)
            assert (stats.applied, stats.erased) == (1_003, 0)
            assert "x1" not in s.archived()
            assert {"n1", "n2", "m1"} <= set(s.archived())
            assert (await s.client.xpending(stream, "nba-ingest"))["pending"] == 0

    asyncio.run(run())
