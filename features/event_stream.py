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
only once every group has acknowledged them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from redis.exceptions import ResponseError

from features.errors import OnlineStoreUnavailable
from features.event_archive import EventArchive
from features.event_state import Event
from features.events import event_adapter, to_event, to_payload, validation_message
from features.online_store import OnlineStore, map_errors
from features.redis_client import OnlineClient
from features.registry import Registry

EVENT_FIELD = "event"
"""The field of a stream entry that holds the event's JSON."""
DEFAULT_GROUP = "nba-ingest"
DEAD_LETTER_MAX_LEN = 100_000
"""Dead letters kept at most (approximately): enough to inspect a bad producer, not a second event store."""
_FIRST_PAUSE_S, _LAST_PAUSE_S = 0.5, 30.0
"""How long the consumer waits after Redis failed, doubling while it stays down."""


def stream_key(namespace: str) -> str:
    """The stream producers append events to."""
    return f"{namespace}:events"


def dead_letter_key(namespace: str) -> str:
    """Where entries that failed validation go, with the error and the original payload."""
    return f"{namespace}:events:dead"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
        return [_text(i) for i in ids]

    async def publish_events(self, events: Sequence[tuple[str, Event]]) -> list[str]:
        """Append validated events (entity, event) in the contract's JSON, ``occurred_at`` as they were placed."""
        return await self.publish([to_json(to_payload(entity, event, self._registry)) for entity, event in events])


@dataclass
class ConsumeStats:
    """What a consumer did with the entries it read."""

    entries: int = 0
    applied: int = 0
    duplicates: int = 0
    too_old: int = 0
    erased: int = 0
    dead: int = 0

    def add(self, other: ConsumeStats) -> None:
        """Add ``other``'s counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


Entry = tuple[str, Mapping[bytes, bytes] | None]
"""A stream entry as read: its id and its fields (None when it was trimmed while pending)."""


class StreamConsumer:
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
        self._client = client
        self._store = store
        self._archive = archive
        self._registry = registry
        self._adapter = event_adapter(registry)
        self.stream = stream_key(namespace)
        self.dead_letters = dead_letter_key(namespace)
        self.group = group
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.trim_every_s = trim_every_s
        self.compact_every = compact_every
        self._parts_written: dict[str, int] = {}
        self._joined = False
        self._own_pending_done = False
        self._next_claim = 0.0
        self._claim_cursor = "0-0"
        self._next_trim = time.monotonic() + trim_every_s

    async def join(self) -> None:
        """Create the group (and the stream) if missing, reading from the stream's start so nothing is skipped.

        :meth:`poll` joins by itself; a producer may call this to make the group exist before its first event.
        """
        with map_errors():
            try:
                await self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._joined = True

    async def poll(self) -> ConsumeStats:
        """Read and process one batch: this consumer's own pending entries first, then idle ones, then new ones."""
        if not self._joined:
            await self.join()
        if not self._own_pending_done:
            entries = await self._read("0", block_ms=None)
            if entries:
                return await self.process(entries)
            self._own_pending_done = True
        if time.monotonic() >= self._next_claim:
            entries = await self._claim()
            if entries:
                return await self.process(entries)
        stats = await self.process(await self._read(">", block_ms=self.block_ms))
        if time.monotonic() >= self._next_trim:
            await self.trim()
        return stats

    async def _read(self, start: str, *, block_ms: int | None) -> list[Entry]:
        with map_errors():
            reply = await self._client.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=self.batch, block=block_ms
            )
        streams: Any = reply or []  # RESP2: [[stream, [(id, fields), ...]]]; None when the block timed out
        return [(_text(i), f) for _, entries in streams for i, f in entries]

    async def _claim(self) -> list[Entry]:
        """Entries other consumers read but left unacknowledged for ``claim_idle_ms`` (they likely died).

        Walks the pending list a batch at a time; once the walk is through it rests until the idle time has
        passed again, since nothing younger can be claimed.
        """
        with map_errors():
            reply = await self._client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                self.claim_idle_ms,
                start_id=self._claim_cursor,
                count=self.batch,
            )
        cursor, claimed, deleted = _text(reply[0]), reply[1], (reply[2] if len(reply) > 2 else [])
        self._claim_cursor = cursor
        if cursor == "0-0":
            self._next_claim = time.monotonic() + self.claim_idle_ms / 1000
        # Claimed entries trimmed meanwhile come back as bare ids: acknowledged as nothing-to-do.
        return [(_text(i), f) for i, f in claimed] + [(_text(i), None) for i in deleted]

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
            entity, event = to_event(model, self._registry, received_at=_entry_seconds(entry_id))
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

    async def trim(self) -> None:
        """Drop the entries every consumer group has acknowledged (``XTRIM MINID ~``), never one still owed.

        The floor is, over all groups, the oldest pending entry or, with none pending, the entry after the
        last one delivered; entries below it have been acknowledged by everybody.
        """
        self._next_trim = time.monotonic() + self.trim_every_s
        with map_errors():
            groups = await self._client.xinfo_groups(self.stream)
            floors: list[tuple[int, int]] = []
            for group in groups:
                name = _text(group["name"])
                delivered = _entry_id(_text(group["last-delivered-id"]))
                floors.append((delivered[0], delivered[1] + 1))
                if group["pending"]:
                    summary = await self._client.xpending(self.stream, name)
                    floors.append(_entry_id(_text(summary["min"])))
            if floors:
                low = min(floors)
                await self._client.xtrim(self.stream, minid=f"{low[0]}-{low[1]}", approximate=True)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        max_events: int | None = None,
        report: Callable[[ConsumeStats], None] | None = None,
        on_outage: Callable[[OnlineStoreUnavailable, float], None] | None = None,
    ) -> ConsumeStats:
        """Poll until ``stop`` is set or ``max_events`` entries were handled; ``report`` sees the running totals.

        ``stop`` is looked at between batches, so a stop finishes the batch in hand (acknowledged) and waits
        at most ``block_ms`` for a read. Redis going away does not end the loop: nothing of the failed batch
        was acknowledged, so after a pause (``on_outage`` is told how long) it re-reads its own pending entries
        and carries on; a worker that outlives a failover needs no supervisor to restart it.
        """
        total = ConsumeStats()
        pause = _FIRST_PAUSE_S
        while not stop.is_set() and (max_events is None or total.entries < max_events):
            try:
                total.add(await self.poll())
                pause = _FIRST_PAUSE_S
            except OnlineStoreUnavailable as exc:
                # A server that failed over or restarted may have lost the group, and what this consumer read
                # before the failure is pending: join again, and re-read its own pending entries first.
                self._joined = self._own_pending_done = False
                if on_outage is not None:
                    on_outage(exc, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, _LAST_PAUSE_S)
                continue
            if report is not None:
                report(total)
        return total


def _entry_id(text: str) -> tuple[int, int]:
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)


def _entry_seconds(entry_id: str) -> float:
    """When the entry was added: a stream id starts with the server's clock in milliseconds."""
    return _entry_id(entry_id)[0] / 1000
