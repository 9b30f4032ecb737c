"""The hot read's own wire format: commands encoded once as RESP bytes and sent on a pooled connection.

redis-py's pipeline encodes every argument through its generic encoder and wraps each command in objects;
for a read of 1 customer + 200 agents that is most of the time a read takes (``make bench`` prints the
figure beside the pipeline's). Here the command bytes are built with one join and the replies are parsed
by the connection's own parser (hiredis when installed), so nothing about the protocol is re-implemented
but the encoding of a few commands. A single server only: a cluster needs redis-py's slot routing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import ResponseError


def argument(value: bytes) -> bytes:
    """One argument as RESP (a bulk string), for callers that keep the encoded form of a frequent one."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(name: bytes, args: Sequence[bytes]) -> bytes:
    """One command as RESP: an array of bulk strings."""
    return command_of_args(name, [argument(a) for a in args])


def command_of_args(name: bytes, encoded: Sequence[bytes]) -> bytes:
    """One command from arguments already encoded by :func:`argument`."""
    return b"*%d\r\n$%d\r\n%s\r\n%s" % (len(encoded) + 1, len(name), name, b"".join(encoded))


async def exchange(client: aioredis.Redis, payload: bytes, replies: int) -> list[object]:
    """Send ``payload`` (pipelined commands) and read ``replies`` replies, in one round trip.

    An error reply (``ResponseError``) is returned in its place, not raised, so one bad command does not
    cost the others their answers; :func:`raise_errors` raises it for whoever asked. A connection that failed
    mid-exchange may still hold unread replies, so it is dropped, never reused.
    """
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(payload, check_health=False)
        out: list[object] = []
        for _ in range(replies):
            try:
                out.append(await connection.read_response())
            except ResponseError as exc:  # the reply was read whole: the connection is still in step
                out.append(exc)
        return out
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


def raise_errors(replies: list[object]) -> list[object]:
    """``replies`` unchanged, unless one is an error reply: then that error is raised."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


class Coalescer:
    """Joins the exchanges asked for in one turn of the event loop into a single write and a single read.

    Under concurrency (16 requests in flight on one worker) each request otherwise pays its own system calls
    to send and to wake up; coalesced, a turn of the loop pays them once for all its requests, and Redis reads
    them as one pipeline. Alone, a request waits for nothing: the batch is flushed on the next loop turn,
    the same turn the request would have sent in. This is what ioredis calls auto-pipelining.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pending: list[tuple[bytes, int, asyncio.Future[list[object]]]] = []
        self._flushing: set[asyncio.Task[list[object]]] = set()  # held so the loop cannot drop a running flush

    async def exchange(self, payload: bytes, replies: int) -> list[object]:
        """Like :func:`exchange`, sharing the round trip with whatever else was asked in this loop turn."""
        future: asyncio.Future[list[object]] = asyncio.get_running_loop().create_future()
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append((payload, replies, future))
        return raise_errors(await future)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        payload = b"".join(p for p, _, _ in batch)
        task = asyncio.get_running_loop().create_task(exchange(self._client, payload, sum(n for _, n, _ in batch)))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)
        task.add_done_callback(lambda done: _settle(batch, done))


def _settle(batch: list[tuple[bytes, int, asyncio.Future[list[object]]]], done: asyncio.Future[list[object]]) -> None:
    """Hand each request its own replies (or the batch's failure)."""
    if done.cancelled() or done.exception() is not None:
        failure = done.exception() if not done.cancelled() else asyncio.CancelledError()
        for _, _, future in batch:
            if not future.done():
                future.set_exception(failure)  # type: ignore[arg-type]
        return
    replies = done.result()
    start = 0
    for _, n, future in batch:
        if not future.done():
            future.set_result(replies[start : start + n])
        start += n
