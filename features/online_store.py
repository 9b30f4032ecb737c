"""The online store: each entity's latest feature values in Redis, read in one round trip.

Layout: one hash per entity, ``{namespace}:{entity}:{{id}}``, with one field per feature (its value as
text, as a person would read it in ``HGETALL``) and one ``_ts:{view}`` field per feature view holding
the epoch seconds the view's values were observed at. The entity id sits in a hash tag, so on a Redis
Cluster every key of one entity lands on one shard. A request issues one ``HMGET`` per entity (the
customer plus any candidate agents) in a single pipeline: one network round trip however many agents.
On a cluster (:func:`features.redis_client.connect` with ``cluster=True``) the same pipeline is split by
redis-py per shard and the shards are asked concurrently, so a read still costs one round trip of wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from redis.exceptions import RedisClusterException, RedisError
from redis.typing import EncodableT, FieldT

from features.errors import OnlineStoreUnavailable
from features.redis_client import OnlineClient
from features.registry import EntitySchema, Registry

_TS_PREFIX = "_ts:"
# DEL then SADD in slices: Lua's unpack() cannot spread more than a few thousand values onto its stack.
_REPLACE_SET = """
redis.call('DEL', KEYS[1])
for i = 1, #ARGV, 1000 do
    redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return #ARGV
"""


@dataclass(frozen=True, slots=True)
class EntityVector:
    """One entity's features as the models see them, with what the store knew about their freshness."""

    entity_id: str
    values: np.ndarray
    """float64 in the registry's order; NaN where a feature is missing and has no default."""
    found: bool
    """False when the store holds nothing for this id (a cold start)."""
    known: np.ndarray
    """bool per feature: True where the value came from the store, False where a default stands in."""
    defaulted: tuple[str, ...]
    """Names of the features that ``known`` marks False."""
    view_age_s: Mapping[str, float | None]
    """Seconds since each view was observed; None where the view was never written."""
    stale_views: tuple[str, ...]
    """Views older than their TTL: served, but reported so nobody mistakes them for fresh."""


@contextmanager
def _map_errors() -> Iterator[None]:
    """Translate redis-py's exceptions into the feature store's one unavailable error.

    ``RedisClusterException`` is not a ``RedisError``: the cluster client raises it when no node answers
    or a slot has no owner, and it must degrade the answer like any other outage, not become a 500.
    """
    try:
        yield
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        raise OnlineStoreUnavailable(f"online store unavailable: {type(exc).__name__}: {exc}") from exc


class OnlineStore:
    """Reads and writes entity feature hashes; every method is one round trip to Redis."""

    def __init__(self, client: OnlineClient, registry: Registry, *, namespace: str = "nba") -> None:
        self._client = client
        self._registry = registry
        self._namespace = namespace
        self._customer = registry.entity("customer")
        self._agent = registry.entity("agent")
        self._fields = {
            name: [*schema.names, *(_TS_PREFIX + v.name for v in schema.views)]
            for name, schema in registry.entities.items()
        }

    def key(self, entity: str, entity_id: str) -> str:
        """The hash holding ``entity_id``'s features; the id is the cluster hash tag."""
        return f"{self._namespace}:{entity}:{{{entity_id}}}"

    async def ping(self) -> None:
        """Raise :class:`OnlineStoreUnavailable` unless Redis answers."""
        with _map_errors():
            await self._client.ping()

    async def read(self, customer_id: str, agent_ids: Sequence[str] = ()) -> tuple[EntityVector, list[EntityVector]]:
        """The customer's vector and each agent's, in one pipelined round trip."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(self.key("customer", customer_id), self._fields["customer"])
        for agent_id in agent_ids:
            pipe.hmget(self.key("agent", agent_id), self._fields["agent"])
        with _map_errors():
            replies = await pipe.execute()
        now = time.time()
        customer = _decode(self._customer, customer_id, replies[0], now)
        agents = [_decode(self._agent, a, r, now) for a, r in zip(agent_ids, replies[1:], strict=True)]
        return customer, agents

    async def write(
        self,
        entity: str,
        rows: Sequence[Mapping[str, object]],
        *,
        observed_at: Sequence[float],
    ) -> int:
        """Write each row's declared features (others are ignored) stamped with ``observed_at``.

        A ``None`` value deletes the field, so a value that became unknown is not served stale.
        Returns the number of entities written.
        """
        schema = self._registry.entity(entity)
        pipe = self._client.pipeline(transaction=False)
        for row, ts in zip(rows, observed_at, strict=True):
            key = self.key(entity, str(row[schema.join_key]))
            present: dict[FieldT, EncodableT] = {
                n: _to_text(row[n]) for n in schema.names if n in row and row[n] is not None
            }
            absent = [n for n in schema.names if n in row and row[n] is None]
            views = {schema.view_of[n] for n in schema.names if n in row}
            if not views:
                continue
            present.update({_TS_PREFIX + v: repr(float(ts)) for v in views})
            pipe.hset(key, mapping=present)
            if absent:
                pipe.hdel(key, *absent)
        with _map_errors():
            await pipe.execute()
        return len(rows)

    async def erase(self, entity: str, entity_id: str) -> bool:
        """Delete everything the online store keeps for ``entity_id`` (right to erasure); True if anything was there.

        Today that is the entity's one hash. A component that keys more state by the entity id must delete
        it here too, in the same call, so an erasure cannot miss it.
        """
        with _map_errors():
            deleted = await self._client.delete(self.key(entity, entity_id))
        return bool(deleted)

    def queue_key(self, queue: str) -> str:
        """The set of agent ids that serve ``queue``."""
        return f"{self._namespace}:queue:{queue}"

    async def set_queue(self, queue: str, agent_ids: Sequence[str]) -> None:
        """Replace ``queue``'s members atomically (a reader sees the old set or the new one).

        One Lua script (DEL then SADD) rather than a ``MULTI`` pipeline: a script runs atomically on a single
        server and on the cluster node owning the key's slot alike. redis-py's asyncio cluster runs the
        commands of a ``transaction=True`` pipeline through ``asyncio.run`` in a helper thread, so a client
        whose slot map is not loaded yet (a fresh one, or one refreshing after a failover) opens connections
        bound to a throwaway event loop, and its next use or ``aclose`` fails with "Event loop is closed".
        """
        with _map_errors():
            await self._client.eval(_REPLACE_SET, 1, self.queue_key(queue), *agent_ids)

    async def queue_members(self, queue: str) -> list[str]:
        """The agent ids of ``queue``, sorted (empty when the queue is unknown)."""
        with _map_errors():
            members = await self._client.smembers(self.queue_key(queue))
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def count(self, entity: str) -> int:
        """How many entities of this kind the store holds (a SCAN: admin use, not the hot path).

        On a cluster redis-py's ``scan_iter`` runs the SCAN on every primary, so the count covers all shards.
        """
        total = 0
        with _map_errors():
            async for _ in self._client.scan_iter(match=f"{self._namespace}:{entity}:*", count=1000):
                total += 1
        return total


def _to_text(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def _decode(schema: EntitySchema, entity_id: str, reply: list[bytes | None], now: float) -> EntityVector:
    n = len(schema.names)
    raw, stamps = reply[:n], reply[n:]
    values = np.fromiter(
        (f.encode(None if r is None else r.decode()) for f, r in zip(schema.features, raw, strict=True)),
        dtype=np.float64,
        count=n,
    )
    ages: dict[str, float | None] = {}
    stale: list[str] = []
    missing = {name for name, r in zip(schema.names, raw, strict=True) if r is None}
    for view, stamp in zip(schema.views, stamps, strict=True):
        age = None if stamp is None else max(0.0, now - float(stamp))
        ages[view.name] = age
        if age is not None and age > view.ttl_days * 86_400:
            # Past its TTL a value is treated as missing, exactly as the point-in-time join does.
            stale.append(view.name)
            for feature in view.features:
                values[schema.index[feature.name]] = feature.encode(None)
                missing.add(feature.name)
    known = np.array([name not in missing for name in schema.names], dtype=bool)
    defaulted = tuple(name for name in schema.names if name in missing)
    found = any(s is not None for s in stamps)
    return EntityVector(entity_id, values, found, known, defaulted, ages, tuple(stale))
