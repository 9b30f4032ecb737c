"""``nba run`` as the benchmarks serve it: started in a process group of its own on a data dir, keys made for the
run, waited for, stopped; and the demo's customers and agents it serves.

``bench.decision_server``, ``bench.shadow``, ``bench.scale_out`` and ``bench.soak`` all load the real server this
way, so a figure from one is taken on the same server as the others'.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import redis
from redis.cluster import RedisCluster

from features import OfflineSettings, RedisSettings, online_store_url
from service.keys import KeyFile, Role


def make_keys(data_dir: Path, roles: Iterable[Role] = (Role.DESKTOP, Role.ROUTER)) -> dict[Role, str]:
    """A key per role in the keys file ``nba run`` will serve with (as ``nba keys create``), named after this run,
    so a kept ``--data-dir`` takes new ones each time (``nba keys revoke`` removes them)."""
    file = KeyFile(data_dir / "keys.json")
    run = f"{os.getpid()}-{time.time_ns()}"
    return {role: file.create(role, f"bench-{role.value}-{run}")[1] for role in roles}


def start(
    data_dir: Path, port: int, workers: int = 1, *, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``nba run`` on ``port`` with its own data dir (and so its own embedded Valkey and MLflow store); ``env``
    overrides (a ``REDIS_URL`` and ``NBA_REDIS_CLUSTER``: that Redis instead, the demo materialized into it if it
    does not hold it yet); ``log``: a file for what it writes to stderr (its progress and log), else this one's.

    Each key's rate limit is set past what a run reaches: the bucket is still checked on every request."""
    environment = {
        **os.environ,
        "NBA_DATA_DIR": str(data_dir),
        "NBA_PORT": str(port),
        "NBA_LOG_LEVEL": "warning",
        "NBA_KEYS_FILE": str(data_dir / "keys.json"),
        "NBA_RATE_LIMIT": "1000000000",
        "NBA_WORKERS": str(workers),
    }
    for name in ("REDIS_URL", "NBA_REDIS_CLUSTER", "MLFLOW_TRACKING_URI"):
        environment.pop(name, None)
    environment |= env or {}
    nba = Path(sys.executable).with_name("nba")
    with open(log, "ab") if log else contextlib.nullcontext() as err:  # the child keeps its own copy of the file
        return subprocess.Popen(
            [str(nba), "run"], env=environment, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err
        )


def answering(base: str, process: subprocess.Popen[bytes], *, path: str, timeout_s: float, poll_s: float) -> str | None:
    """None once ``GET {base}{path}`` answers 200; else why not: the process exited, or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"nba run exited with {process.returncode} before {path} answered"
        try:
            if httpx.get(f"{base}{path}", timeout=2).status_code == 200:
                return None
        except httpx.TransportError:
            pass
        time.sleep(poll_s)
    return f"nba run's {path} did not answer within {timeout_s:.0f} s"


def wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    """Until ``/ready`` says the models are loaded (the demo is built on the first start: minutes)."""
    if (why := answering(base, server, path="/ready", timeout_s=1_800, poll_s=1)) is not None:
        sys.exit(why)


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (its workers and embedded Valkey), and wait for it."""
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=120)


def clear_contact_state(data_dir: Path, settings: RedisSettings | None = None) -> None:
    """Forget every customer's presentations, declines and acceptances in the served store: ``data_dir``'s embedded
    Valkey, or the Redis (or Redis Cluster) ``settings`` name. A customer asked two or three times within days has
    their offers capped by the catalog's contact policies, and a recommend with no offer to explain costs less than
    the first recommend of a call."""
    settings = settings or RedisSettings()
    with online_store_url(settings, OfflineSettings(data_dir=data_dir)) as url:
        client = (RedisCluster if settings.cluster else redis.Redis).from_url(url)
        try:
            keys = list(client.scan_iter(f"{settings.namespace}:contacts:customer:*", count=10_000))
            for at in range(0, len(keys), 10_000):
                client.delete(*keys[at : at + 10_000])
        finally:
            client.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def world_ids(world: Path) -> tuple[list[str], list[str]]:
    """The world's customer ids and agent ids, each sorted."""
    customers = sorted(set(pq.read_table(world / "customer_snapshots.parquet").column("customer_id").to_pylist()))
    agents = sorted(set(pq.read_table(world / "agent_snapshots.parquet").column("agent_id").to_pylist()))
    return customers, agents
