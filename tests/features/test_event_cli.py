"""``nba events publish`` and ``nba events consume`` as a user runs them: separate processes, the test Redis."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import redis

from features import OfflineStore, Registry
from features.event_archive import archived_parts

NBA = str(Path(sys.executable).parent / "nba")
_namespaces = itertools.count()


def _env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    namespace = f"cli{os.getpid()}x{next(_namespaces)}"
    return {**os.environ, "REDIS_URL": redis_url, "NBA_DATA_DIR": str(tmp_path), "NBA_REDIS_NAMESPACE": namespace}


def _line(event_id: str, **fields: object) -> str:
    at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    return json.dumps({"type": "login", "event_id": event_id, "customer_id": "C7", "occurred_at": at, **fields})


def test_publish_then_consume_applies_archives_and_says_so(
    redis_client: redis.Redis, redis_url: str, registry: Registry, tmp_path: Path
) -> None:
    env = _env(tmp_path, redis_url)
    events = tmp_path / "events.jsonl"
    bad = json.dumps({"type": "sentiment", "event_id": "s1", "customer_id": "C7", "score": -4})
    events.write_text("\n".join([_line("l1"), _line("l2"), "", bad, _line("l1")]) + "\n")

    published = subprocess.run([NBA, "events", "publish", str(events)], env=env, capture_output=True, text=True)
    assert published.returncode == 0, published.stderr
    assert published.stdout == f"published 4 events from events.jsonl to {env['NBA_REDIS_NAMESPACE']}:events\n"

    consumed = subprocess.run(
        [NBA, "events", "consume", "--max-events", "4", "--block-ms", "100", "--consumer", "cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert consumed.returncode == 0, consumed.stderr
    counts = "4 events: 2 applied, 1 duplicates, 0 too old, 0 of erased customers, 1 dead letters in "
    assert consumed.stdout.startswith(counts)
    assert f"consuming {env['NBA_REDIS_NAMESPACE']}:events as 'cli' in group 'nba-ingest'" in consumed.stderr
    world = tmp_path / "world"
    assert sum(pq.read_metadata(p).num_rows for p in archived_parts(world, "customer")) == 3  # l1 twice, l2
    assert sorted(OfflineStore(world, registry).events("customer").column("event_id").to_pylist()) == ["l1", "l2"]
    dead = redis_client.xrange(f"{env['NBA_REDIS_NAMESPACE']}:events:dead")
    assert dead[0][1][b"error"] == b"sentiment.score: Input should be greater than or equal to -1"


def test_consume_stops_on_sigterm_having_acknowledged_what_it_took(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, redis_url)
    stream = f"{env['NBA_REDIS_NAMESPACE']}:events"
    worker = subprocess.Popen(
        [NBA, "events", "consume", "--block-ms", "100"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        assert worker.stderr.readline().startswith(f"consuming {stream}")
        for i in range(25):
            redis_client.xadd(stream, {"event": _line(f"t{i}")})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            groups = redis_client.xinfo_groups(stream)
            if groups and groups[0]["entries-read"] == 25 and groups[0]["pending"] == 0:
                break
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0
    assert out.startswith("25 events: 25 applied, 0 duplicates, 0 too old, 0 of erased customers, 0 dead letters in ")
