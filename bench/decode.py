"""The online store's decode in process: the C decode against the numpy decode, on the demo's stored values.

Reads what a recommend and an assign read for the demo's first 2,000 customers (packed snapshot and event state)
and its 100 agents (packed snapshots) from a demo data dir's online store (``nba demo`` builds one; its embedded
Valkey is started on it, or the one ``nba run`` serves from it is shared), then measures this process's CPU
(``time.process_time``) per decode, the two decodes alternating round by round, the least of the rounds kept:

- one customer (a recommend's read), each call the next customer; and again, in wall time, with 4 MB written
  before each decode, so it runs with the cold caches it meets in a server;
- one customer and the 100 agents (an assign's read with every agent a candidate);
- batches of N agents and of N customers, repeated from the demo's values: where the numpy decode, whose cost
  hardly grows with N, would catch up with the C decode, whose cost is per entity.

    .venv/bin/python -m bench.decode --data-dir DIR [--rounds 7]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow.parquet as pq
import redis

from features import EntityBatch, OnlineStore, Registry, fast_decode, online_store_url
from features.online_store import _Kind
from features.settings import OfflineSettings, RedisSettings

CUSTOMERS = 2_000
COLD = 300
"""Customers of the cold-cache measure (each decode follows a 4 MB write)."""
FLUSH_BYTES = 4 << 20
BATCHES = (10, 100, 1_000, 10_000)

Decode = Callable[..., EntityBatch]
Blob = bytes | None
Call = Callable[[], int]


def _cpu_us(calls: Sequence[Call], rounds: int) -> list[float]:
    """CPU per decode of each of ``calls`` (each runs a pass and says how many decodes it made), alternating them in
    every round: the least over the rounds, in microseconds."""
    best = [math.inf] * len(calls)
    for _ in range(rounds):
        for i, call in enumerate(calls):
            start = time.process_time()
            n = call()
            best[i] = min(best[i], (time.process_time() - start) / n)
    return [b * 1e6 for b in best]


def _cold_us(decodes: Sequence[Decode], rows: Sequence[tuple[str, Blob, Blob]], now: float, rounds: int) -> list[float]:
    """Wall time per decode of one customer with 4 MB written before each (L1 and L2 hold none of the decode's code
    and data then, as in a server where each request runs much other code in between): the least mean of the
    rounds, the decodes alternating, in microseconds."""
    flush = np.zeros(FLUSH_BYTES // 8)
    best = [math.inf] * len(decodes)
    for _ in range(rounds):
        for i, decode in enumerate(decodes):
            total = 0.0
            for c, blob, state in rows:
                flush += 1.0
                start = time.perf_counter()
                decode([c], [blob], [state], now)
                total += time.perf_counter() - start
            best[i] = min(best[i], total / len(rows))
    return [b * 1e6 for b in best]


def main() -> None:
    """Read the demo's values, time both decodes, print CPU per decode and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a data dir nba demo built")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of each measure; the least is kept")
    args = parser.parse_args()
    if not fast_decode.AVAILABLE:
        raise SystemExit("the C decode (features/_decode.c) was not built on this machine")
    offline = OfflineSettings(data_dir=args.data_dir)
    world = offline.world_dir
    customers = sorted(set(pq.read_table(world / "customer_snapshots.parquet").column("customer_id").to_pylist()))
    customers = customers[:CUSTOMERS]
    agents = sorted(set(pq.read_table(world / "agent_snapshots.parquet").column("agent_id").to_pylist()))
    registry = Registry.load()
    with online_store_url(RedisSettings(), offline) as url:
        client = redis.Redis.from_url(url)
        store = OnlineStore(client, registry)  # type: ignore[arg-type]  # for its key names only
        packed = client.mget([store.key("customer", c) for c in customers])
        states = client.mget([store.state_key("customer", c) for c in customers])
        agent_blobs = client.mget([store.key("agent", a) for a in agents])
        client.close()
    if sum(b is not None for b in packed) < len(customers) // 2 or None in agent_blobs:
        raise SystemExit(f"{args.data_dir} holds no materialized demo: run nba demo first")
    customer, agent = _Kind(registry.entity("customer")), _Kind(registry.entity("agent"))
    now = time.time()
    rows = list(zip(customers, cast(list[Blob], packed), cast(list[Blob], states), strict=True))
    agent_values = cast(list[Blob], agent_blobs)

    def one(decode: Decode) -> Callable[[], int]:
        def run() -> int:
            for c, blob, state in rows:
                decode([c], [blob], [state], now)
            return len(rows)

        return run

    def with_agents(decode: Decode, agent_decode: Decode) -> Callable[[], int]:
        def run() -> int:
            for c, blob, state in rows[:500]:
                decode([c], [blob], [state], now)
                agent_decode(agents, agent_values, None, now)
            return 500

        return run

    fast, numpy = _cpu_us([one(customer.decode), one(customer.decode_numpy)], args.rounds)
    print(f"decode 1 customer: C {fast:.1f} us, numpy {numpy:.1f} us ({numpy / fast:.1f}x)")
    fast, numpy = _cold_us([customer.decode, customer.decode_numpy], rows[:COLD], now, args.rounds)
    print(
        f"decode 1 customer, the caches below L3 flushed before each (wall time): C {fast:.1f} us, "
        f"numpy {numpy:.1f} us ({numpy / fast:.1f}x)"
    )
    fast, numpy = _cpu_us(
        [with_agents(customer.decode, agent.decode), with_agents(customer.decode_numpy, agent.decode_numpy)],
        args.rounds,
    )
    print(f"decode 1 customer + {len(agents)} agents: C {fast:.1f} us, numpy {numpy:.1f} us ({numpy / fast:.1f}x)")
    for n in BATCHES:
        many = [rows[i % len(rows)] for i in range(n)]
        agent_batch = ([agents[i % len(agents)] for i in range(n)], [agent_values[i % len(agents)] for i in range(n)])
        customer_batch = ([r[0] for r in many], [r[1] for r in many])
        states_of = [r[2] for r in many]
        a_fast, a_numpy, c_fast, c_numpy = _cpu_us(
            [
                _batch(agent.decode, *agent_batch, None, now),
                _batch(agent.decode_numpy, *agent_batch, None, now),
                _batch(customer.decode, *customer_batch, states_of, now),
                _batch(customer.decode_numpy, *customer_batch, states_of, now),
            ],
            max(3, args.rounds // 2),
        )
        print(
            f"decode {n:,} agents: C {a_fast:.0f} us, numpy {a_numpy:.0f} us ({a_numpy / a_fast:.2f}x); "
            f"{n:,} customers: C {c_fast:.0f} us, numpy {c_numpy:.0f} us ({c_numpy / c_fast:.2f}x)"
        )


def _batch(decode: Decode, ids: list[str], blobs: list[Blob], states: list[Blob] | None, now: float) -> Call:
    """One decode of the batch, repeated to about 2,000 entities a call of the returned function."""
    repeat = max(1, 2_000 // len(ids))

    def run() -> int:
        for _ in range(repeat):
            decode(ids, blobs, states, now)
        return repeat

    return run


if __name__ == "__main__":
    main()
