"""A paced HTTP load in Python: keep-alive connections that send requests on a schedule and keep every answer's
latency, so a run can be cut into windows afterwards (``bench.soak`` and its suite version use it).

Why not wrk: the load a contact center sends is a conversation (an answer's ``decision_id`` comes back in a
feedback), which wrk's Lua can only fake with string matching; the suite runs where wrk is not installed; and a load
cut into windows by time needs no restart of the client each minute (wrk's ``-d``), which would drop and reopen
every connection at each boundary. What it costs: the client's own CPU, which on a 2-core machine the server would
otherwise have. Each request is a few bytes of HTTP/1.1 written on an asyncio stream (uvloop) and an answer read by
its ``Content-Length``: no HTTP library in the loop. Measured against wrk on the same server, the same recommends
over the 50,000 demo customers in turn at 16 connections, alternated three times (2026-12-05 12:18 UTC, load
average 3.0-4.0 from other jobs): wrk 968, 972, 983 req/s, this client 893, 944, 934 (95% of wrk's on average),
with the same p50 (16-18 ms) and p99 (21-27 ms) and the same server CPU a request (902-957 us); the client's own
CPU 113-152 us a request against wrk's 50-68.

Pacing: each connection sends its requests at fixed intervals (``connections / rate`` apart, the connections'
schedules staggered), waiting for the previous answer first, as wrk's ``delay()`` paces a connection. A connection
that falls behind its schedule sends at once until it has caught up, so the rate asked is kept whenever the server
can keep it; the achieved rate is measured, never assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

TIMEOUT_S = 10.0
"""An answer slower than this counts as an error (status 0) and its connection is opened again."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What one request got back: its HTTP status (0 when no answer came) and its body."""

    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300


@dataclass
class Record:
    """Every request's route, send time (``time.monotonic()``), latency and outcome, as parallel lists (cheap to
    append at thousands a second; cut into windows afterwards)."""

    routes: list[str] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    failed: list[str | None] = field(default_factory=list)
    """None for a good answer; else why not: ``status 503``, ``degraded``, ``no answer``."""

    def add(self, route: str, sent: float, seconds: float, failed: str | None) -> None:
        self.routes.append(route)
        self.sent.append(sent)
        self.seconds.append(seconds)
        self.failed.append(failed)

    def window(self, start: float, end: float) -> Window:
        """The requests sent in ``[start, end)``."""
        picked = [i for i, t in enumerate(self.sent) if start <= t < end]
        failures: dict[str, int] = {}
        for i in picked:
            why = self.failed[i]
            if why is not None:
                failures[f"{self.routes[i]} {why}"] = failures.get(f"{self.routes[i]} {why}", 0) + 1
        by_route: dict[str, list[float]] = {}
        for i in picked:
            by_route.setdefault(self.routes[i], []).append(self.seconds[i])
        return Window(
            start=start,
            seconds=end - start,
            latencies=sorted(self.seconds[i] for i in picked),
            by_route={route: sorted(values) for route, values in by_route.items()},
            failures=failures,
        )


@dataclass(frozen=True)
class Window:
    """The requests sent in one stretch of time."""

    start: float
    seconds: float
    latencies: list[float]
    """Every request's latency in seconds, sorted."""
    by_route: dict[str, list[float]]
    """The same, per route."""
    failures: dict[str, int]
    """Failed requests by route and reason."""

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Requests sent per second."""
        return self.requests / self.seconds

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    def quantile_ms(self, q: float, route: str | None = None) -> float:
        """The ``q`` quantile of the latencies (nearest rank), in ms: of every request, or of ``route``'s."""
        values = self.latencies if route is None else self.by_route.get(route, [])
        if not values:
            return math.nan
        return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)] * 1e3


class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port``, one request at a time, opened again after a failure."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._prefix = f" HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n".encode()

    async def post(self, path: str, body: bytes, key: str) -> Reply:
        """POST ``body`` (JSON) to ``path`` with ``key`` as the bearer token; a failure is status 0, never raised."""
        request = b"".join(
            (
                b"POST ",
                path.encode(),
                self._prefix,
                f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode(),
                body,
            )
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                if self._streams is None:
                    self._streams = await asyncio.open_connection(self._host, self._port)
                reader, writer = self._streams
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = _content_length(head)
                return Reply(status, await reader.readexactly(length))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            await self.close()
            return Reply(0, b"")

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _content_length(head: bytes) -> int:
    """The ``Content-Length`` of a response head (the service always sends one; chunked answers are refused)."""
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line[15:])
    raise ValueError("an answer without Content-Length")


class Paced:
    """One connection sending on its own schedule (``interval`` seconds apart from ``first``; 0: as fast as the
    answers come), each request's figures kept in ``record``.

    ``check`` decides whether an answer with a 2xx status is a good one (a degraded decision is not)."""

    def __init__(
        self,
        connection: Connection,
        record: Record,
        *,
        first: float,
        interval: float,
        check: Callable[[str, Reply], str | None],
    ) -> None:
        self.connection, self.record, self._next, self._interval, self._check = (
            connection,
            record,
            first,
            interval,
            check,
        )

    async def post(self, route: str, path: str, body: bytes, key: str) -> Reply:
        """Wait for this connection's next slot, send, keep the figures; the answer."""
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next += self._interval
        sent = time.monotonic()
        reply = await self.connection.post(path, body, key)
        seconds = time.monotonic() - sent
        failed = ("no answer" if reply.status == 0 else f"status {reply.status}") if not reply.ok else None
        self.record.add(route, sent, seconds, failed or self._check(route, reply))
        return reply


async def run_paced(
    host: str,
    port: int,
    *,
    connections: int,
    rate: float | None,
    seconds: float,
    session: Callable[[Paced, Callable[[], bool]], Awaitable[None]],
    check: Callable[[str, Reply], str | None],
    record: Record | None = None,
) -> Record:
    """``connections`` connections, each running ``session(paced, stopping)`` until ``seconds`` have passed, at
    ``rate`` requests a second in all (None: as fast as the server answers). A session sends its requests through
    ``paced.post`` and returns when ``stopping()`` says so; the requests sent before the end are all answered.
    """
    record = record if record is not None else Record()
    start = time.monotonic()
    end = start + seconds
    interval = connections / rate if rate else 0.0
    stagger = 1 / rate if rate else 0.0

    def stopping() -> bool:
        return time.monotonic() >= end

    pool = [
        Paced(Connection(host, port), record, first=start + i * stagger, interval=interval, check=check)
        for i in range(connections)
    ]
    try:
        await asyncio.gather(*(session(p, stopping) for p in pool))
    finally:
        for p in pool:
            await p.connection.close()
    return record
