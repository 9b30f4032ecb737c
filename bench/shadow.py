"""The shadow worker's throughput: logged decisions replayed with the challenger per second, on one process.

Serves the demo with ``nba run`` exactly as ``bench.decision_server`` does (it builds the world, the champions and
the challengers in a temporary ``NBA_DATA_DIR`` first), with exploration on both endpoints, and fills the decision
log with wrk: recommends over every demo customer in turn (each asked about once, with the contact-policy state
cleared first, so no contact policy has capped their offers and each decision has its full set of candidates to
replay), and assigns of a billing contact in English with all 100 agents as candidates. The server then sits idle
(its embedded Valkey holds the log), so the worker has the machine to itself, and one
:class:`~service.shadow.ShadowWorker` per endpoint replays the whole log with the challenger models, in this
process, batch by batch as ``nba shadow run`` does (results stored and entries acknowledged per batch).

The issue's goal: ≥ 2,000 decisions/s on one process. Assign with 100 candidates is the heavy kind (one
resolution-model call over 100 pairs and the ranking's reasons per decision); the line gives both.

    .venv/bin/python -m bench.shadow [--seconds 10] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio

from bench import served
from bench.decision_server import _script, _workload
from bench.feature_server import free_port, wrk
from features import OfflineSettings, RedisSettings, Registry, online_store_url
from features.decision_log_keys import KINDS, Kind, stream_key
from service.catalog import default_path
from service.keys import Role
from service.model_holder import ModelHolder
from service.shadow import ShadowCounts, ShadowWorker
from training import CHALLENGER, MlflowSettings, ModelRegistry

GOAL = 2_000.0
CONNECTIONS = 16


async def _replay(url: str, data: Path, kind: Kind) -> tuple[ShadowCounts, float]:
    registry = Registry.load()
    holder = ModelHolder(
        ModelRegistry(MlflowSettings(tracking_uri=None, experiment="nba", model_prefix="nba"), data),
        registry.version,
        alias=CHALLENGER,
    )
    holder.load()
    client = redis.asyncio.Redis.from_url(url)
    worker = ShadowWorker(
        client,
        kind=kind,
        namespace="nba",
        registry=registry,
        catalog_path=default_path(),
        challenger=holder,
        consumer="bench",
        results_max_len=10_000_000,
        block_ms=100,
    )
    total = ShadowCounts()
    try:
        start = time.perf_counter()
        while (counts := await worker.poll()).entries:
            total.add(counts)
        return total, time.perf_counter() - start
    finally:
        await client.aclose()


def main() -> None:
    """Fill the decision log through HTTP, stop the server, replay the log with the challenger; print the rates."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run that fills the log")
    parser.add_argument("--data-dir", type=Path, default=None, help="serve this NBA_DATA_DIR (built on first use)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    os.environ |= {"NBA_EXPLORE_RECOMMEND": "epsilon:0.2", "NBA_EXPLORE_ASSIGN": "epsilon:0.2"}
    with tempfile.TemporaryDirectory(prefix="nba-shadow-") as tmp:
        root = Path(tmp)
        data = args.data_dir or root / "data"
        data.mkdir(parents=True, exist_ok=True)
        keys = served.make_keys(data)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = served.start(data, port)
        try:
            served.wait_ready(base, server)
            work = _workload(data / "world")
            recommend = _script(root / "recommend.lua", "/v1/recommend", work.recommend, keys[Role.DESKTOP])
            assign = _script(root / "assign.lua", "/v1/assign", work.assign, keys[Role.ROUTER])
            served.clear_contact_state(data)
            for line in (
                wrk("fill recommend", f"{base}/", CONNECTIONS, args.seconds, script=recommend),
                wrk("fill assign-100", f"{base}/", CONNECTIONS, args.seconds, script=assign),
            ):
                print(line)
            # The server stays up, idle, for its embedded Valkey: the worker reads the log from it.
            with online_store_url(RedisSettings(), OfflineSettings(data_dir=data)) as url:
                rates = {}
                for kind in KINDS:
                    logged = asyncio.run(_length(url, kind))
                    counts, seconds = asyncio.run(_replay(url, data, kind))
                    rates[kind] = counts.entries / seconds
                    print(
                        f"shadow worker {kind}: {counts.entries:,} of {logged:,} logged decisions in {seconds:.2f} s, "
                        f"{rates[kind]:,.0f} decisions/s ({counts.scored:,} scored, {counts.skipped:,} skipped"
                        f"{''.join(f'; {n} {why}' for why, n in counts.why_skipped.items())}) "
                        f"load {os.getloadavg()[0]:.2f}"
                    )
        finally:
            served.stop(server)
    slowest = min(rates, key=lambda k: rates[k])
    met = "met" if rates[slowest] >= GOAL else "NOT met"
    print(
        f"shadow worker: {rates['recommend']:,.0f} recommend and {rates['assign']:,.0f} assign-100 decisions/s on one "
        f"process (goal >= {GOAL:,.0f}/s: {met})"
    )


async def _length(url: str, kind: Kind) -> int:
    client = redis.asyncio.Redis.from_url(url)
    try:
        return int(await client.xlen(stream_key("nba", kind)))
    finally:
        await client.aclose()


if __name__ == "__main__":
    main()
