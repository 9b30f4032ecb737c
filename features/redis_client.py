"""The one place a Redis client for the online store is made, for a single server or a Redis Cluster.

Which client is an explicit setting (``RedisSettings.cluster``, env ``NBA_REDIS_CLUSTER``), not a guess
made by asking the server ``INFO cluster`` at start-up. A guess needs the server up when the client is
built: a service started while Redis is down would have to pick a mode blind, and picking the single-server
client for a cluster would leave it answering MOVED (degraded) for most keys long after the cluster came
back. A setting is known before any network call, so ``create_app`` stays free of I/O. The start-up check
(:func:`check`, run by ``nba run`` and ``nba demo`` through ``online_store_url``) asks ``INFO cluster``
once and stops with a message naming ``NBA_REDIS_CLUSTER`` when the setting and the server disagree, so
the explicit setting cannot silently be wrong.

Both clients speak the same commands to :class:`~features.online_store.OnlineStore`: on a cluster, the
hot reads and the service's commands go to the primary owning each key's slot on connections of the store's own
(:mod:`features.sharded`: one round trip per shard, in parallel), with redis-py's slot map and, for redirections
and failed nodes, redis-py's own paths; the rest goes through redis-py's pipeline, which groups commands by node
the same way; ``SCAN`` visits every primary; a Lua script over one key runs atomically on the node owning that
key's slot. (A ``transaction=True`` pipeline is avoided: see
``OnlineStore.set_queue`` for why redis-py's asyncio cluster transactions are not safe to use.)
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import ResponseError

from features.errors import OnlineStoreUnavailable

OnlineClient = aioredis.Redis | RedisCluster
"""What :func:`connect` returns and :class:`~features.online_store.OnlineStore` accepts."""

# One retry. A connection error or timeout is the only signal redis-py's cluster pipeline gets that a shard
# moved (failover): the retry asks for a new slot map (redis-py 8.2 keeps the connections and waits 0.25 s only
# after CLUSTERDOWN or an uncovered slot) and resends, so the store heals by itself; a failed pipeline with no retry
# left does not mark the slot map stale. More retries would stretch a dead shard's cost (two timeouts per read with
# one: 0.40 s at 0.2 s, measured) into seconds. The store's own connections (features.sharded) give up after one
# timeout and hand that node to redis-py's pipeline until it answers there, so this retry still finds a failover.
# (MOVED and ASK redirections are followed separately and do not spend this retry.)
_CLUSTER_RETRIES = 1


def connect(url: str, *, timeout_s: float, cluster: bool = False) -> OnlineClient:
    """An asyncio client on ``url`` whose reads fail after ``timeout_s`` instead of waiting.

    Args:
        url: ``redis://``, ``rediss://`` or (single server only) ``unix://`` URL; on a cluster, any node.
        timeout_s: socket connect and read timeout, so a slow or dead server degrades an answer, never hangs it.
        cluster: True for a Redis Cluster (``RedisSettings.cluster``); see the module docstring for why
            this is a setting rather than detected.

    No network call is made here: the cluster client loads its slot map on first use.
    """
    if cluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), _CLUSTER_RETRIES),
        )
    return aioredis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
    )


def check(url: str, *, timeout_s: float, cluster: bool = False) -> None:
    """At start-up, PING ``url`` (every primary on a cluster) and confirm it runs in the mode the settings say.

    Raises redis-py's errors (or ``OSError``/``ValueError`` for a bad URL) when the server does not answer,
    and :class:`OnlineStoreUnavailable` when ``cluster`` disagrees with the server's ``cluster_enabled``.
    """
    single = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        single.ping()
        try:
            enabled: bool | None = bool(single.info("cluster").get("cluster_enabled"))
        except ResponseError:
            enabled = None  # INFO disabled (some managed services): trust the setting
    finally:
        single.close()
    if enabled is not None and enabled != cluster:
        hint = "set NBA_REDIS_CLUSTER=true" if enabled else "unset NBA_REDIS_CLUSTER (or set it to false)"
        mode = "a Redis Cluster node" if enabled else "a single server, not a cluster"
        raise OnlineStoreUnavailable(f"REDIS_URL={url} is {mode}: {hint}")
    if cluster:
        # Loading the slot map and pinging each primary proves every shard answers, not just the seed node.
        nodes = SyncRedisCluster.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            nodes.ping(target_nodes=SyncRedisCluster.PRIMARIES)
        finally:
            nodes.close()
