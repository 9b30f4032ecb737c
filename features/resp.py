"""The hot path's own wire format: commands encoded once as RESP bytes, and the connection that carries them.

redis-py's pipeline encodes every argument through its generic encoder and wraps each command in objects;
for a read of 1 customer + 200 agents that is most of the time a read takes (``make bench`` prints the
figure beside the pipeline's). Here the command bytes are built with one join and the replies are parsed by
hiredis, so nothing about the protocol is re-implemented but the encoding of a few commands. Reads and
batches of events travel on a :class:`Pipeline`: to a single server, or on a cluster to one primary each
(:mod:`features.sharded` routes the commands by slot and leaves anything unusual to redis-py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection, SSLConnection, UnixDomainSocketConnection


def argument(value: bytes) -> bytes:
    """One argument as RESP (a bulk string), for callers that keep the encoded form of a frequent one."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(name: bytes, args: Sequence[bytes]) -> bytes:
    """One command as RESP: an array of bulk strings."""
    return command_of_args(name, [argument(a) for a in args])


def command_of_args(name: bytes, encoded: Sequence[bytes]) -> bytes:
    """One command from arguments already encoded by :func:`argument`."""
    return b"*%d\r\n$%d\r\n%s\r\n%s" % (len(encoded) + 1, len(name), name, b"".join(encoded))


def raise_errors(replies: list[object]) -> list[object]:
    """``replies`` unchanged, unless one is an error reply: then that error is raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class Pipeline:
    """One connection to Redis carrying many requests at once, each handed its replies by their order.

    Redis answers a connection's commands in the order they arrived, so a request needs no id: it takes the
    next ``replies`` replies after those of the requests written before it. Requests made in one turn of the
    event loop are written with one system call (what ioredis calls auto-pipelining): under concurrency, 16
    requests in flight on one worker pay the write and the wake-up once for all of them, and Redis reads them
    as one pipeline. Alone, a request waits for nothing: its write goes out on the next loop turn.

    Why not redis-py's pool for the hot read: taking and releasing a pooled connection and reading each reply
    through a stream with its own timeout cost several event-loop turns per read, more CPU than the reply
    takes to parse (``make bench`` prints this read beside redis-py's PING). Replies are parsed by hiredis, as
    redis-py's are; what is ours is the framing of requests and the matching of replies to them.

    The connection opens on first use and again after any failure, with the address, credentials, database
    and TLS options of the redis-py client it was made from (:meth:`of`), so ``REDIS_URL`` is read once. A
    request with no reply after the client's socket timeout fails with ``TimeoutError`` and the connection is
    dropped, with every request still waiting on it: a late reply would otherwise be taken for the next one's.
    """

    def __init__(self, open_transport: _Opener, *, timeout_s: float) -> None:
        self._open = open_transport
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self._opening: asyncio.Task[_Connection] | None = None

    @classmethod
    def of(cls, client: aioredis.Redis) -> Pipeline:
        """A pipeline to the server ``client`` talks to, with its settings."""
        pool = client.connection_pool
        return cls.to(pool.connection_kwargs, pool.connection_class)

    @classmethod
    def to(cls, kwargs: Mapping[str, Any], kind: type[AbstractConnection]) -> Pipeline:
        """A pipeline to the server a redis-py connection of class ``kind`` made with ``kwargs`` would reach, with its
        settings (a pool's, or a cluster node's: ``ClusterNode.connection_kwargs`` and ``connection_class``)."""
        timeout_s = float(kwargs.get("socket_timeout") or _DEFAULT_TIMEOUT_S)
        connect_timeout_s = float(kwargs.get("socket_connect_timeout") or timeout_s)
        hello = []
        if kwargs.get("password"):
            credentials = [kwargs["username"], kwargs["password"]] if kwargs.get("username") else [kwargs["password"]]
            hello.append(command(b"AUTH", [str(c).encode() for c in credentials]))
        if kwargs.get("db"):
            hello.append(command(b"SELECT", [str(kwargs["db"]).encode()]))
        # redis-py's own TLS context from the URL's options, so nothing of them is read twice.
        tls = kind(**kwargs).ssl_context.get() if issubclass(kind, SSLConnection) else None

        unix = issubclass(kind, UnixDomainSocketConnection)
        host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
        where = kwargs["path"] if unix else f"{host}:{port}"

        async def open_transport(protocol: _Connection) -> None:
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(connect_timeout_s):
                    if unix:
                        await loop.create_unix_connection(lambda: protocol, kwargs["path"])
                    else:
                        await loop.create_connection(lambda: protocol, host, port, ssl=tls)
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(f"cannot connect to Redis at {where}: {type(exc).__name__}: {exc}") from exc
            if hello:
                raise_errors(await protocol.exchange(b"".join(hello), len(hello)))

        return cls(open_transport, timeout_s=timeout_s)

    async def exchange(self, payload: bytes, replies: int) -> list[object]:
        """Send ``payload`` (``replies`` pipelined commands) and return their replies, in one round trip.

        An error reply is raised (as redis-py would raise it), after every reply of the payload was read, so
        the connection stays in step; a lost connection raises ``ConnectionError``, a late one ``TimeoutError``.
        """
        return raise_errors(await self.replies(payload, replies))

    async def replies(self, payload: bytes, replies: int) -> list[object]:
        """:meth:`exchange`, with an error reply left in its place as an exception object rather than raised: for a
        caller that answers some errors itself (a cluster's MOVED, :mod:`features.sharded`)."""
        connection = self._connection
        if connection is None or not connection.usable():
            connection = await self._connect()
        return await connection.exchange(payload, replies)

    async def _connect(self) -> _Connection:
        """The open connection, opening one if needed; concurrent callers share one attempt."""
        loop = asyncio.get_running_loop()
        if self._opening is None or self._opening.get_loop() is not loop:
            self._opening = loop.create_task(self._open_one())
        opening = self._opening
        try:
            # Shielded: one caller giving up (a cancelled request) must not cancel the others' connection.
            return await asyncio.shield(opening)
        finally:
            if opening.done() and self._opening is opening:
                self._opening = None

    async def _open_one(self) -> _Connection:
        if self._connection is not None:
            self._connection.close()
        connection = _Connection(self._timeout_s)
        try:
            await self._open(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    async def aclose(self) -> None:
        """Close the connection; a later request opens a new one."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


_Opener = Callable[["_Connection"], Awaitable[None]]
"""Opens a transport for a connection protocol on the running loop and says hello (AUTH, SELECT)."""
_DEFAULT_TIMEOUT_S = 5.0
"""A reply's deadline when the client sets no socket timeout: a read never waits forever."""


class _Waiter:
    """A request in flight: how many replies it takes, those read so far, its future and its deadline."""

    __slots__ = ("count", "deadline", "future", "replies")

    def __init__(self, count: int, future: asyncio.Future[list[object]], deadline: asyncio.TimerHandle) -> None:
        self.count = count
        self.replies: list[object] = []
        self.future = future
        self.deadline = deadline


class _Connection(asyncio.Protocol):
    """One transport: writes each loop turn's requests at once, parses replies and hands them out in order."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # Error replies come back as exception objects in their place (redis-py's classes: NoScriptError,
        # AuthenticationError...), so one bad command fails only its own request and the others keep theirs.
        self._reader = hiredis.Reader(replyError=BaseParser.parse_error)
        self._waiting: deque[_Waiter] = deque()
        self._outgoing: list[bytes] = []
        self._closed = False

    def usable(self) -> bool:
        """Open, and on the running loop (a client kept across ``asyncio.run`` calls must reconnect)."""
        return not self._closed and self._loop is asyncio.get_running_loop()

    def exchange(self, payload: bytes, replies: int) -> asyncio.Future[list[object]]:
        future: asyncio.Future[list[object]] = self._loop.create_future()
        if self._closed:
            future.set_exception(ConnectionError("connection to Redis closed"))
            return future
        deadline = self._loop.call_later(self._timeout_s, self._expire)
        self._waiting.append(_Waiter(replies, future, deadline))
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(payload)
        return future

    def _flush(self) -> None:
        payload, self._outgoing = b"".join(self._outgoing), []
        if self._transport is not None and not self._closed:
            # A view: what the socket does not take at once is buffered from it, not sliced off a copy first (a
            # materialization's 20 MB MSETs were copied twice; their client CPU falls by a tenth).
            self._transport.write(memoryview(payload))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        while (reply := self._reader.gets()) is not False:
            if not waiting:
                self._fail(ConnectionError("Redis sent a reply nobody asked for"))
                return
            waiter = waiting[0]
            waiter.replies.append(reply)
            if len(waiter.replies) == waiter.count:
                waiting.popleft()
                waiter.deadline.cancel()
                if not waiter.future.done():  # a cancelled request's replies are read and dropped
                    waiter.future.set_result(waiter.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    def _expire(self) -> None:
        self._fail(TimeoutError(f"no reply from Redis within {self._timeout_s:g} s"))

    def _fail(self, error: Exception) -> None:
        """Close, and fail every request still waiting: their replies can no longer be told apart."""
        self._closed = True
        while self._waiting:
            waiter = self._waiting.popleft()
            waiter.deadline.cancel()
            if not waiter.future.done():
                waiter.future.set_exception(error)
        if self._transport is not None and not self._loop.is_closed():  # a closed loop closed its transports
            self._transport.abort()

    def close(self) -> None:
        if not self._closed:
            self._fail(ConnectionError("connection to Redis closed"))
