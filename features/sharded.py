"""A Redis Cluster's hot reads on our own connections: commands grouped by the primary that owns their slot, one
:class:`~features.resp.Pipeline` per primary, all groups sent at once and the replies put back in order.

Why: redis-py's asyncio cluster pipeline spends Python on every command (a command object, its routing policy, the
generic encoder, a connection taken and given back per node): a read of a customer and 100 agents, one ``GET`` per
agent since an ``MGET`` cannot span slots, cost 1,666-1,741 us of CPU through it against 76-84 us on one server,
where the read rides :mod:`features.resp`. Here a command costs a slot lookup (its key hashed by
``redis.crc.key_slot``, kept by the caller for keys asked again and again) and what the single server's read costs,
and the read 223-274 us: most of the rest is writing to and reading from three connections instead of one (1,000
reads in process, best of three, two rounds, load 5.4-5.7, 2026-12-05; README, "Scale-out").

What stays redis-py's: the topology, which its ``NodesManager`` keeps (the primary of each slot: loaded on first use,
refreshed after errors, patched on ``MOVED``), and everything unusual, handed to redis-py's own paths:

- no slot map yet (a client never used), or a slot no node serves: the whole exchange goes through redis-py's
  cluster pipeline, which loads the map or raises its error;
- a ``MOVED``, ``ASK`` or ``TRYAGAIN`` reply (a slot moved, or is moving): that command alone is sent again through
  redis-py's client, which follows the redirection and patches its slot map for the next exchange, as redis-py's
  own pipeline does. A redirected command did not run, so sending it again is safe for a write too;
- a node whose connection fails (refused, reset, closed by the server, not opened within the connect timeout):
  that node's commands go through redis-py's pipeline, whose one retry refreshes the topology (a failover) and sends
  them where they now belong. As with redis-py's own retry, a write the node ran before its connection broke runs
  again;
- a node that does not answer within the socket timeout: the exchange raises ``TimeoutError`` then (the read's time
  is spent: the caller answers degraded), and that node's commands go through redis-py from then on until one of
  its exchanges succeeds there, so redis-py's own error handling meets the node and refreshes the topology if the
  node has gone. While the node stays silent those reads cost what they cost before this module (two timeouts:
  redis-py's one retry, :mod:`features.redis_client`); the first costs one.

The groups go out concurrently, each with the socket timeout of the client's nodes, so an exchange takes one round
trip of wall time and gives up after one timeout (plus the connect timeout when a connection must first be opened).
Replies are raw RESP as on a single server, except those redis-py answered, which carry its response callbacks
(``HGETALL`` as a dict): callers accept both, as they did when every cluster reply was redis-py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, TryAgainError

from features import resp

Routed = tuple[int, bytes, Sequence[bytes]]
"""A command ready to send: its key's slot, the command as RESP, and the command (name first) for redis-py."""

_REDIRECTED = (AskError, TryAgainError)
"""Replies that mean the command did not run where it was sent (redis-py's ``MovedError`` is an ``AskError``)."""


_SCRIPTS = frozenset({b"EVAL", b"EVALSHA", b"eval", b"evalsha"})
"""Commands whose first key follows the script and the number of keys."""


def routed(command: Sequence[bytes], *, slot: int | None = None) -> Routed:
    """``command`` (name, then arguments) ready to send, routed by its first key's slot unless ``slot`` is given (the
    slot of a hash tag the caller knows the key carries).

    The first key is the first argument, or a script's first key (``EVAL``/``EVALSHA``; a script without keys runs
    on any primary: slot 0's). A command's keys must share a slot, as a script's must on a cluster; one whose keys
    do not is refused by its node (``CROSSSLOT``).
    """
    if slot is None and command[0] in _SCRIPTS:
        slot = key_slot(command[3]) if int(command[2]) else 0
    elif slot is None:
        slot = key_slot(command[1])
    return slot, resp.command(command[0], command[1:]), command


class ShardedPipeline:
    """Sends commands to the cluster's primaries on one :class:`~features.resp.Pipeline` each, opened on first use.

    The connections take the address, credentials and timeouts of redis-py's node (``ClusterNode``), so the
    cluster's URL and options are read once, by redis-py.
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._pipelines: dict[str, resp.Pipeline] = {}
        self._through_redis_py: set[str] = set()
        """Nodes that did not answer one of our exchanges: their commands go through redis-py until it succeeds."""

    async def exchange(self, commands: Sequence[Routed]) -> list[object]:
        """The replies of ``commands``, in their order, error replies in place as exception objects.

        Raises ``TimeoutError`` when a node does not answer in time, and redis-py's errors when a fallback through
        redis-py fails.
        """
        slots = self._client.nodes_manager.slots_cache
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        try:
            for position, command in enumerate(commands):
                node = slots[command[0]][0]
                group = groups.get(node.name)
                if group is None:
                    groups[node.name] = (node, [position])
                else:
                    group[1].append(position)
        except (KeyError, IndexError):
            return await self._redis_py(commands)
        replies: list[object] = [None] * len(commands)
        if len(groups) == 1:
            ((node, positions),) = groups.values()
            await self._node(node, positions, commands, replies)
        else:
            done = await asyncio.gather(
                *(self._node(node, positions, commands, replies) for node, positions in groups.values()),
                return_exceptions=True,
            )
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome
        redirected = [i for i, reply in enumerate(replies) if isinstance(reply, _REDIRECTED)]
        if redirected:
            again = await asyncio.gather(
                *(self._client.execute_command(commands[i][2][0].decode(), *commands[i][2][1:]) for i in redirected),
                return_exceptions=True,
            )
            for i, reply in zip(redirected, again, strict=True):
                if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                    raise reply
                replies[i] = reply
            await self._forget_departed()
        return replies

    async def _node(
        self, node: ClusterNode, positions: list[int], commands: Sequence[Routed], replies: list[object]
    ) -> None:
        """One node's commands, on our connection to it or (see the module) through redis-py; replies put in place."""
        name = node.name
        if name in self._through_redis_py:
            got = await self._redis_py([commands[i] for i in positions])
            self._through_redis_py.discard(name)
        else:
            pipeline = self._pipelines.get(name)
            if pipeline is None:
                pipeline = self._pipelines[name] = resp.Pipeline.to(node.connection_kwargs, node.connection_class)
            try:
                got = await pipeline.replies(b"".join([commands[i][1] for i in positions]), len(positions))
            except TimeoutError:
                self._through_redis_py.add(name)
                raise
            except ConnectionError:
                # Refused or reset: redis-py's retry refreshes the topology and finds the slots' owners now.
                self._through_redis_py.add(name)
                got = await self._redis_py([commands[i] for i in positions])
                self._through_redis_py.discard(name)
                await self._forget_departed()
        for position, reply in zip(positions, got, strict=True):
            replies[position] = reply

    async def _redis_py(self, commands: Sequence[Routed]) -> list[object]:
        """``commands`` through redis-py's cluster pipeline (routing, redirections, retry and topology refresh its).

        An error reply is raised, not left in place: redis-py retries a connection that failed while its replies
        were read only when it raises that error (with ``raise_on_error=False`` it hands it back as a reply), and
        that retry is what finds a failed-over shard's new owner.
        """
        pipe = self._client.pipeline(transaction=False)
        for _, _, command in commands:
            pipe.execute_command(command[0].decode(), *command[1:])  # redis-py routes by the name as text
        return list(await pipe.execute())

    async def _forget_departed(self) -> None:
        """Close the connections to nodes the topology no longer has (after a redirection or a failover)."""
        known = self._client.nodes_manager.nodes_cache
        for name in [n for n in self._pipelines if n not in known]:
            await self._pipelines.pop(name).aclose()
            self._through_redis_py.discard(name)

    async def aclose(self) -> None:
        """Close every connection; a later exchange opens them again."""
        pipelines, self._pipelines = self._pipelines, {}
        for pipeline in pipelines.values():
            await pipeline.aclose()
