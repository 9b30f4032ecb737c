"""The online store in-process, against an embedded Valkey holding the demo world.

Each figure is printed beside a baseline measured in the same process, on the same server, in the same
run, because these machines are noisy: a PING round trip for reads, a pipelined HINCRBYFLOAT of the same
fields for event ingestion, the first encoding (a hash per entity, one field per feature as text, read
with one HMGET per entity in a pipeline) for the packed encoding's reads and writes, and the packed
snapshots of the same 100,000 customers for the materialization of their event state.

Wall clock swings 2-3x on a loaded machine, so reads, ingestion and event-state materialization also print CPU,
which other processes
disturb far less: this process's (``time.process_time``, the least per call over several rounds) and the
server's, both its own CPU (``INFO cpu``, user + system, before and after) and its per-command time
(``INFO commandstats`` after ``CONFIG RESETSTAT``), each beside the same measure of a PING (reads) or of the
pipelined HINCRBYFLOAT (ingestion).

    .venv/bin/python -m bench.online_store
"""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features import (
    EmbeddedValkey,
    Event,
    OfflineStore,
    OnlineClient,
    OnlineStore,
    Registry,
    connect,
    materialize,
    materialize_events,
    resp,
)
from training.world import WorldConfig, simulate

READS = 3_000
_PING = resp.command(b"PING", [])
EVENTS = 100_000
BATCH = 1_000
CPU_ROUNDS = 5
"""Rounds of READS calls per CPU figure; the least is kept (another process can only add to it)."""


def _pct(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)) * 1e3, float(np.percentile(samples, 99)) * 1e3


async def _client_cpu_us(call: Callable[[], Awaitable[object]], n: int = READS) -> float:
    """This process's CPU per ``call`` in microseconds: the least over :data:`CPU_ROUNDS` rounds of ``n``."""
    best = math.inf
    for _ in range(CPU_ROUNDS):
        start = time.process_time()
        for _ in range(n):
            await call()
        best = min(best, (time.process_time() - start) / n)
    return best * 1e6


async def _server_cpu_s(client: OnlineClient) -> float:
    """The server's CPU so far (user + system seconds, from its own rusage)."""
    cpu = await client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _server_us(
    client: OnlineClient, call: Callable[[], Awaitable[object]], n: int, commands: tuple[str, ...], per: int = 1
) -> tuple[float, float]:
    """(server CPU, time inside ``commands`` as INFO commandstats counts it) per unit, in microseconds, over ``n``
    calls of ``per`` units each. Only the commands a client sent: a script's own calls are inside its time."""
    await client.config_resetstat()
    before = await _server_cpu_s(client)
    for _ in range(n):
        await call()
    cpu = (await _server_cpu_s(client) - before) / (n * per) * 1e6
    stats = await client.info("commandstats")
    inside = sum(stats[f"cmdstat_{c}"]["usec"] for c in commands if f"cmdstat_{c}" in stats) / (n * per)
    return cpu, inside


async def _run(url: str, world: Path) -> None:
    registry = Registry.load()
    offline = OfflineStore(world, registry)
    client = connect(url, timeout_s=30)
    store = OnlineStore(client, registry)
    try:
        start = time.perf_counter()
        written = await materialize(offline, store, "customer")
        snap_s = time.perf_counter() - start
        start = time.perf_counter()
        with_events = await materialize_events(offline, store, "customer")
        events_s = time.perf_counter() - start
        await materialize(offline, store, "agent")
        print(f"materialize snapshots: {written / snap_s:,.0f} entities/s ({written:,} in {snap_s:.2f} s)")
        print(
            f"materialize event state: {with_events / events_s:,.0f} entities/s ({with_events:,} in {events_s:.2f} s)"
        )

        customers = offline.latest("customer").column("customer_id").to_pylist()
        agents = offline.latest("agent").column("agent_id").to_pylist()[:100]
        rng = random.Random(7)
        pipeline = resp.Pipeline.of(client)  # type: ignore[arg-type]
        pings, bare, reads = [], [], []
        for _ in range(READS):
            t = time.perf_counter()
            await client.ping()
            pings.append(time.perf_counter() - t)
            t = time.perf_counter()
            await pipeline.exchange(_PING, 1)
            bare.append(time.perf_counter() - t)
            cid = rng.choice(customers)
            t = time.perf_counter()
            await store.read(cid, agents)
            reads.append(time.perf_counter() - t)
        await pipeline.aclose()
        hashes = await _hash_encoding(client, store, agents)
        (ping50, _), (bare50, _), (read50, read99) = _pct(pings), _pct(bare), _pct(reads)
        print(
            f"read 1 customer + 100 agents: p50 {read50:.3f} ms p99 {read99:.3f} ms  "
            f"(PING p50: redis-py {ping50:.3f} ms, ratio {read50 / ping50:.1f}x; on the read's own connection "
            f"{bare50:.3f} ms, ratio {read50 / bare50:.1f}x)"
        )
        reads.clear()
        for _ in range(READS):
            t = time.perf_counter()
            await store.read(rng.choice(customers))
            reads.append(time.perf_counter() - t)
        r50, r99 = _pct(reads)
        print(f"read 1 customer: p50 {r50:.3f} ms p99 {r99:.3f} ms  (ratio to PING {r50 / ping50:.1f}x)")
        await _read_cpu(client, store, customers, agents)
        h50, _ = _pct(hashes)
        print(
            f"100 agents, first encoding (HMGET per hash + text parsing): p50 {h50:.3f} ms; "
            f"packed 1 customer + 100 agents is {h50 / read50:.1f}x faster"
        )
        snapshots_per_s = await _materialize_at_scale(client, store, registry)
        await _materialize_events_at_scale(client, store, registry, world.parent / "scale", snapshots_per_s)
        layout = store.layout("customer")
        pipe = client.pipeline(transaction=False)
        for i in range(0, 100_000, 100):
            pipe.strlen(store.state_key("customer", f"S{i:07d}"))
        sizes = [n for n in await pipe.execute() if n]
        print(
            f"event state per customer: {sum(sizes) / len(sizes):,.0f} bytes on average (1,000 of the 100,000): "
            f"a fixed {layout.ids_at:,} ({len(layout.rings)} ring headers, {len(layout.groups)} last groups), "
            f"{layout.id_slots} event ids of the width of the longest, then 16 per day with events of a windowed series"
        )

        now = time.time()
        events = [
            Event(f"b{i}", rng.choice(customers), "sentiment", now - rng.uniform(0, 30 * 86_400), {"score": 0.1})
            for i in range(EVENTS)
        ]
        batches = iter(range(0, EVENTS, BATCH))

        async def apply() -> None:
            i = next(batches)
            await store.apply_events("customer", events[i : i + BATCH], now=now)

        async def increment() -> None:
            i = next(batches)
            pipe = client.pipeline(transaction=False)
            for e in events[i : i + BATCH]:
                pipe.hincrbyfloat(f"bench:{{{e.entity_id}}}", "x", 1)
            await pipe.execute()

        figures = []
        for call, commands in ((apply, ("evalsha",)), (increment, ("hincrbyfloat",))):
            batches = iter(range(0, EVENTS, BATCH))
            start, cpu_start = time.perf_counter(), time.process_time()
            server, inside = await _server_us(client, call, EVENTS // BATCH, commands, BATCH)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            figures.append((seconds, cpu / EVENTS * 1e6, server, inside))
        (ingest_s, ingest_cpu, ingest_server, ingest_inside), (base_s, base_cpu, base_server, base_inside) = figures
        print(
            f"ingest events (batches of {BATCH}): {EVENTS / ingest_s:,.0f} events/s  "
            f"(pipelined HINCRBYFLOAT baseline {EVENTS / base_s:,.0f}/s; ratio {base_s / ingest_s:.2f})"
        )
        print(
            f"ingest CPU per event: client {ingest_cpu:.1f} us, server {ingest_server:.1f} us "
            f"(in commands {ingest_inside:.1f} us)  (HINCRBYFLOAT: client {base_cpu:.1f} us, server "
            f"{base_server:.1f} us, in commands {base_inside:.1f} us; server ratio {ingest_server / base_server:.1f}x)"
        )
    finally:
        await client.aclose()


async def _read_cpu(client: OnlineClient, store: OnlineStore, customers: list[str], agents: list[str]) -> None:
    """CPU per read, ours and the server's, beside a PING's in the same run."""
    rng = random.Random(11)

    async def ping() -> None:
        await client.ping()

    async def read_one() -> None:
        await store.read(rng.choice(customers))

    async def read_all() -> None:
        await store.read(rng.choice(customers), agents)

    ping_cpu = await _client_cpu_us(ping)
    ping_server, ping_inside = await _server_us(client, ping, READS, ("ping",))
    for label, call in (("1 customer + 100 agents", read_all), ("1 customer", read_one)):
        cpu = await _client_cpu_us(call)
        server, inside = await _server_us(client, call, READS, ("get", "getrange", "mget"))
        print(
            f"read {label}, CPU per read: client {cpu:.0f} us, server {server:.0f} us (in commands {inside:.1f} us)  "
            f"(PING: client {ping_cpu:.0f} us, server {ping_server:.0f} us, in commands {ping_inside:.1f} us; "
            f"client {cpu - ping_cpu:.0f} us above a PING)"
        )


async def _hash_encoding(client: OnlineClient, store: OnlineStore, agents: list[str]) -> list[float]:
    """Read times of the same 100 agents kept as the first encoding kept them: a hash of text per agent."""
    schema = store.packed("agent")
    _, batch = await store.read("C0", agents)
    names = [f.name for f in schema.features]
    pipe = client.pipeline(transaction=False)
    for agent_id, row in zip(agents, batch.values.tolist(), strict=True):
        pipe.hset(f"bench:agent:{{{agent_id}}}", mapping={n: repr(v) for n, v in zip(names, row, strict=False)})
    await pipe.execute()
    samples = []
    for _ in range(READS):
        t = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for agent_id in agents:
            pipe.hmget(f"bench:agent:{{{agent_id}}}", names)
        replies = await pipe.execute()
        np.array([[float(v) if v is not None else np.nan for v in reply] for reply in replies])
        samples.append(time.perf_counter() - t)
    return samples


async def _materialize_at_scale(client: OnlineClient, store: OnlineStore, registry: Registry) -> float:
    """Snapshot materialization of 100,000 customers, packed (MSET) against the first encoding (HSET each)."""
    schema = registry.entity("customer")
    rng = np.random.default_rng(7)
    n = 100_000
    columns: dict[str, object] = {schema.join_key: [f"M{i:07d}" for i in range(n)]}
    for feature in schema.snapshot_features:
        if feature.dtype == "category":
            columns[feature.name] = pa.array(rng.choice(list(feature.categories or ()), n))
        elif feature.dtype == "bool":
            columns[feature.name] = rng.random(n) < 0.5
        else:
            columns[feature.name] = rng.random(n) * 100
    table = pa.table(columns)
    stamps = np.full(n, time.time())
    start = time.perf_counter()
    await store.write_table("customer", table, stamps)
    packed_s = time.perf_counter() - start
    rows = table.slice(0, 20_000).to_pylist()
    start = time.perf_counter()
    for i in range(0, len(rows), 2_000):
        pipe = client.pipeline(transaction=False)
        for row in rows[i : i + 2_000]:
            pipe.hset(f"bench:customer:{{{row[schema.join_key]}}}", mapping={k: str(v) for k, v in row.items()})
        await pipe.execute()
    hash_s = (time.perf_counter() - start) * n / len(rows)
    print(
        f"materialize 100,000 customer snapshots: {n / packed_s:,.0f} entities/s packed "
        f"(first encoding, HSET per entity: {n / hash_s:,.0f}/s; ratio {hash_s / packed_s:.1f}x)"
    )
    return n / packed_s


async def _materialize_events_at_scale(
    client: OnlineClient, store: OnlineStore, registry: Registry, root: Path, snapshots: float
) -> None:
    """Event state of 100,000 customers from 2,000,000 events of every declared type over the horizon, aggregated
    by numpy and written packed: against the packed snapshots of as many customers in the same run. Each run also
    prints this process's CPU (all its threads: the parquet reader's too) and the server's."""
    n, per = 100_000, 20
    rng = np.random.default_rng(11)
    now = time.time()
    types = [t for t, e in registry.events.items() if e.entity == "customer"]
    kinds = rng.choice(types, n * per)
    horizon = registry.entity("customer").event_horizon_days * 86_400
    columns: dict[str, object] = {
        "event_id": pa.array([f"s{i}" for i in range(n * per)]),
        "customer_id": pa.array([f"S{i:07d}" for i in rng.integers(0, n, n * per)]),
        "occurred_at": pa.array(((now - rng.uniform(0, horizon, n * per)) * 1e6).astype(np.int64)).cast(
            pa.timestamp("us", "UTC")
        ),
        "type": pa.array(kinds),
    }
    for name, dtype in registry.event_columns("customer").items():
        spec = next(e.fields[name] for e in registry.events.values() if name in e.fields)
        if dtype == "bool":
            columns[name] = pa.array(rng.random(n * per) < 0.5)
        elif dtype in ("category", "str"):
            columns[name] = pa.array(rng.choice(list(spec.categories or ("a", "b")), n * per))
        elif dtype == "int":
            columns[name] = pa.array(rng.integers(int(spec.min or 0), int(spec.max or 10) + 1, n * per))
        else:
            columns[name] = pa.array(rng.uniform(spec.min or 0, spec.max or 100, n * per).round(2))
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), root / "customer_events.parquet")
    # Twice: into a server that holds none of these keys (a first deployment: Redis allocates as it goes), then
    # again over the same keys (the nightly rerun, the usual case).
    for when in ("first, into an empty store", "again, over the same keys"):
        server = await _server_cpu_s(client)
        start, cpu = time.perf_counter(), time.process_time()
        written = await materialize_events(OfflineStore(root, registry), store, "customer", now=now)
        events_s, cpu = time.perf_counter() - start, time.process_time() - cpu
        server = await _server_cpu_s(client) - server
        print(
            f"materialize event state of {written:,} customers ({n * per:,} events), {when}: "
            f"{written / events_s:,.0f} entities/s (packed snapshots of as many: {snapshots:,.0f}/s; "
            f"ratio {written / events_s / snapshots:.2f}); CPU: client {cpu:.2f} s, server {server:.2f} s"
        )


def main() -> None:
    """Build the demo world in a temporary folder, start a private Valkey, measure."""
    with tempfile.TemporaryDirectory(prefix="nba-bench-") as tmp:
        world = Path(tmp) / "world"
        simulate(WorldConfig(customers=5_000, agents=100, months=6, seed=7, end=datetime.now(UTC).date()), world)
        with EmbeddedValkey(Path(tmp) / "valkey", persist=False) as server:
            asyncio.run(_run(server.url, world))


if __name__ == "__main__":
    main()
