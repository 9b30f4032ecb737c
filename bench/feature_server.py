"""The feature read over HTTP, side by side with Feast's feature server doing the same read, in one run.

Both serve one customer's 40 float features of one view from Redis, one worker each, loaded by wrk at 1 and
16 connections for the same number of seconds:

- ours: ``GET /v1/customers/{id}/features?view=bench_state`` from ``nba``'s own app served as ``nba run``
  serves it (uvicorn with httptools and uvloop, one worker; no access log; a desktop API key on every request,
  checked and rate-limited as in production, with a rate no run reaches), on a private embedded Valkey
  holding 10,000 customers. The served contract is the packaged one plus a view ``bench_state`` of 40 floats shaped
  like the peer's (``bench/feature_server.py`` adds it, nothing ships it);
- hello: a one-route Litestar app returning ``{"hello": "world"}`` on the same server, at 16 connections:
  what the server and the framework cost alone, so the reader sees how much of ours is our own work;
- with ``--granian``, ours again on granian (Rust HTTP, ASGI, uvloop, one worker): the alternative server we
  measured, kept comparable (in our runs it did not beat uvicorn on this read, so ``nba run`` stays on uvicorn);
- the peer: ``../shared/bench/feast_peer.sh`` (Feast tuned for its best showing, on its own private Redis).

    .venv/bin/python -m bench.feature_server [--seconds 10] [--no-peer] [--granian]

Prints one line per run and the ratio of requests per second at 16 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import uvicorn
import yaml
from litestar import Litestar, get

from bench.served import cpu_seconds
from features import EmbeddedValkey, EventStreamSettings, OfflineSettings, OnlineStore, RedisSettings, Registry, connect
from service import ServiceSettings, Settings, create_app
from service.auth import ApiKeyGate
from service.fast_decisions import FastDecisions
from service.keys import KeyFile, Role
from service.metrics import RequestTimer
from service.settings import AuthSettings
from training import MlflowSettings

CUSTOMERS = 10_000
WIDTH = 40
VIEW = "bench_state"
PEER = Path(__file__).resolve().parents[2] / "shared" / "bench" / "feast_peer.sh"
_RUN = re.compile(r"(\S+) c(\d+): ([\d.]+) rps p50 ([\d.]+) ms p99 ([\d.]+) ms non2xx (\d+)")


def write_contract(path: Path) -> None:
    """The packaged contract plus a view of 40 floats, the shape of the peer's ``customer_state``."""
    data = yaml.safe_load(resources.files("features").joinpath("registry.yaml").read_text(encoding="utf-8"))
    data["views"].append(
        {
            "name": VIEW,
            "entity": "customer",
            "ttl_days": 7,
            "owner": "bench",
            "description": "Forty floats, shaped like the Feast peer's view.",
            "features": [
                {"name": f"f{i}", "dtype": "float", "description": f"bench value {i}", "reason": "{value:.2f}"}
                for i in range(WIDTH)
            ],
        }
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


async def _fill(url: str, registry: Registry) -> None:
    """10,000 customers with random floats observed 1 minute to 1 day ago, as the peer's materialization."""
    rng = np.random.default_rng(0)
    columns: dict[str, object] = {"customer_id": [f"C{i:06d}" for i in range(CUSTOMERS)]}
    columns.update({f"f{i}": rng.random(CUSTOMERS, dtype=np.float32).astype(np.float64) for i in range(WIDTH)})
    observed = time.time() - rng.integers(60, 86_400, CUSTOMERS)
    client = connect(url, timeout_s=30)
    try:
        await OnlineStore(client, registry).write_table("customer", pa.table(columns), observed.astype(np.float64))
    finally:
        await client.aclose()


def _ours(contract: Path, redis_url: str, data_dir: Path) -> RequestTimer[ApiKeyGate[FastDecisions]]:
    """Our API on the bench contract, as ``nba run`` builds it, with the keys file :func:`_key` writes."""
    settings = Settings(
        service=ServiceSettings(log_level="warning"),
        auth=AuthSettings(keys_file=data_dir / "keys.json", rate_limit=1e9),
        redis=RedisSettings(url=redis_url),
        offline=OfflineSettings(data_dir=data_dir),
        mlflow=MlflowSettings(),
        events=EventStreamSettings(),
    )
    return create_app(settings, Registry.load(contract))


@get("/hello")
async def _hello() -> dict[str, str]:
    return {"hello": "world"}


def _hello_app() -> Litestar:
    """The least a Litestar app can do per request: the server's and the framework's own cost."""
    return Litestar([_hello])


def serve(server: str, app: str, contract: Path, redis_url: str, data_dir: Path, port: int) -> None:
    """``app`` (nba or hello) on ``server`` (uvicorn as shipped, or granian), one worker, no access log."""
    build = (lambda: _ours(contract, redis_url, data_dir)) if app == "nba" else _hello_app
    if server == "uvicorn":
        uvicorn.run(build(), host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return
    from granian.constants import Interfaces, Loops  # a dev dependency, for this comparison only
    from granian.server import Server

    Server("bench", address="127.0.0.1", port=port, interface=Interfaces.ASGI, workers=1, loop=Loops.uvloop).serve(
        target_loader=build, wrap_loader=False
    )


def _key(data_dir: Path) -> str:
    """A desktop key in ``data_dir``'s keys file, which :func:`_ours` serves with."""
    return KeyFile(data_dir / "keys.json").create(Role.DESKTOP, "bench")[1]


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wrk(
    name: str,
    url: str,
    connections: int,
    seconds: int,
    server_pid: int | tuple[int, ...] | None = None,
    *,
    script: Path | None = None,
    headers: tuple[str, ...] = (),
    threads: int = 1,
) -> str:
    """wrk's figures as one line; with ``server_pid``, also the server's CPU time per request (summed over the
    processes when it is several), which a busy machine stretches far less than it stretches requests per second.
    ``script``: a wrk Lua script that makes the requests (a POST body, a rotation of ids); ``headers``:
    ``Name: value`` lines sent with each request; ``threads``: wrk's threads, the connections split among them.
    Connections that failed (connect, read, write, timeout) are counted at the end of the line when there are any."""
    pids = (server_pid,) if isinstance(server_pid, int) else server_pid or ()
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    extra = [*(["-s", str(script)] if script else []), *(a for h in headers for a in ("-H", h))]
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    used = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    cpu = f" server cpu {used / requests * 1e6:.0f} us/req" if pids else ""
    failed = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    lost = f" socket errors {sum(int(n) for n in failed.groups())}" if failed else ""
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out).groups()  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out).groups()  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return (
        f"{name} c{connections}: {rps:.0f} rps p50 {float(p50[0]) * scale[p50[1]]:.2f} ms "
        f"p99 {float(p99[0]) * scale[p99[1]]:.2f} ms non2xx {int(bad.group(1)) if bad else 0}{cpu}{lost}"
    )


def _measure(
    server: str, app: str, env: tuple[Path, str, str, str], seconds: int, connections: tuple[int, ...]
) -> list[str]:
    """Start ``app`` on ``server`` in a child process, check its answer, warm it up, then load it with wrk."""
    contract, redis_url, tmp, key = env
    headers = (f"Authorization: Bearer {key}",) if app == "nba" else ()
    port = free_port()
    command = [sys.executable, "-m", "bench.feature_server", "--serve", server, app, str(contract), redis_url, tmp]
    process = subprocess.Popen([*command, str(port)], env=os.environ.copy(), start_new_session=True)
    try:
        path = f"/v1/customers/C001234/features?view={VIEW}" if app == "nba" else "/hello"
        url = f"http://127.0.0.1:{port}{path}"
        for _ in range(600):
            try:
                answer = httpx.get(url, timeout=1, headers=dict(h.split(": ", 1) for h in headers))
                break
            except httpx.TransportError:
                time.sleep(0.1)
        if app == "nba":
            values = [f["value"] for f in answer.json()["features"]]
            assert len(values) == WIDTH, answer.text[:200]
            assert all(isinstance(v, float) for v in values), answer.text[:200]
        wrk(app, url, 4, 3, headers=headers)  # warm up
        name = app if server == "uvicorn" else f"{app}-{server}"
        return [wrk(name, url, c, seconds, process.pid, headers=headers) for c in connections]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def _ours_and_baselines(seconds: int, granian: bool) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="nba-fs-") as tmp:
        root = Path(tmp)
        contract = root / "contract.yaml"
        write_contract(contract)
        with EmbeddedValkey(root / "valkey", persist=False) as server:
            asyncio.run(_fill(server.url, Registry.load(contract)))
            env = (contract, server.url, tmp, _key(root))
            lines = _measure("uvicorn", "nba", env, seconds, (1, 16))
            lines += _measure("uvicorn", "hello", env, seconds, (16,))
            if granian:
                lines += _measure("granian", "nba", env, seconds, (16,))
            return lines


def _peer(seconds: int) -> list[str]:
    if not PEER.is_file():
        return [f"peer: {PEER} not found"]
    run = subprocess.run(
        ["bash", str(PEER)], capture_output=True, text=True, env={**os.environ, "FEAST_SECONDS": str(seconds)}
    )
    return run.stdout.strip().splitlines() or [f"peer failed: {run.stderr.strip()[-300:]}"]


def main() -> None:
    """Measure ours, then the peer, in the same session; print both and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--no-peer", action="store_true", help="measure ours only")
    parser.add_argument("--granian", action="store_true", help="also ours on granian, the alternative server")
    parser.add_argument(
        "--serve",
        nargs=6,
        metavar=("SERVER", "APP", "CONTRACT", "REDIS_URL", "DATA_DIR", "PORT"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.serve:
        server, app, contract, redis_url, data_dir, port = args.serve
        serve(server, app, Path(contract), redis_url, Path(data_dir), int(port))
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (../shared/bench/feast_peer.sh installs it too)")
    ours = _ours_and_baselines(args.seconds, args.granian)
    peer = [] if args.no_peer else _peer(args.seconds)
    for line in ours + peer:
        print(line)
    runs = {(m[1], m[2]): float(m[3]) for line in ours + peer if (m := _RUN.match(line))}
    if ("nba", "16") in runs and ("feast", "16") in runs:
        print(f"ratio at 16 connections: {runs[('nba', '16')] / runs[('feast', '16')]:.1f}x Feast's requests/s")
    if ("nba", "16") in runs and ("hello", "16") in runs:
        print(f"ours at 16 connections: {runs[('nba', '16')] / runs[('hello', '16')]:.0%} of hello-world's requests/s")
    if ("nba", "16") in runs and ("nba-granian", "16") in runs:
        print(f"granian against uvicorn at 16 connections: {runs[('nba-granian', '16')] / runs[('nba', '16')]:.2f}x")


if __name__ == "__main__":
    main()
