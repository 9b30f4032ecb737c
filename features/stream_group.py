"""A member of a Redis Stream consumer group: the read, claim, acknowledge and trim loop, whatever an entry means.

Why one place: the event consumer (:mod:`features.event_stream`) and the shadow worker (``service.shadow``) must
both lose nothing and count nothing twice when killed at any moment, and both get it the same way. A subclass
says what to do with a batch (:meth:`GroupConsumer.process`) and acknowledges it only once its effects are
stored; the loop here reads this consumer's own pending entries first after a (re)start, claims entries other
consumers left pending too long (``XAUTOCLAIM``), then reads new ones, and trims the stream behind every group.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from redis.exceptions import ResponseError

from features.errors import OnlineStoreUnavailable
from features.online_store import map_errors
from features.redis_client import OnlineClient

_FIRST_PAUSE_S, _LAST_PAUSE_S = 0.5, 30.0
"""How long the consumer waits after Redis failed, doubling while it stays down."""

Entry = tuple[str, Mapping[bytes, bytes] | None]
"""A stream entry as read: its id and its fields (None when it was trimmed while pending)."""


@dataclass
class Counts:
    """What a consumer did with the entries it read; subclasses add their own counts."""

    entries: int = 0

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


C = TypeVar("C", bound=Counts)


def text(value: bytes | str) -> str:
    """A reply's bytes as text."""
    return value.decode() if isinstance(value, bytes) else value


class GroupConsumer(ABC, Generic[C]):
    """One member of consumer group ``group`` on ``stream``; see the module for the loop."""

    def __init__(
        self,
        client: OnlineClient,
        counts: type[C],
        *,
        stream: str,
        group: str,
        consumer: str,
        batch: int,
        block_ms: int,
        claim_idle_ms: int,
        trim_every_s: float,
    ) -> None:
        self._client = client
        self._counts = counts
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.trim_every_s = trim_every_s
        self._joined = False
        self._own_pending_done = False
        self._next_claim = 0.0
        self._claim_cursor = "0-0"
        self._next_trim = time.monotonic() + trim_every_s

    @abstractmethod
    async def process(self, entries: Sequence[Entry]) -> C:
        """Handle ``entries`` and acknowledge them once their effects are stored (never before)."""

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

    async def poll(self) -> C:
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
        return [(text(i), f) for _, entries in streams for i, f in entries]

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
        cursor, claimed, deleted = text(reply[0]), reply[1], (reply[2] if len(reply) > 2 else [])
        self._claim_cursor = cursor
        if cursor == "0-0":
            self._next_claim = time.monotonic() + self.claim_idle_ms / 1000
        # Claimed entries trimmed meanwhile come back as bare ids: acknowledged as nothing-to-do.
        return [(text(i), f) for i, f in claimed] + [(text(i), None) for i in deleted]

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
                name = text(group["name"])
                delivered = _entry_id(text(group["last-delivered-id"]))
                floors.append((delivered[0], delivered[1] + 1))
                if group["pending"]:
                    summary = await self._client.xpending(self.stream, name)
                    floors.append(_entry_id(text(summary["min"])))
            if floors:
                low = min(floors)
                await self._client.xtrim(self.stream, minid=f"{low[0]}-{low[1]}", approximate=True)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        max_entries: int | None = None,
        report: Callable[[C], None] | None = None,
        on_outage: Callable[[OnlineStoreUnavailable, float], None] | None = None,
    ) -> C:
        """Poll until ``stop`` is set or ``max_entries`` entries were handled; ``report`` sees the running totals.

        ``stop`` is looked at between batches, so a stop finishes the batch in hand (acknowledged) and waits
        at most ``block_ms`` for a read. Redis going away does not end the loop: nothing of the failed batch
        was acknowledged, so after a pause (``on_outage`` is told how long) it re-reads its own pending entries
        and carries on; a worker that outlives a failover needs no supervisor to restart it.
        """
        total = self._counts()
        pause = _FIRST_PAUSE_S
        while not stop.is_set() and (max_entries is None or total.entries < max_entries):
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


def _entry_id(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


def entry_seconds(entry_id: str) -> float:
    """When the entry was added: a stream id starts with the server's clock in milliseconds."""
    return _entry_id(entry_id)[0] / 1000
