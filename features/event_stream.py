"""Events through a Redis Stream: producers append, a consumer group applies them online and archives them.

The stream is ``{namespace}:events``; each entry is one event, as the contract's JSON, in the field ``event``
(``POST /v1/events`` appends the events it applied there too, with the time it placed them at). A consumer
(:class:`StreamConsumer`, run by ``nba events consume``) reads a batch as a member of a consumer group and:

1. validates each entry with the contract's event models; an invalid one goes to the dead-letter stream
   ``{namespace}:events:dead`` with the error naming the field and the original payload;
2. applies the valid ones to the online store (:meth:`OnlineStore.apply_events`: idempotent by event id);
3. archives those applied, and those already applied (duplicates), to the offline store as one parquet part
   (every ``compact_every`` parts, the small ones are merged into one);
4. acknowledges the batch.

Nothing is acknowledged before it is both online and archived, so a consumer killed at any point loses
nothing: its unacknowledged entries are redelivered when it restarts (it first re-reads its own pending
entries) or claimed by another consumer once they sat idle too long (``XAUTOCLAIM``). Counting twice is
impossible for the same reason a retried POST counts once: the online apply answers ``duplicate``, and the
archive's readers keep one row per event. Duplicates are archived on purpose, so a crash between apply and
archive still ends with the event archived.

The consumer also trims the stream behind every consumer group (``XTRIM MINID``), so entries are dropped
only once every group has acknowledged them. An erasure deletes the entity's entries it has not trimmed yet
(:mod:`features.event_stream_keys`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from features.event_archive import EventArchive
from features.event_state import Event
from features.event_stream_keys import EVENT_FIELD, dead_letter_key, stream_key
from features.events import event_adapter, to_event, to_payload, validation_message
from features.online_store import OnlineStore, map_errors
from features.redis_client import OnlineClient
from features.registry import Registry
from features.stream_group import Counts, Entry, GroupConsumer, entry_seconds, text

DEFAULT_GROUP = "nba-ingest"
DEAD_LETTER_MAX_LEN = 100_000
"""Dead letters kept at most (approximately): enough to inspect a bad producer, not a second event store."""


class EventPublisher:
    """Appends events to the stream: the API after applying them, or any producer through ``nba events publish``."""

    def __init__(self, client: OnlineClient, registry: Registry, *, namespace: str, max_len: int) -> None:
        self._client = client
        self._registry = registry
        self._stream = stream_key(namespace)
        self._max_len = max_len

    async def publish(self, payloads: Sequence[bytes | str]) -> list[str]:
        """Append each payload (an event's JSON, not checked here: the consumer validates) in one round trip.

        The stream is capped at about ``max_len`` entries (``XADD MAXLEN ~``): a safety valve for a consumer
        that stays down, since past it the oldest entries are dropped before they are archived.
        """
        if not payloads:
            return []
        pipe = self._client.pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(self._stream, {EVENT_FIELD: payload}, maxlen=self._max_len, approximate=True)
        with map_errors():
            ids = await pipe.execute()
        return [text(i) for i in ids]

    async def publish_events(self, events: Sequence[tuple[str, Event]]) -> list[str]:
        """Append validated events (entity, event) in the contract's JSON, ``occurred_at`` as they were placed."""
        return await self.publish([to_json(to_payload(entity, event, self._registry)) for entity, event in events])


@dataclass
class ConsumeStats(Counts):
    """What a consumer did with the entries it read."""

    applied: int = 0
    duplicates: int = 0
    too_old: int = 0
    erased: int = 0
    dead: int = 0


class StreamConsumer(GroupConsumer[ConsumeStats]):
    """One member of a consumer group on the events stream; see the module docstring for the loop."""

    def __init__(
        self,
        client: OnlineClient,
        store: OnlineStore,
        archive: EventArchive,
        registry: Registry,
        *,
        namespace: str,
        consumer: str,
        group: str = DEFAULT_GROUP,
        batch: int = 1_000,
        block_ms: int = 1_000,
        claim_idle_ms: int = 60_000,
        trim_every_s: float = 10.0,
        compact_every: int = 100,
    ) -> None:
        super().__init__(
            client,
            ConsumeStats,
            stream=stream_key(namespace),
            group=group,
            consumer=consumer,
            batch=batch,
            block_ms=block_ms,
            claim_idle_ms=claim_idle_ms,
            trim_every_s=trim_every_s,
        )
        self._store = store
        self._archive = archive
        self._registry = registry
        self._adapter = event_adapter(registry)
        self.dead_letters = dead_letter_key(namespace)
        self.compact_every = compact_every
        self._parts_written: dict[str, int] = {}

    async def process(self, entries: Sequence[Entry]) -> ConsumeStats:
        """Validate, apply, archive, then acknowledge ``entries``; returns what happened to them."""
        stats = ConsumeStats(entries=len(entries))
        if not entries:
            return stats
        dead: list[tuple[str, bytes, str]] = []
        by_entity: dict[str, list[Event]] = {}
        for entry_id, entry in entries:
            if entry is None:
                continue
            raw = entry.get(EVENT_FIELD.encode())
            if raw is None:
                dead.append((entry_id, b"", f"{EVENT_FIELD}: Field required (the entry has no {EVENT_FIELD!r} field)"))
                continue
            try:
                model: BaseModel = self._adapter.validate_json(raw)
            except ValidationError as exc:
                dead.append((entry_id, raw, validation_message(exc)))
                continue
            entity, event = to_event(model, self._registry, received_at=entry_seconds(entry_id))
            by_entity.setdefault(entity, []).append(event)
        for entity, events in by_entity.items():
            statuses = await self._store.apply_events(entity, events)
            stats.applied += statuses.count("applied")
            stats.duplicates += statuses.count("duplicate")
            stats.too_old += statuses.count("too_old")
            stats.erased += statuses.count("erased")
            kept = [e for e, s in zip(events, statuses, strict=True) if s in ("applied", "duplicate")]
            await asyncio.to_thread(self._archive_batch, entity, kept)
        stats.dead = len(dead)
        pipe = self._client.pipeline(transaction=False)
        for entry_id, raw, error in dead:
            fields_: dict[str, bytes | str] = {EVENT_FIELD: raw, "error": error, "entry_id": entry_id}
            pipe.xadd(self.dead_letters, fields_, maxlen=DEAD_LETTER_MAX_LEN, approximate=True)  # type: ignore[arg-type]
        pipe.xack(self.stream, self.group, *(entry_id for entry_id, _ in entries))
        with map_errors():
            await pipe.execute()
        return stats

    def _archive_batch(self, entity: str, events: list[Event]) -> None:
        """One part per batch, and every ``compact_every`` parts the small ones merged, so reads stay few files."""
        if self._archive.append(entity, events) is None:
            return
        written = self._parts_written.get(entity, 0) + 1
        if written >= self.compact_every:
            self._archive.compact(entity)
            written = 0
        self._parts_written[entity] = written
