"""The online store: each entity's latest feature values in Redis, read in one round trip.

Layout, per entity (the id sits in a hash tag, so on a Redis Cluster every key of one entity lands on one
shard):

- ``{namespace}:{entity}:{{id}}``: a string, the snapshot features packed as float64 (see
  :mod:`features.packed`, which also says why this encoding and not a hash per entity).
- ``{namespace}:events:{entity}:{{id}}``: a string, the event state (rings of day totals and the newest
  event of each group, see :mod:`features.event_state`), for entities whose contract has event features.
- ``{namespace}:seen:{entity}:{{id}}``: a sorted set of the event ids already applied.
- ``{namespace}:contacts:customer:{{id}}``: a hash, the customer's contact-policy state, which the service keeps
  (``service/contact_policy.py``) and may read in the same round trip (:meth:`OnlineStore.read_with`).
- ``{namespace}:decisions:customer:{{id}}``: a set, the ids of the decisions the service remembers for the
  customer (``service/decision_records.py``), whose records sit under their own ids
  (``{namespace}:decision:{{decision id}}``, ``{namespace}:feedback:{{decision id}}``): what an erasure follows to
  delete them.
- the service's decision log: streams under the hash tag ``{decision-log}`` with a set per customer of their
  entries (:mod:`features.decision_log_keys`), which an erasure follows too.

A read is one pipeline: ``GET`` (and ``GET`` of the event state) for the customer and one
``MGET`` for all candidate agents, decoded in C (:mod:`features.fast_decode`; by numpy where it was not built).
On a cluster (:func:`features.redis_client.connect` with ``cluster=True``) the agents are asked with one ``GET``
each, since an ``MGET`` cannot span slots (each agent's id is its own hash tag, so its own slot); the commands are
grouped by the primary owning their slot and each group sent on our own connection to that primary, all at once
(:mod:`features.sharded`, which leaves redirections, failures and the slot map to redis-py), so a read still costs
one round trip of wall time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast, overload

import numpy as np
import pyarrow as pa
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from features import decision_log_keys, event_stream_keys, fast_decode, resp, sharded
from features.errors import OnlineStoreUnavailable, UnknownFeatureError
from features.event_state import APPLY_EVENTS, ERASED, ID_BYTES, TAG_BYTES, Event, EventLayout
from features.fast_decode import FastDecoder
from features.identity import LINKED, UNLINKED, Identifier
from features.packed import PackedLayout
from features.redis_client import OnlineClient
from features.registry import DAY_SECONDS, EntitySchema, Registry
from features.view_read import SnapshotViewDecoder, ViewVector

STORE_LAYOUT = "packed-4"
"""How this module lays entities out in Redis; a marker of materialized data names it, so data written in
another layout (the first one kept a hash per entity, the second a hash of event state, the third every ring's
days whole, the fourth event ids padded to 64 bytes) is rewritten rather than read as this one."""
_LEGACY_STATE = "ev"
"""The prefix under which layout packed-1 kept event state as a hash; erasure deletes it too, since a store
upgraded in place may still hold one for an entity that had no events in the horizon at the upgrade."""

# DEL then SADD in slices: Lua's unpack() cannot spread more than a few thousand values onto its stack.
_REPLACE_SET = """
redis.call('DEL', KEYS[1])
for i = 1, #ARGV, 1000 do
    redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return #ARGV
"""
# Writes some view segments of a packed value; a value that is absent or of another layout starts empty.
# ARGV: the empty value (tag + zeros), then (byte offset, bytes)*.
_WRITE_SEGMENTS = """
local cur = redis.call('GET', KEYS[1])
if (not cur) or #cur ~= #ARGV[1] or string.sub(cur, 1, 8) ~= string.sub(ARGV[1], 1, 8) then
  redis.call('SET', KEYS[1], ARGV[1])
end
for i = 2, #ARGV, 2 do
  redis.call('SETRANGE', KEYS[1], tonumber(ARGV[i]), ARGV[i + 1])
end
return 1
"""
# Resolves an identifier and reads its customer in the same script (single server: the customer's keys are
# derived inside, which a cluster forbids). KEYS[1]: the identifier; ARGV: packed-key prefix, state-key prefix
# (both ending in the hash tag's opening brace), what of the event state to read: 'all', 'tag' (its layout tag
# alone: whether there is any) or 'none' (customers have no event features).
_RESOLVE_AND_READ = """
local id = redis.call('GET', KEYS[1])
if not id then return {false, false, false} end
local state = false
if ARGV[3] == 'all' then
  state = redis.call('GET', ARGV[2] .. id .. '}')
elseif ARGV[3] == 'tag' then
  state = redis.call('GETRANGE', ARGV[2] .. id .. '}', 0, 7)
end
return {id, redis.call('GET', ARGV[1] .. id .. '}'), state}
"""
# Deletes an identifier only while it still names ARGV[1]: unlinking or erasing one customer never takes an
# identifier that has since been given to someone else.
_RESOLVE_AND_READ_BYTES = _RESOLVE_AND_READ.encode()
_DELETE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_AGENT_ARGS_KEPT = 100_000
"""Encoded agent keys kept at most (a contact center's whole roster; the cache starts over past it)."""
_Call = tuple[list[bytes], list[bytes], list[int]]
"""One script call of an apply: its KEYS, its ARGV and the positions of its events in the batch."""
_MSET_ROWS = 2_000
"""Entities per MSET when materializing: big enough to amortise the call, small enough not to stall Redis."""


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
    names: tuple[str, ...]
    """The registry's feature names, in the order of ``values``."""
    view_age_s: Mapping[str, float | None]
    """Seconds since each view was observed; None where the view was never written."""
    stale_views: tuple[str, ...]
    """Views older than their TTL: served, but reported so nobody mistakes them for fresh."""

    @property
    def defaulted(self) -> tuple[str, ...]:
        """Names of the features that ``known`` marks False."""
        return tuple(name for name, k in zip(self.names, self.known, strict=True) if not k)


class EntityBatch(Sequence[EntityVector]):
    """Many entities of one kind read together (the candidate agents), as matrices.

    Scoring code should use the matrices; indexing or iterating builds an :class:`EntityVector` per entity,
    which costs a few microseconds each.
    """

    def __init__(
        self,
        schema: EntitySchema,
        ids: Sequence[str],
        values: np.ndarray,
        known: np.ndarray,
        found: np.ndarray,
        ages: np.ndarray,
    ) -> None:
        self.schema = schema
        self.ids = tuple(ids)
        self.values = values
        """entities x features, float64."""
        self.known = known
        """entities x features, bool."""
        self.found = found
        """bool per entity."""
        self.ages = ages
        """entities x views (the schema's order), seconds; NaN where never written."""

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> EntityVector: ...

    @overload
    def __getitem__(self, i: slice) -> list[EntityVector]: ...

    def __getitem__(self, i: int | slice) -> EntityVector | list[EntityVector]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self.ids)))]
        schema, row = self.schema, self.ages[i].tolist()
        ages = {name: None if math.isnan(a) else a for name, a in zip(schema.view_names, row, strict=True)}
        stale = tuple(name for name, a, ttl in zip(schema.view_names, row, schema.view_ttls, strict=True) if a > ttl)
        return EntityVector(self.ids[i], self.values[i], bool(self.found[i]), self.known[i], schema.names, ages, stale)

    def __iter__(self) -> Iterator[EntityVector]:
        return (self[i] for i in range(len(self.ids)))


@contextmanager
def map_errors() -> Iterator[None]:
    """Translate redis-py's exceptions into the feature store's one unavailable error.

    ``RedisClusterException`` is not a ``RedisError``: the cluster client raises it when no node answers
    or a slot has no owner, and it must degrade the answer like any other outage, not become a 500.
    """
    try:
        yield
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        raise OnlineStoreUnavailable(f"online store unavailable: {type(exc).__name__}: {exc}") from exc


_STATUS = {1: "applied", 0: "duplicate", 2: "erased"}
"""What the apply script's answer for an event means."""


class _Kind:
    """What the store resolves once per entity kind: its schema, packed layout and event layout."""

    def __init__(self, schema: EntitySchema) -> None:
        self.schema = schema
        self.packed = PackedLayout(schema)
        self.events = EventLayout(schema)
        position = schema.index
        self.snapshot_at = np.array([position[f.name] for f in self.packed.features], dtype=np.intp)
        self.event_at = np.array([position[f.name] for f in self.events.features], dtype=np.intp)
        views = self.packed.views
        view_at = {v.name: i for i, v in enumerate(schema.views)}
        self.snapshot_view_at = np.array([view_at[v.name] for v in views], dtype=np.intp)
        self.event_view_at = np.array([view_at[v] for v in self.events.view_events], dtype=np.intp)
        self.snapshot_ttl = np.array([v.ttl_seconds for v in views], dtype=np.float64)
        of_view = {f.name: i for i, v in enumerate(views) for f in v.features}
        self.feature_view = np.array([of_view[f.name] for f in self.packed.features], dtype=np.intp)
        # Derived features: (their position, their source's position, how), computed after the stored ones.
        self.derived = [
            (position[f.name], position[f.derive.feature], f.derive, f.encode(None))
            for f in schema.derived_features
            if f.derive is not None
        ]
        # Agents: every feature is a snapshot one, in registry order, so no scattering into place is needed.
        self.snapshot_views_only = len(views) == len(schema.views)
        n_features, n_views = len(schema.names), len(schema.views)
        self.empty = EntityBatch(
            schema,
            (),
            np.empty((0, n_features)),
            np.empty((0, n_features), dtype=bool),
            np.empty(0, dtype=bool),
            np.empty((0, n_views)),
        )
        """What a read without agents returns for them, built once."""
        self.snapshot_only = self.snapshot_views_only and self.snapshot_at.tolist() == list(range(len(schema.names)))
        event_tag = self.events.tag if self.events.features else None
        self.view_decoders = {v.name: SnapshotViewDecoder(schema, self.packed, v, event_tag) for v in views}
        """Each snapshot view's own decoder, for a read of that view alone."""
        self.fast = (
            FastDecoder(
                names=n_features,
                views=n_views,
                packed=self.packed,
                events=self.events,
                snapshot_at=self.snapshot_at,
                snapshot_view_at=self.snapshot_view_at,
                snapshot_ttl=self.snapshot_ttl,
                feature_view=self.feature_view,
                derived=self.derived,
                event_at=self.event_at,
                event_view_at=self.event_view_at,
            )
            if fast_decode.AVAILABLE
            else None
        )
        """The decode in C (:mod:`features.fast_decode`); None where it was not built."""

    def decode(
        self,
        ids: Sequence[str],
        blobs: Sequence[bytes | None],
        states: Sequence[bytes | None] | None,
        now: float,
        *,
        events: bool = True,
    ) -> EntityBatch:
        """Matrices for ``ids`` from their packed values and (when the kind has event features) event states.

        With ``events`` False the states are only their tags (see :meth:`OnlineStore.read`): they tell whether
        an entity has event state, and its event features read as not known. The C decode answers when it was
        built and takes the call; :meth:`decode_numpy` otherwise, with the same answer.
        """
        if self.fast is not None:
            decoded = self.fast.decode(blobs, states, now, events=events)
            if decoded is not None:
                return EntityBatch(self.schema, ids, *decoded)
        return self.decode_numpy(ids, blobs, states, now, events=events)

    def decode_numpy(
        self,
        ids: Sequence[str],
        blobs: Sequence[bytes | None],
        states: Sequence[bytes | None] | None,
        now: float,
        *,
        events: bool = True,
    ) -> EntityBatch:
        """:meth:`decode` in whole-matrix numpy: the reference the C decode is held to, and its fallback."""
        n, schema = len(ids), self.schema
        slots, present = self.packed.unpack(blobs)
        stamps = slots[:, self.packed.stamp_slots]
        written = stamps > 0
        snapshot_ages = np.where(written, np.maximum(now - stamps, 0.0), np.nan)
        # Past its TTL (or never written, NaN) a view's values count as missing, as the point-in-time join has it.
        unfresh = ~(snapshot_ages <= self.snapshot_ttl)
        raw = slots[:, self.packed.value_slots]
        missing = np.isnan(raw) | unfresh[:, self.feature_view]
        snapshot_values = np.where(missing, self.packed.defaults, raw)
        if self.snapshot_only:
            values, known = snapshot_values, ~missing
        else:
            values = np.empty((n, len(schema.names)), dtype=np.float64)
            known = np.empty((n, len(schema.names)), dtype=bool)
            values[:, self.snapshot_at] = snapshot_values
            known[:, self.snapshot_at] = ~missing
        if self.derived:
            today = math.floor(now / DAY_SECONDS)
            for at, source_at, derive, default in self.derived:
                source_known = known[:, source_at]
                values[:, at] = np.where(source_known, derive.compute(values[:, source_at], today), default)
                known[:, at] = source_known
        if self.snapshot_views_only:
            ages = snapshot_ages
        else:
            ages = np.full((n, len(schema.views)), np.nan)
            ages[:, self.snapshot_view_at] = snapshot_ages
        found = present & written.any(axis=1)
        if states is not None and events:
            event_values, event_known, event_ages, has_events = self.events.decode(states, now)
            values[:, self.event_at] = event_values
            known[:, self.event_at] = event_known
            ages[:, self.event_view_at] = event_ages
            found |= has_events
        elif states is not None:
            values[:, self.event_at] = self.events.defaults
            known[:, self.event_at] = False
            found |= self.events.held(states)
        if not found.all():
            # A cold start: an empty window's zero is a fact only about an entity the store knows.
            known[~found] = False
        return EntityBatch(schema, ids, values, known, found, ages)


class OnlineStore:
    """Reads and writes entity features; every method is one round trip to Redis."""

    def __init__(self, client: OnlineClient, registry: Registry, *, namespace: str = "nba") -> None:
        self._client = client
        self._registry = registry
        self._namespace = namespace
        self._kinds = {name: _Kind(schema) for name, schema in registry.entities.items()}
        self._cluster = isinstance(client, RedisCluster)
        self._reads = sharded.ShardedPipeline(client) if isinstance(client, RedisCluster) else resp.Pipeline.of(client)
        """Where reads go: the single server's connection, or a cluster's, one per primary (:mod:`features.sharded`)."""
        self._agent_args: dict[str, bytes] = {}
        self._agent_routes: dict[str, sharded.Routed] = {}
        """Each agent's snapshot GET, routed by its slot, kept (on a cluster) as ``_agent_args`` is on one server."""
        self._prefixes = {p: f"{namespace}:{p}:{{".encode() for e in registry.entities for p in (e, f"events:{e}")}
        self._apply_sha: str | None = None
        self._has_state = {e: bool(k.events.features) for e, k in self._kinds.items()}
        self._tag_range = [b"0", str(TAG_BYTES - 1).encode()]
        """GETRANGE's bounds of a state's tag alone: whether an entity has event state, for a read without it."""

    def layout(self, entity: str) -> EventLayout:
        """How ``entity``'s event features are kept in its event-state value."""
        return self._kinds[entity].events

    def packed(self, entity: str) -> PackedLayout:
        """How ``entity``'s snapshot features are packed."""
        return self._kinds[entity].packed

    def key(self, entity: str, entity_id: str) -> str:
        """The packed snapshot value of ``entity_id``; the id is the cluster hash tag."""
        return f"{self._namespace}:{entity}:{{{entity_id}}}"

    def state_key(self, entity: str, entity_id: str) -> str:
        """The event-state value of ``entity_id`` (same hash tag as its snapshot)."""
        return f"{self._namespace}:events:{entity}:{{{entity_id}}}"

    def seen_key(self, entity: str, entity_id: str) -> str:
        """The sorted set of event ids already applied to ``entity_id`` (same hash tag as its features)."""
        return f"{self._namespace}:seen:{entity}:{{{entity_id}}}"

    def identity_key(self, identifier: Identifier) -> str:
        """The key naming the customer an identifier belongs to (the identifier is its own hash tag)."""
        return f"{self._namespace}:id:{{{identifier}}}"

    def identities_key(self, customer_id: str) -> str:
        """The set of a customer's identifiers, so an erasure finds them (same hash tag as the customer)."""
        return f"{self._namespace}:ids:customer:{{{customer_id}}}"

    def contact_key(self, customer_id: str) -> str:
        """The hash of a customer's contact-policy state (presentations per action and day, the last decline and
        acceptance of each action: ``service/contact_policy.py``); same hash tag as the customer, so a recommend
        reads it in the same round trip as the features, and an erasure deletes it."""
        return f"{self._namespace}:contacts:customer:{{{customer_id}}}"

    def decisions_key(self, customer_id: str) -> str:
        """The set of the ids of a customer's remembered decisions (same hash tag as the customer), so an erasure
        finds their records."""
        return f"{self._namespace}:decisions:customer:{{{customer_id}}}"

    def decision_key(self, decision_id: str) -> bytes:
        """A remembered decision's record (``service/decision_records.py``; the decision id is its hash tag)."""
        return f"{self._namespace}:decision:{{{decision_id}}}".encode()

    def feedback_key(self, decision_id: str) -> bytes:
        """The answers recorded for a remembered decision (same hash tag as its record)."""
        return f"{self._namespace}:feedback:{{{decision_id}}}".encode()

    async def link(self, customer_id: str, identifiers: Sequence[Identifier]) -> dict[Identifier, str | None]:
        """Point each identifier at ``customer_id``; returns who held each before (None: nobody).

        An identifier names one customer at a time: linking it to a new one (a phone number given up and
        reassigned) takes it from the previous holder, whose set forgets it.
        """
        with map_errors():
            pipe = self._client.pipeline(transaction=False)
            for identifier in identifiers:
                pipe.set(self.identity_key(identifier), customer_id, get=True)
            before = [b.decode() if isinstance(b, bytes) else b for b in await pipe.execute()]
            pipe = self._client.pipeline(transaction=False)
            if identifiers:
                pipe.sadd(self.identities_key(customer_id), *(str(i) for i in identifiers))
            for identifier, holder in zip(identifiers, before, strict=True):
                if holder is not None and holder != customer_id:
                    pipe.srem(self.identities_key(holder), str(identifier))
            await pipe.execute()
        return dict(zip(identifiers, before, strict=True))

    async def unlink(self, customer_id: str, identifiers: Sequence[Identifier]) -> int:
        """Remove identifiers from ``customer_id`` (those held by someone else are left alone); how many went."""
        with map_errors():
            pipe = self._client.pipeline(transaction=False)
            for identifier in identifiers:
                pipe.eval(_DELETE_IF_OWNER, 1, self.identity_key(identifier), customer_id)
            if identifiers:
                pipe.srem(self.identities_key(customer_id), *(str(i) for i in identifiers))
            replies = await pipe.execute()
        return sum(int(r) for r in replies[: len(identifiers)])

    async def identifiers(self, customer_id: str) -> list[Identifier]:
        """The identifiers linked to ``customer_id``, sorted."""
        with map_errors():
            members = await self._client.smembers(self.identities_key(customer_id))
        parsed = [(m.decode() if isinstance(m, bytes) else m).split(":", 1) for m in members]
        return sorted(Identifier(kind, value) for kind, value in parsed)  # type: ignore[arg-type]

    async def resolve(self, identifier: Identifier) -> str | None:
        """The customer ``identifier`` belongs to, or None: never a guess."""
        key = self.identity_key(identifier).encode()
        with map_errors():
            if isinstance(self._reads, sharded.ShardedPipeline):
                (owner,) = resp.raise_errors(await self._reads.exchange([sharded.routed([b"GET", key])]))
            else:
                owner = await self._client.get(key)
        return owner.decode() if isinstance(owner, bytes) else cast(str | None, owner)

    async def aclose(self) -> None:
        """Close the connection reads, event batches and MSETs travel on (the client passed in is its owner's to
        close)."""
        await self._reads.aclose()

    async def ping(self) -> None:
        """Raise :class:`OnlineStoreUnavailable` unless Redis answers."""
        with map_errors():
            await self._client.ping()

    async def read(
        self,
        customer: str | Identifier,
        agent_ids: Sequence[str] = (),
        *,
        now: float | None = None,
        events: bool = True,
    ) -> tuple[EntityVector, EntityBatch]:
        """The customer's vector and the agents' batch as of ``now`` (the clock by default), in one round trip.

        ``customer`` is our customer id or an :class:`~features.identity.Identifier`. An identifier is resolved
        in the same round trip as the read on a single server (one script); a cluster cannot derive the
        customer's keys inside a script, so there it costs a second round trip. The vector of an identifier
        nobody holds is a cold start whose ``entity_id`` is empty.

        ``events=False`` leaves the customer's event state unread but for its tag: its event features read as
        not known (defaults) and their views as never observed, while ``found`` still counts event state. A
        reader that needs only snapshot views (``GET /v1/customers/{id}/features?view=customer_profile``) then
        moves and decodes the snapshot's few hundred bytes and no event state.
        """
        customer_vector, agents, _ = await self.read_with(customer, agent_ids, (), now=now, events=events)
        return customer_vector, agents

    async def read_with(
        self,
        customer: str | Identifier,
        agent_ids: Sequence[str],
        also: Sequence[Sequence[bytes]],
        *,
        now: float | None = None,
        events: bool = True,
    ) -> tuple[EntityVector, EntityBatch, list[object]]:
        """:meth:`read`, with more commands sent in the same round trip, and their replies.

        ``also`` are commands (name, then arguments) on keys of the customer's own hash tag (such as
        :meth:`contact_key`), so on a cluster they go to the customer's shard with its GETs and a read still
        costs one round trip. ``customer`` must then be a customer id: an identifier's keys are not known before
        it is resolved.
        """
        if also and not isinstance(customer, str):
            raise ValueError("commands sent with a read need the customer id, not an identifier")
        now = time.time() if now is None else now
        kind, agent = self._kinds["customer"], self._kinds["agent"]
        customer_id, replies = await self._replies(customer, agent_ids, events, also)
        extra = replies[len(replies) - len(also) :] if also else []
        if also:
            del replies[len(replies) - len(also) :]
        states = [replies[1]] if kind.events.features else None
        customers = kind.decode([customer_id], [replies[0]], states, now, events=events)  # type: ignore[list-item, arg-type]
        rest = replies[2 if states else 1 :]
        if not agent_ids:
            return customers[0], agent.empty, extra
        blobs = rest if self._cluster else rest[0]
        agent_states = rest[-len(agent_ids) :] if agent.events.features else None
        agents = agent.decode(agent_ids, blobs, agent_states, now)  # type: ignore[arg-type]
        return customers[0], agents, extra

    async def read_view(self, customer: str | Identifier, view: str, *, now: float | None = None) -> ViewVector:
        """One snapshot view of the customer as of ``now``: :meth:`read`'s answer for the view's features (with
        ``events=False``), decoded without building the whole vector (see :mod:`features.view_read`)."""
        now = time.time() if now is None else now
        kind = self._kinds["customer"]
        decoder = kind.view_decoders.get(view)
        if decoder is None:
            raise UnknownFeatureError(f"{view!r} is not a snapshot view of customer")
        customer_id, replies = await self._replies(customer, (), events=False)
        state = cast(bytes | None, replies[1]) if kind.events.features else None
        return decoder.decode(customer_id, cast(bytes | None, replies[0]), state, now)

    async def _replies(
        self, customer: str | Identifier, agent_ids: Sequence[str], events: bool, also: Sequence[Sequence[bytes]] = ()
    ) -> tuple[str, list[object]]:
        """The customer's id (resolved when ``customer`` is an identifier; "" for nobody) and the read's replies:
        the packed value, the event state (or its tag) when the kind has one, then the agents', then ``also``'s."""
        customer_id = customer if isinstance(customer, str) else ""
        with map_errors():
            if isinstance(customer, Identifier) and self._cluster:
                customer_id = await self.resolve(customer) or ""
                customer = customer_id
            reads = self._reads
            if isinstance(reads, sharded.ShardedPipeline):
                return customer_id, await self._read_cluster(reads, customer_id, agent_ids, events, also)
            replies = await self._read_single(reads, customer, agent_ids, events, also)
        if isinstance(customer, Identifier):
            resolved, packed, state = cast(list[bytes | None], replies[0])
            customer_id = resolved.decode() if resolved else ""
            replies[0:1] = [packed, state] if self._has_state["customer"] else [packed]
        return customer_id, replies

    async def _read_single(
        self,
        reads: resp.Pipeline,
        customer: str | Identifier,
        agent_ids: Sequence[str],
        events: bool,
        also: Sequence[Sequence[bytes]] = (),
    ) -> list[object]:
        """GET (+ GET of the event state, or of its tag alone) for the customer and one MGET (+ GETs) for the
        agents, sent as one write.

        For an identifier the customer's part is one EVAL (resolve, GET, GET) whose reply comes first.
        """
        customers, agents = self._has_state["customer"], self._has_state["agent"]
        if isinstance(customer, Identifier):
            # EVAL, not EVALSHA: the server caches the compiled script by its hash either way, and EVAL cannot
            # meet a server that forgot it after a restart.
            key = self.identity_key(customer).encode()
            what = (b"all" if events else b"tag") if customers else b"none"
            prefixes = [self._prefixes["customer"], self._prefixes["events:customer"], what]
            commands = [resp.command(b"EVAL", [_RESOLVE_AND_READ_BYTES, b"1", key, *prefixes])]
        else:
            commands = [resp.command(b"GET", [self._key_bytes("customer", customer)])]
            if customers and events:
                commands.append(resp.command(b"GET", [self._key_bytes("events:customer", customer)]))
            elif customers:
                commands.append(
                    resp.command(b"GETRANGE", [self._key_bytes("events:customer", customer), *self._tag_range])
                )
        if agent_ids:
            kept = self._agent_args  # looked up inline: a method call per agent costs more than the lookup
            commands.append(resp.command_of_args(b"MGET", [kept.get(a) or self._agent_key_arg(a) for a in agent_ids]))
            if agents:
                commands += [resp.command(b"GET", [self._key_bytes("events:agent", a)]) for a in agent_ids]
        commands += [resp.command(c[0], c[1:]) for c in also]
        return await reads.exchange(b"".join(commands), len(commands))

    async def _read_cluster(
        self,
        reads: sharded.ShardedPipeline,
        customer_id: str,
        agent_ids: Sequence[str],
        events: bool,
        also: Sequence[Sequence[bytes]] = (),
    ) -> list[object]:
        """The same reads as :meth:`_read_single`, each agent asked with its own GET (MGET cannot span slots), sent
        to their slots' primaries at once (:mod:`features.sharded`).

        ``also`` is routed with the customer's keys (their slot), as its commands are on keys of the customer's hash
        tag; one that is not is redirected by its node and sent again through redis-py, so it still gets its answer.
        """
        key = self._key_bytes("customer", customer_id)
        slot = key_slot(key)
        commands = [sharded.routed([b"GET", key], slot=slot)]
        if self._has_state["customer"]:
            state_key = self._key_bytes("events:customer", customer_id)
            command = [b"GET", state_key] if events else [b"GETRANGE", state_key, *self._tag_range]
            commands.append(sharded.routed(command, slot=slot))
        if agent_ids:
            kept = self._agent_routes  # looked up inline, as in _read_single
            commands += [kept.get(a) or self._agent_route(a) for a in agent_ids]
            if self._has_state["agent"]:
                commands += [sharded.routed([b"GET", self._key_bytes("events:agent", a)]) for a in agent_ids]
        commands += [sharded.routed(c, slot=slot) for c in also]
        return resp.raise_errors(await reads.exchange(commands))

    def _agent_route(self, agent_id: str) -> sharded.Routed:
        """An agent's snapshot GET routed by its slot, kept: the same few hundred agents are asked on every assign."""
        route = self._agent_routes.get(agent_id)
        if route is None:
            if len(self._agent_routes) >= _AGENT_ARGS_KEPT:
                self._agent_routes.clear()
            route = self._agent_routes[agent_id] = sharded.routed([b"GET", self._key_bytes("agent", agent_id)])
        return route

    async def execute(self, commands: Sequence[Sequence[bytes]]) -> list[object]:
        """Run ``commands`` (name, then arguments) in one round trip and return their replies.

        They travel as reads do (so a write sent this way reaches Redis before any read sent after it): on the
        single server's connection, or on a cluster each to its key's primary (:func:`features.sharded.routed`
        says which key routes it; a command's keys share a slot, as a script's must). An error reply is raised
        after every reply was read; Redis unavailable raises :class:`OnlineStoreUnavailable`.
        """
        if not commands:
            return []
        with map_errors():
            reads = self._reads
            if isinstance(reads, sharded.ShardedPipeline):
                return resp.raise_errors(await reads.exchange([sharded.routed(c) for c in commands]))
            payload = b"".join(resp.command(c[0], c[1:]) for c in commands)
            return await reads.exchange(payload, len(commands))

    def _agent_key_arg(self, agent_id: str) -> bytes:
        """An agent's key as a RESP argument, kept: the same few hundred agents are asked on every assign."""
        arg = self._agent_args.get(agent_id)
        if arg is None:
            if len(self._agent_args) >= _AGENT_ARGS_KEPT:
                self._agent_args.clear()
            arg = self._agent_args[agent_id] = resp.argument(self._key_bytes("agent", agent_id))
        return arg

    def _key_bytes(self, prefix: str, entity_id: str) -> bytes:
        return b"%s%s}" % (self._prefixes[prefix], entity_id.encode())

    async def apply_events(self, entity: str, events: Sequence[Event], *, now: float | None = None) -> list[str]:
        """Apply each event to its entity's state, once: ``applied``, ``duplicate``, ``too_old`` or ``erased``
        (the entity was erased: nothing of the event is kept) per event.

        Events older than the horizon the features look back over cannot change any feature, and their ids
        are no longer remembered, so they are refused rather than risk counting one twice; the timeless types
        (a consent change) have no horizon: applied again, an old one changes nothing, since only a newer event
        replaces the newest. One round trip: on a single server one script call for the whole batch; on a
        cluster one call per entity (a script may only touch keys of one slot), pipelined.
        """
        layout = self._kinds[entity].events
        horizon_s = (now if now is not None else time.time()) - layout.horizon_days * DAY_SECONDS
        recent = [e.occurred_at > horizon_s or e.type in layout.timeless for e in events]
        fresh = [e for e, r in zip(events, recent, strict=True) if r]
        applied: list[int] = []
        if fresh:
            applied = await self._run_apply(entity, fresh, layout, horizon_s)
        results = iter(applied)
        statuses = [_STATUS[next(results)] if r else "too_old" for r in recent]
        await self._apply_identity([e for e, s in zip(events, statuses, strict=True) if s == "applied"])
        return statuses

    async def _apply_identity(self, events: Sequence[Event]) -> None:
        """Link and unlink the identifiers of the identity events just applied (once each, oldest first).

        Their ids went through the seen-set with the others, so a retried identity event changes nothing.
        """
        for event in sorted((e for e in events if e.type in (LINKED, UNLINKED)), key=lambda e: e.occurred_at):
            identifier = Identifier(event.fields["identifier_kind"], str(event.fields["identifier"]))  # type: ignore[arg-type]
            if event.type == LINKED:
                await self.link(event.entity_id, [identifier])
            else:
                await self.unlink(event.entity_id, [identifier])

    def _apply_calls(self, entity: str, events: list[Event], layout: EventLayout, horizon_s: float) -> list[_Call]:
        """(KEYS, ARGV, positions in ``events``) of each script call: one in all, or one per entity on a cluster."""
        groups: dict[str, list[int]] = {}
        for position, event in enumerate(events):
            groups.setdefault(event.entity_id if self._cluster else "", []).append(position)
        head = [
            repr(horizon_s).encode(),
            layout.tag,
            str(layout.ids_at).encode(),
            str(layout.id_slots).encode(),
            bytes(max(layout.ids_at, ID_BYTES)),
            ERASED,
            layout.compaction,
        ]
        calls = []
        for positions in groups.values():
            keys: list[bytes] = []
            slot: dict[str, bytes] = {}
            argv = list(head)
            for position in positions:
                event = events[position]
                index = slot.get(event.entity_id)
                if index is None:
                    keys += [self._key_bytes(f"events:{entity}", event.entity_id), self._seen_key_bytes(entity, event)]
                    index = slot[event.entity_id] = str(len(slot) + 1).encode()
                argv += [index, event.event_id.encode(), repr(event.occurred_at).encode(), layout.changes(event)]
            calls.append((keys, argv, positions))
        return calls

    def _seen_key_bytes(self, entity: str, event: Event) -> bytes:
        return self.seen_key(entity, event.entity_id).encode()

    async def _run_apply(self, entity: str, events: list[Event], layout: EventLayout, horizon_s: float) -> list[int]:
        """The script calls of one batch; the script is loaded once, and again if the server lost it."""
        calls = self._apply_calls(entity, events, layout, horizon_s)
        for attempt in (1, 2):
            with map_errors():
                if self._apply_sha is None:
                    self._apply_sha = str(await self._client.script_load(APPLY_EVENTS))
                try:
                    replies = await self._evalsha_all(self._apply_sha, calls)
                except NoScriptError:
                    # A restarted or failed-over server forgot the script; nothing ran, so running again is safe.
                    self._apply_sha = None
                    if attempt == 2:
                        raise
                    continue
            results = [0] * len(events)
            for (_, _, positions), reply in zip(calls, replies, strict=True):
                for position, flag in zip(positions, reply, strict=True):
                    results[position] = int(flag)
            return results
        raise AssertionError("unreachable")

    async def _evalsha_all(self, sha: str, calls: list[_Call]) -> list[list[int]]:
        """Run every call in one round trip: encoded here and sent on the read connection on a single server
        (redis-py's generic encoder costs more than the script itself for a batch of a thousand events),
        through redis-py's pipeline on a cluster."""
        reads = self._reads
        if not isinstance(reads, resp.Pipeline):
            pipe = self._client.pipeline(transaction=False)
            for keys, argv, _ in calls:
                pipe.evalsha(sha, len(keys), *keys, *argv)
            return list(await pipe.execute())
        prefix = [sha.encode()]
        payload = b"".join(
            resp.command(b"EVALSHA", [*prefix, str(len(keys)).encode(), *keys, *argv]) for keys, argv, _ in calls
        )
        return await reads.exchange(payload, len(calls))  # type: ignore[return-value]

    async def write_event_state(self, entity: str, ids: Sequence[str], values: Sequence[bytes]) -> int:
        """Overwrite the event state of each id with its value (materialization); returns how many.

        Whole values, as MSETs: a value is self-contained (its rings say which days they hold), so nothing of
        what was there before needs reading or keeping.
        """
        await self._set_all([self.state_key(entity, i) for i in ids], values)
        return len(ids)

    async def write_table(self, entity: str, table: pa.Table, observed_at: np.ndarray) -> int:
        """Write every row of a snapshot table whole (all its views stamped ``observed_at``); returns how many.

        The materialization path: rows are packed column-wise by numpy and sent as MSETs.
        """
        kind = self._kinds[entity]
        ids = table.column(kind.schema.join_key).cast(pa.string()).to_pylist()
        values = kind.packed.pack_table(table, observed_at)
        await self._set_all([self.key(entity, i) for i in ids], values)
        return len(ids)

    async def _set_all(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        """SET every key, in one round trip: MSETs of :data:`_MSET_ROWS`, encoded here on a single server (redis-py's
        generic encoder cost more than building the values: 0.35 s of event-state materialization's 1.5 s for
        100,000 entities), a pipeline of SETs through redis-py on a cluster, where one MSET cannot span slots."""
        reads = self._reads
        if not isinstance(reads, resp.Pipeline):
            pipe = self._client.pipeline(transaction=False)
            for key, value in zip(keys, values, strict=True):
                pipe.set(key, value)
            with map_errors():
                await pipe.execute()
            return
        # The payload is one join of small headers and the values themselves: each value's bytes copied once.
        parts: list[bytes] = []
        for start in range(0, len(keys), _MSET_ROWS):
            chunk = range(start, min(start + _MSET_ROWS, len(keys)))
            parts.append(b"*%d\r\n$4\r\nMSET\r\n" % (2 * len(chunk) + 1))
            for i in chunk:
                name, value = keys[i].encode(), values[i]
                parts += (b"$%d\r\n%s\r\n$%d\r\n" % (len(name), name, len(value)), value, b"\r\n")
        with map_errors():
            await reads.exchange(b"".join(parts), -(-len(keys) // _MSET_ROWS))

    async def write(
        self,
        entity: str,
        rows: Sequence[Mapping[str, object]],
        *,
        observed_at: Sequence[float],
    ) -> int:
        """Write the features each row carries and stamp their views ``observed_at``; the rest keep their values.

        A None value is stored missing, so a value that became unknown is not served stale. Names the
        contract does not declare are ignored; an event or derived feature is refused (ValueError naming it):
        events change those, and a write that quietly did nothing would leave the caller believing it had.
        Returns the number of entities written.
        """
        kind = self._kinds[entity]
        stored, declared = set(kind.schema.snapshot_names), kind.schema.index
        for row in rows:
            if refused := sorted(n for n in row if n in declared and n not in stored):
                raise ValueError(f"{', '.join(refused)}: not a stored snapshot feature of {entity!r}; events change it")
        pipe = self._client.pipeline(transaction=False)
        empty = kind.packed.empty
        for row, ts in zip(rows, observed_at, strict=True):
            segments = kind.packed.pack_segments(row, float(ts))
            if segments:
                argv = [empty, *(part for offset, data in segments for part in (str(offset), data))]
                pipe.eval(_WRITE_SEGMENTS, 1, self.key(entity, str(row[kind.schema.join_key])), *argv)
        with map_errors():
            await pipe.execute()
        return len(rows)

    async def erase(self, entity: str, entity_id: str) -> bool:
        """Delete everything the online store keeps for ``entity_id`` (right to erasure); True if anything was there.

        That is the packed snapshot, the event state, the ids of the events applied, the entity's events still in
        the events stream and its dead letters (:mod:`features.event_stream_keys`) and, for a customer, the
        identifiers linked to them, the contact-policy state, the decisions remembered for them with their
        feedback, and their entries in the decision log (their feature vectors as each decision scored them). A
        component that keys more state by the entity id must delete it here too, so an erasure cannot
        miss it.
        """
        linked = await self.identifiers(entity_id) if entity == "customer" else []
        decisions = await self._decision_ids(entity_id) if entity == "customer" else []
        with map_errors():
            # Separate commands, not one multi-key DEL: on a cluster the keys share a slot, but a plain client
            # pipeline keeps this the same code for both. The event state becomes the tombstone, not nothing,
            # so a late or replayed event cannot bring the entity back (the apply script refuses it).
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(self.key(entity, entity_id))
            pipe.set(self.state_key(entity, entity_id), ERASED, get=True)
            pipe.delete(self.seen_key(entity, entity_id))
            pipe.delete(f"{self._namespace}:{_LEGACY_STATE}:{entity}:{{{entity_id}}}")
            if entity == "customer":
                pipe.delete(self.contact_key(entity_id))
                for decision_id in decisions:  # each under its own hash tag: one DEL per key, so per shard
                    pipe.delete(self.decision_key(decision_id))
                    pipe.delete(self.feedback_key(decision_id))
                pipe.delete(self.decisions_key(entity_id))
                for kind in decision_log_keys.KINDS:
                    stream = decision_log_keys.stream_key(self._namespace, kind)
                    entries = decision_log_keys.customer_entries_key(self._namespace, kind, entity_id)
                    pipe.eval(decision_log_keys.ERASE, 2, stream, entries)  # type: ignore[arg-type]
            snapshot, state, _, legacy, *contacts = await pipe.execute()
        if linked:
            await self.unlink(entity_id, linked)
        # After the tombstone: an event the API applies from now on is refused, so never appended to the stream.
        streamed = await self._erase_streamed(entity, entity_id)
        return bool(snapshot or state not in (None, ERASED) or legacy or linked or streamed or any(contacts))

    async def _erase_streamed(self, entity: str, entity_id: str) -> int:
        """Delete ``entity_id``'s entries from the events stream and its dead letters, a slice per call; how many."""
        join_key = self._kinds[entity].schema.join_key
        deleted = 0
        for stream in (
            event_stream_keys.stream_key(self._namespace),
            event_stream_keys.dead_letter_key(self._namespace),
        ):
            start = "-"
            while start:
                with map_errors():
                    reply = await self._client.eval(
                        event_stream_keys.ERASE,  # type: ignore[arg-type]
                        1,
                        stream,
                        start,
                        str(event_stream_keys.ERASE_SLICE),
                        entity_id,
                        join_key,
                        event_stream_keys.EVENT_FIELD,
                    )
                start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
                deleted += int(reply[1])
        return deleted

    async def _decision_ids(self, customer_id: str) -> list[str]:
        with map_errors():
            members = await self._client.smembers(self.decisions_key(customer_id))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

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
        with map_errors():
            await self._client.eval(_REPLACE_SET, 1, self.queue_key(queue), *agent_ids)

    async def queue_members(self, queue: str) -> list[str]:
        """The agent ids of ``queue``, sorted (empty when the queue is unknown)."""
        with map_errors():
            members = await self._client.smembers(self.queue_key(queue))
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def count(self, entity: str) -> int:
        """How many entities of this kind the store holds (a SCAN: admin use, not the hot path).

        An entity counts once whether it has a snapshot, event state or both; an erased one's tombstone does
        not count. On a cluster redis-py's ``scan_iter`` runs the SCAN on every primary, so the count covers
        all shards.
        """
        ids: set[bytes] = set()
        with map_errors():
            async for key in self._client.scan_iter(match=self.key(entity, "*"), count=1000):
                ids.add(key[key.rindex(b"{") :])
            states = [key async for key in self._client.scan_iter(match=self.state_key(entity, "*"), count=1000)]
            pipe = self._client.pipeline(transaction=False)
            for key in states:
                pipe.strlen(key)
            lengths = await pipe.execute() if states else []
        ids.update(key[key.rindex(b"{") :] for key, n in zip(states, lengths, strict=True) if n != len(ERASED))
        return len(ids)

    async def sample_ids(self, entity: str, limit: int | None = None) -> list[str]:
        """Up to ``limit`` ids of stored entities (all when None), in SCAN order: admin use, not the hot path.

        SCAN walks the server's hash table, so the first ids it returns are in no business order (not the
        oldest, not sorted): a fair sample for quality checks without reading every key.
        """
        prefix = self.key(entity, "")[:-1]  # up to and including the hash tag's opening brace
        ids: list[str] = []
        with map_errors():
            async for key in self._client.scan_iter(match=f"{prefix}*", count=1000):
                text = key.decode() if isinstance(key, bytes) else key
                ids.append(text[len(prefix) : -1])
                if limit is not None and len(ids) >= limit:
                    break
        return ids
