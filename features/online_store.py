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
from redis.exceptions import NoScriptError, RedisClusterException, RedisError
from redis.typing import EncodableT, FieldT

from features.errors import OnlineStoreUnavailable
from features.event_state import APPLY_EVENT, Event, EventLayout
from features.redis_client import OnlineClient
from features.registry import DAY_SECONDS, EntitySchema, Registry

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
        self._layouts = {name: EventLayout(schema) for name, schema in registry.entities.items()}
        self._snapshot_fields = {
            name: [*schema.snapshot_names, *(_TS_PREFIX + v.name for v in schema.views if v.source == "snapshot")]
            for name, schema in registry.entities.items()
        }
        self._apply_sha: str | None = None

    def _fields(self, entity: str, now: float) -> list[str]:
        return [*self._snapshot_fields[entity], *self._layouts[entity].read_fields(int(now // DAY_SECONDS))]

    def layout(self, entity: str) -> EventLayout:
        """How ``entity``'s event features are kept in its hash."""
        return self._layouts[entity]

    def seen_key(self, entity: str, entity_id: str) -> str:
        """The sorted set of event ids already applied to ``entity_id`` (same hash tag as its features)."""
        return f"{self._namespace}:seen:{entity}:{{{entity_id}}}"

    def key(self, entity: str, entity_id: str) -> str:
        """The hash holding ``entity_id``'s features; the id is the cluster hash tag."""
        return f"{self._namespace}:{entity}:{{{entity_id}}}"

    async def ping(self) -> None:
        """Raise :class:`OnlineStoreUnavailable` unless Redis answers."""
        with _map_errors():
            await self._client.ping()

    async def read(
        self, customer_id: str, agent_ids: Sequence[str] = (), *, now: float | None = None
    ) -> tuple[EntityVector, list[EntityVector]]:
        """The customer's vector and each agent's as of ``now`` (the clock by default), in one round trip."""
        now = time.time() if now is None else now
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(self.key("customer", customer_id), self._fields("customer", now))
        agent_fields = self._fields("agent", now)
        for agent_id in agent_ids:
            pipe.hmget(self.key("agent", agent_id), agent_fields)
        with _map_errors():
            replies = await pipe.execute()
        customer = _decode(self._customer, self._layouts["customer"], customer_id, replies[0], now)
        agent_layout = self._layouts["agent"]
        agents = [_decode(self._agent, agent_layout, a, r, now) for a, r in zip(agent_ids, replies[1:], strict=True)]
        return customer, agents

    async def apply_events(self, entity: str, events: Sequence[Event], *, now: float | None = None) -> list[str]:
        """Apply each event to its entity's state, once: ``applied``, ``duplicate`` or ``too_old`` per event.

        Events older than the horizon the features look back over cannot change any feature, and their ids
        are no longer remembered, so they are refused rather than risk counting one twice. One round trip.
        """
        layout = self._layouts[entity]
        horizon_s = (now if now is not None else time.time()) - layout.horizon_days * DAY_SECONDS
        fresh = [e for e in events if e.occurred_at > horizon_s]
        applied: list[object] = []
        if fresh:
            applied = await self._run_apply(entity, fresh, layout, horizon_s)
        results = iter(applied)
        return [
            ("applied" if next(results) else "duplicate") if e.occurred_at > horizon_s else "too_old" for e in events
        ]

    async def _run_apply(self, entity: str, events: list[Event], layout: EventLayout, horizon_s: float) -> list[object]:
        """One pipeline of EVALSHA calls; the script is loaded once, and again if the server lost it."""
        for attempt in (1, 2):
            with _map_errors():
                if self._apply_sha is None:
                    self._apply_sha = str(await self._client.script_load(APPLY_EVENT))
                pipe = self._client.pipeline(transaction=False)
                for event in events:
                    keys = (self.key(entity, event.entity_id), self.seen_key(entity, event.entity_id))
                    args = (event.event_id, repr(event.occurred_at), repr(horizon_s), *layout.apply_args(event))
                    pipe.evalsha(self._apply_sha, 2, *keys, *args)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    # A restarted or failed-over server forgot the script; nothing ran, so running again is safe.
                    self._apply_sha = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def write_event_state(self, entity: str, state: Mapping[str, Mapping[str, str]]) -> int:
        """Overwrite event-state fields per entity id (materialization); returns how many entities."""
        pipe = self._client.pipeline(transaction=False)
        for entity_id, fields in state.items():
            if fields:
                mapping: dict[FieldT, EncodableT] = {k: v for k, v in fields.items()}
                pipe.hset(self.key(entity, entity_id), mapping=mapping)
        with _map_errors():
            await pipe.execute()
        return len(state)

    async def write(
        self,
        entity: str,
        rows: Sequence[Mapping[str, object]],
        *,
        observed_at: Sequence[float],
    ) -> int:
        """Write each row's snapshot features (others are ignored) stamped with ``observed_at``.

        A ``None`` value deletes the field, so a value that became unknown is not served stale.
        Returns the number of entities written.
        """
        schema = self._registry.entity(entity)
        pipe = self._client.pipeline(transaction=False)
        for row, ts in zip(rows, observed_at, strict=True):
            key = self.key(entity, str(row[schema.join_key]))
            present: dict[FieldT, EncodableT] = {
                n: _to_text(row[n]) for n in schema.snapshot_names if n in row and row[n] is not None
            }
            absent = [n for n in schema.snapshot_names if n in row and row[n] is None]
            views = {schema.view_of[n] for n in schema.snapshot_names if n in row}
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

        That is the entity's hash (snapshot and event features) and the ids of the events applied to it. A
        component that keys more state by the entity id must delete it here too, so an erasure cannot miss it.
        """
        with _map_errors():
            # Two commands, not one multi-key DEL: on a cluster both keys share a slot, but a plain client
            # pipeline keeps this the same code for both.
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(self.key(entity, entity_id))
            pipe.delete(self.seen_key(entity, entity_id))
            deleted = await pipe.execute()
        return bool(deleted[0])

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

    async def sample_ids(self, entity: str, limit: int | None = None) -> list[str]:
        """Up to ``limit`` ids of stored entities (all when None), in SCAN order: admin use, not the hot path.

        SCAN walks the server's hash table, so the first ids it returns are in no business order (not the
        oldest, not sorted): a fair sample for quality checks without reading every key.
        """
        prefix = self.key(entity, "")[:-1]  # up to and including the hash tag's opening brace
        ids: list[str] = []
        with _map_errors():
            async for key in self._client.scan_iter(match=f"{prefix}*", count=1000):
                text = key.decode() if isinstance(key, bytes) else key
                ids.append(text[len(prefix) : -1])
                if limit is not None and len(ids) >= limit:
                    break
        return ids


def _to_text(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def _decode(
    schema: EntitySchema, layout: EventLayout, entity_id: str, reply: list[bytes | None], now: float
) -> EntityVector:
    n = len(schema.snapshot_names)
    snapshot_views = [v for v in schema.views if v.source == "snapshot"]
    raw, stamps, events = reply[:n], reply[n : n + len(snapshot_views)], reply[n + len(snapshot_views) :]
    values = np.empty(len(schema.names), dtype=np.float64)
    known = np.ones(len(schema.names), dtype=bool)
    for feature, r in zip(schema.snapshot_features, raw, strict=True):
        i = schema.index[feature.name]
        values[i] = feature.encode(None if r is None else r.decode())
        known[i] = r is not None
    ages: dict[str, float | None] = {}
    stale: list[str] = []
    for view, stamp in zip(snapshot_views, stamps, strict=True):
        age = None if stamp is None else max(0.0, now - float(stamp))
        ages[view.name] = age
        if age is not None and age > view.ttl_seconds:
            # Past its TTL a value is treated as missing, exactly as the point-in-time join does.
            stale.append(view.name)
            for feature in view.features:
                values[schema.index[feature.name]] = feature.encode(None)
                known[schema.index[feature.name]] = False
    if layout.features:
        event_values, event_known, event_ages = layout.decode(events, now)
        for feature, value, is_known in zip(layout.features, event_values, event_known, strict=True):
            values[schema.index[feature.name]], known[schema.index[feature.name]] = value, is_known
        ages.update(event_ages)
        stale += [v for v, age in event_ages.items() if age is not None and age > schema.view_by_name[v].ttl_seconds]
    found = any(s is not None for s in stamps) or any(age is not None for age in ages.values())
    if not found:
        # A cold start: an empty window's zero is a fact only about an entity the store knows.
        known[:] = False
    defaulted = tuple(name for name, k in zip(schema.names, known, strict=True) if not k)
    return EntityVector(entity_id, values, found, known, defaulted, ages, tuple(stale))
