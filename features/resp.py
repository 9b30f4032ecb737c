"""The hot read's own wire format: commands encoded once as RESP bytes and sent on a pooled connection.

redis-py's pipeline encodes every argument through its generic encoder and wraps each command in objects;
for a read of 1 customer + 200 agents that is most of the time a read takes (``make bench`` prints the
figure beside the pipeline's). Here the command bytes are built with one join and the replies are parsed
by the connection's own parser (hiredis when installed), so nothing about the protocol is re-implemented
but the encoding of a few commands. A single server only: a cluster needs redis-py's slot routing.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis


def command(name: bytes, args: Sequence[bytes]) -> bytes:
    """One command as RESP: an array of bulk strings."""
    parts = [b"*%d\r\n$%d\r\n%s\r\n" % (len(args) + 1, len(name), name)]
    parts.extend(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    return b"".join(parts)


async def exchange(client: aioredis.Redis, payload: bytes, replies: int) -> list[object]:
    """Send ``payload`` (pipelined commands) and read ``replies`` replies, in one round trip.

    A connection that failed mid-exchange may still hold unread replies, so it is dropped, never reused.
    Error replies are raised as redis-py raises them (``ResponseError``), after the connection is dropped.
    """
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(payload, check_health=False)
        return [await connection.read_response() for _ in range(replies)]
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
