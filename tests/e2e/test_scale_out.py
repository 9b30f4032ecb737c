"""``bench.scale_out``'s own path on a small run: two ``nba run`` processes on a 3-shard Redis Cluster.

What the other tests do not: ``tests/features/test_cluster.py`` serves one app in process on the cluster, and
``tests/e2e/test_stack.py`` runs two replicas on one plain Redis (and skips where no PostgreSQL answers). Here two
``nba run`` processes (``NBA_REDIS_CLUSTER=1``) share a cluster loaded by the demo's path, a decision made on one
takes its feedback on the other, and the bench's wrk load (one wrk, a thread per process) reaches both with no
error: the bench's code runs here, so it cannot rot unnoticed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from bench import served
from bench.decision_server import _check, _script, _workload
from bench.scale_out import _SPREAD, THREADS, Processes, Run, Store, _cluster, _feedback_across, _load, _table
from features import OfflineStore, Registry
from features.local_cluster import free_ports
from service.keys import Role
from tests.conftest import TEST_CUSTOMERS, own_world
from training.console import Reporter
from training.demo import ensure_materialized
from training.world.config import WORLD_STAMP

PAUSE_MS = 1_500
"""How long the cluster stops answering in the degraded test: past a read giving up, even on a busy machine."""


@dataclass(frozen=True)
class Replicas:
    """Two ``nba run`` processes on one cluster, the cluster, the bench's run."""

    processes: Processes
    store: Store
    run: Run


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, world: Path, data_dir: Path, champions: dict[str, str]
) -> Iterator[Replicas]:
    """The cluster holding the test world and both processes ready on it.

    The cluster is loaded first by the demo's own path (what the first ``nba run`` of the bench does), so the two
    processes can start together: each one's demo step finds the world, the store and the models there. They use
    the session's MLflow store (its champions and challengers: nothing is trained) and a data dir of their own over
    the session's world."""
    root = tmp_path_factory.mktemp("scale-out")
    data = root / "data"
    own_world(data, world)
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{(data_dir / 'mlflow.db').resolve()}",
        "NBA_MLFLOW_EXPERIMENT": "nba-tests",
        "NBA_DEMO_CUSTOMERS": str(TEST_CUSTOMERS),  # the session's world, reused, not simulated again
    }
    keys = served.make_keys(data, (Role.DESKTOP, Role.ROUTER, Role.METRICS))
    run = Run(data=data, root=root, keys=keys, work=_workload(data / "world"), seconds=1, env=env)
    stamp = json.loads((world / WORLD_STAMP).read_text())
    ports = free_ports(2)
    with _cluster(root) as store, ExitStack() as running:
        url = str(store.settings.url)
        registry = Registry.load()
        offline = OfflineStore(world, registry)
        asyncio.run(ensure_materialized(url, "nba", registry, offline, stamp, Reporter(), cluster=True))
        processes = [run.serve(port, store) for port in ports]
        for process in processes:
            running.callback(served.stop, process)
        for port, process in zip(ports, processes, strict=True):
            served.wait_ready(f"http://127.0.0.1:{port}", process)
        pids = (processes[0].pid, processes[1].pid)
        yield Replicas(Processes(ports, pids, tuple(map(run.log, ports)), keys[Role.METRICS]), store, run)


def test_both_processes_answer_from_the_cluster_and_share_feedback(replicas: Replicas) -> None:
    one, two = (f"http://127.0.0.1:{p}" for p in replicas.processes.ports)
    work = replicas.run.work
    for base in (one, two):
        _check(base, work.recommend[0], work.assign[0], replicas.run.keys)  # 200, ranked, not degraded
    # It exits (a failure here) unless two records the feedback, one calls it a duplicate and reads the count +1.
    assert "recorded once" in _feedback_across(one, two, replicas.run)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_the_bench_load_reaches_both_processes_without_an_error(replicas: Replicas) -> None:
    run, store = replicas.run, replicas.store
    spread = _SPREAD % (", ".join(str(p) for p in replicas.processes.ports), THREADS)
    script = _script(run.root / "t.lua", "/v1/recommend", run.work.recommend, run.keys[Role.DESKTOP], setup=spread)
    line = _load("2 processes, cluster recommend", replicas.processes, store, script, run.seconds)
    head, row = _table([line])
    assert head.split()[:3] == ["setup", "route", "req/s"]
    fields = row.split()
    assert fields[:4] == ["2", "processes,", "cluster", "recommend"]
    rps, ratio, errors, degraded = float(fields[4]), fields[5], int(fields[8]), int(fields[9])
    assert rps > 10
    assert ratio == "1.00x"  # the only row is its own baseline
    assert errors == 0
    assert degraded <= rps * run.seconds / 10, "a loaded machine may time a read out, not a tenth of them"
    shares = [int(s) for s in fields[13].split("/")]
    assert len(shares) == 2
    assert min(shares) >= 20, f"one wrk thread per process, so each does a fair part of the work: {line}"
    assert int(fields[12]) > 0, "the cluster's nodes did the reads"


def test_the_bench_counts_a_degraded_answer(replicas: Replicas) -> None:
    """The bench's ``degraded`` column is read from the processes' metrics: a paused cluster makes one."""
    before = replicas.processes.degraded()
    for port in replicas.store.node_ports:  # every shard stops answering for a while; a read gives up in ~0.5 s
        with redis.Redis(host="127.0.0.1", port=port) as node:
            node.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
    one = f"http://127.0.0.1:{replicas.processes.ports[0]}"
    headers = {"Authorization": f"Bearer {replicas.run.keys[Role.DESKTOP]}"}
    answer = httpx.post(f"{one}/v1/recommend", json=replicas.run.work.recommend[1], headers=headers, timeout=10)
    time.sleep(PAUSE_MS / 1000)
    assert answer.status_code == 200, answer.text
    assert answer.json()["degraded"] is True
    assert replicas.processes.degraded() == before + 1
