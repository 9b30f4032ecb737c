"""Offline to online: copy each entity's latest snapshot and its event state into Redis.

Idempotent: running it twice leaves the same values. Both kinds of value are packed by numpy and sent as
MSETs of whole values, so throughput is bounded by Redis, not by round trips. Event state (day totals of
each ring and the newest event of each group, see :mod:`features.event_state`) is aggregated from the events
table by numpy over the columns the offline store hands over, not replayed event by event: it replaces what live
ingestion wrote, which is right only when the events table holds every event (the event sink keeps it so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import OfflineStoreError
from features.event_state import ID_BYTES, UNKNOWN_CATEGORY, EventLayout, LastValue, width_for
from features.identity import LINKED, UNLINKED, Identifier
from features.offline_store import EVENT_TIME_COLUMN, SCAN_ROWS, TIMESTAMP_COLUMN, EventScan, OfflineStore
from features.online_store import OnlineStore
from features.registry import DAY_SECONDS

Progress = Callable[[int, int], None]


async def materialize(
    offline: OfflineStore,
    online: OnlineStore,
    entity: str,
    *,
    as_of: datetime | None = None,
    since: datetime | None = None,
    batch_size: int = 20_000,
    progress: Progress | None = None,
) -> int:
    """Write every ``entity``'s latest snapshot (at or before ``as_of``); returns how many.

    ``since`` limits the copy to entities whose latest snapshot is at or after it (see
    :meth:`OfflineStore.latest`), so a nightly run sends only what changed. ``progress(done, total)`` is
    called after each batch, for a progress bar.
    """
    table = offline.latest(entity, as_of, since=since)
    total = table.num_rows
    done = 0
    for batch in table.to_batches(max_chunksize=batch_size):
        stamps = pc.divide(pc.cast(batch.column(TIMESTAMP_COLUMN).cast(pa.timestamp("us", "UTC")), pa.int64()), 1e6)
        done += await online.write_table(entity, pa.Table.from_batches([batch]), stamps.to_numpy())
        if progress is not None:
            progress(done, total)
    return done


class EventState:
    """The event state of every entity with events in the horizon: their ids, and their values packed on demand, a
    batch at a time. The values of 100,000 customers take 100 MB, and the rows they are cut from 94 MB more: packed
    a batch at a time, one batch's memory serves the next (peak RSS 820 MB instead of 940, and less CPU: fresh
    memory comes from the kernel zeroed)."""

    def __init__(
        self,
        ids: list[str],
        layout: EventLayout,
        rows: np.ndarray,
        event_ids: np.ndarray,
        owners: np.ndarray,
        records: np.ndarray,
    ) -> None:
        self.ids = ids
        self._layout, self._rows, self._ids, self._owners, self._records = layout, rows, event_ids, owners, records

    def values(self, start: int, end: int) -> list[bytes]:
        """The values of the entities ``ids[start:end]``."""
        first, last = np.searchsorted(self._owners, (start, end)).tolist()
        return self._layout.values(
            self._rows[start:end], self._ids[start:end], self._owners[first:last] - start, self._records[first:last]
        )


def event_state(
    offline: OfflineStore, layout: EventLayout, entity: str, *, now: float, scan_rows: int = SCAN_ROWS
) -> EventState:
    """The ids of every entity with events in the horizon as of ``now``, and each one's event-state value.

    The offline store hands over the events of the horizon a batch at a time (only the columns and types the
    layout reads; in file order when there are no archived parts, so a day's amounts are added in the order they
    were appended); each batch's events are sorted by type and only the columns their type carries are kept.
    numpy does the rest, each step one pass over a type's events: a series' day totals are sums over
    (entity, day) by ``np.bincount``, the newest event of a group is the greatest stamp per entity
    (``np.maximum.at``), ties broken by event id as the offline store orders them. No Python loop over events,
    and no aggregate evaluated over events of another type: the SQL this replaced filtered every event once per
    aggregate (about fifty of them) and cost four times this. Every ring is written holding the days up to
    today, so an entity's rings read the same whatever live events did before. ``scan_rows``: events per batch.
    """
    schema = offline.registry.entity(entity)
    until = datetime.fromtimestamp(now, UTC)
    since = datetime.fromtimestamp(now - layout.horizon_days * DAY_SECONDS, UTC)
    scans = offline.scan_events(
        entity,
        since=since,
        until=until,
        whole=layout.timeless,
        columns=["event_id", schema.join_key, EVENT_TIME_COLUMN, "type", *layout.columns],
        types=layout.events,
        batch_rows=scan_rows,
    )
    events = _Events(scans, schema.join_key, {e: ("event_id", *layout.columns_of(e)) for e in layout.events})
    rows = layout.empty_rows(len(events.ids))
    owners, records = _day_records(events, layout, rows, int(now // DAY_SECONDS))
    ids = _newest(events, layout, rows)
    return EventState(events.ids, layout, rows, ids, owners, records)


class _Events:
    """The events of the horizon by type: for each type, its events' entities (their rows: the ids in sorted
    order), stamps (epoch microseconds), UTC days and the columns that type carries, in the order read.

    Gathered a batch of the scan at a time, keeping of each event only its type's columns: the whole horizon's
    columns, most of them empty for any one event, took 218 MB for 2,000,000 events, all of it fresh memory the
    kernel had to fault in (as much time again as the aggregation itself); a batch's memory now serves the next.
    Each batch's entity ids are dictionary-encoded by pyarrow, and the batches' dictionaries unified at the end.
    """

    def __init__(self, scans: Iterable[EventScan], key: str, columns: dict[str, tuple[str, ...]]) -> None:
        types = tuple(columns)
        dictionaries: list[pa.Array] = []
        parts: list[list[tuple[np.ndarray, np.ndarray, pa.Table]]] = [[] for _ in types]
        schemas: list[pa.Schema] = []
        for scan in scans:
            table, keep = scan.table, scan.keep
            schemas = schemas or [table.select(columns[name]).schema for name in types]
            # Each type's index, through the column's dictionary: a dozen strings to look up, not every event's.
            kinds = table.column("type").combine_chunks()
            if not isinstance(kinds, pa.DictionaryArray):
                kinds = pc.dictionary_encode(kinds)
            labels = kinds.dictionary.to_pylist()
            index = np.array([types.index(t) if t in types else -1 for t in labels] + [-1], dtype=np.int16)
            kind = index[pc.fill_null(kinds.indices, len(labels)).to_numpy()]
            kind[~keep] = -1
            # The entity of each kept event: its code in this batch's dictionary, offset by the batches before.
            kept = np.flatnonzero(keep)
            entity = pc.dictionary_encode(table.column(key).combine_chunks().take(kept))
            local = np.zeros(table.num_rows, dtype=np.int64)
            local[kept] = entity.indices.to_numpy() + sum(map(len, dictionaries))
            dictionaries.append(entity.dictionary)
            # The events of each type, in the order read (a stable radix sort of small integers).
            by_kind = np.argsort(kind, kind="stable")
            bounds = np.searchsorted(kind[by_kind], np.arange(len(types) + 1)).tolist()
            stamps = pc.cast(table.column(EVENT_TIME_COLUMN), pa.timestamp("us", "UTC")).cast(pa.int64())
            stamp = pc.fill_null(stamps, 0).to_numpy()
            for k, name in enumerate(types):
                mine = by_kind[bounds[k] : bounds[k + 1]]
                if len(mine):
                    parts[k].append((local[mine], stamp[mine], table.select(columns[name]).take(mine)))
        # One dictionary for every batch: position i of the batches' dictionaries laid end to end is the entity
        # ``rank[joined.indices[i]]``, ranked as the ids sort.
        joined = pc.dictionary_encode(pa.concat_arrays(dictionaries) if dictionaries else pa.array([], pa.string()))
        order = pc.sort_indices(joined.dictionary)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order.to_numpy()] = np.arange(len(order))
        self.ids: list[str] = joined.dictionary.take(order).to_pylist()
        code = rank[joined.indices.to_numpy()]
        empty = np.empty(0, dtype=np.int64)
        self.of = [
            _OfType(
                code[np.concatenate([p[0] for p in mine] or [empty])],
                np.concatenate([p[1] for p in mine] or [empty]),
                pa.concat_tables([p[2] for p in mine]) if mine else _empty(schemas, k, columns[name]),
                len(self.ids),
            )
            for k, (mine, name) in enumerate(zip(parts, types, strict=True))
        ]


def _empty(schemas: list[pa.Schema], kind: int, columns: tuple[str, ...]) -> pa.Table:
    """The columns of a type without events: as the scan typed them, or strings when nothing was scanned."""
    return schemas[kind].empty_table() if schemas else pa.table({c: pa.array([], pa.string()) for c in columns})


class _OfType:
    """The events of one type: their entity rows, stamps, UTC days and columns (see :class:`_Events`)."""

    def __init__(self, row: np.ndarray, stamp: np.ndarray, table: pa.Table, entities: int) -> None:
        self.row, self.stamp, self.table, self._entities = row, stamp, table, entities
        self.day = stamp // (DAY_SECONDS * 1_000_000)
        # The event ids' bytes and offsets, so the newest events' ids are copied into the state by numpy: through
        # Python strings they took 0.15 s of 0.25 s for 100,000 customers.
        ids = table.column("event_id").combine_chunks().cast(pa.large_binary())
        _, offsets, data = ids.buffers()
        self._id_at = np.frombuffer(offsets, dtype=np.int64)[ids.offset : ids.offset + len(ids) + 1]
        self._id_bytes = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, dtype=np.uint8)

    def matching(self, where: tuple[tuple[str, bool | str], ...], field: str | None = None) -> np.ndarray:
        """The events (indices, ascending) with the ``where`` values (and ``field`` present), as SQL's ``=`` and
        ``IS NOT NULL`` pick them."""
        mask = np.ones(self.table.num_rows, dtype=bool)
        for name, value in where:
            column = self.table.column(name)
            mask &= pc.fill_null(pc.equal(column, pa.scalar(value)), False).to_numpy(zero_copy_only=False)
        if field is not None:
            mask &= pc.is_valid(self.table.column(field)).to_numpy(zero_copy_only=False)
        return np.flatnonzero(mask)

    def longest_id(self, events: np.ndarray) -> int:
        """The length in bytes of the longest id of ``events`` (0 for none)."""
        return int((self._id_at[events + 1] - self._id_at[events]).max(initial=0))

    def copy_ids(self, events: np.ndarray, into: np.ndarray, at: np.ndarray) -> None:
        """Copy the id of each of ``events`` into ``into`` (flat uint8, zeroed: ids stay NUL-padded, as the state
        keeps them) from byte offset ``at``."""
        starts = self._id_at[events]
        lengths = self._id_at[events + 1] - starts
        # One flat scatter of every id's bytes: a two-dimensional one into a strided view cost half again as much.
        column = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        into[np.repeat(at, lengths) + column] = self._id_bytes[np.repeat(starts, lengths) + column]

    def newest(self, events: np.ndarray) -> np.ndarray:
        """Of ``events`` (indices), the newest of each entity by ``(occurred_at, event_id)``, one per entity."""
        rows, stamps = self.row[events], self.stamp[events]
        best = np.full(self._entities, np.iinfo(np.int64).min)
        np.maximum.at(best, rows, stamps)
        newest = events[stamps == best[rows]]
        rows = self.row[newest]
        tied = np.bincount(rows, minlength=self._entities)[rows] > 1
        if not tied.any():
            return newest
        # Two events of one microsecond (rare): the greater event id wins, as the offline store orders them.
        candidates = newest[tied]
        order = pc.sort_indices(
            pa.table({"row": self.row[candidates], "id": self.table.column("event_id").take(candidates)}),
            sort_keys=[("row", "ascending"), ("id", "ascending")],
        ).to_numpy()
        candidates, rows = candidates[order], self.row[candidates][order]
        last = np.append(rows[1:] != rows[:-1], True)
        return np.concatenate((newest[~tied], candidates[last]))


def _day_records(events: _Events, layout: EventLayout, rows: np.ndarray, today: int) -> tuple[np.ndarray, np.ndarray]:
    """Each ring's header at ``today`` in ``rows``, and the day records of every series: one per (entity, day) with
    events of it in the ring's days. Returns each record's entity row (ascending) and its key and amount."""
    entities, records = [], []
    for ring in layout.rings:
        rows[:, ring.slot] = today
        of = events.of[layout.events.index(ring.event)]
        for index, series in enumerate(ring.series, start=ring.first):
            mine = of.matching(series.where, series.field)
            mine = mine[of.day[mine] > today - ring.days]
            day = of.day[mine]
            unique, which = np.unique(of.row[mine] * ring.days + day % ring.days, return_inverse=True)
            if series.field is not None and series.sums:
                amounts = of.table.column(series.field).take(mine).cast(pa.float64()).to_numpy()
            else:
                amounts = np.ones(len(mine))
            # Added in the order of the events, as live ingestion adds them; a day's total then reads as it did
            # when rings were stored whole.
            totals = np.bincount(which, weights=amounts, minlength=len(unique))
            days = np.empty(len(unique), dtype=np.int64)
            days[which] = day
            entities.append(unique // ring.days)
            records.append(np.column_stack((layout.record_key(days, index), totals)))
    if not records:
        return np.empty(0, dtype=np.int64), np.empty((0, 2))
    entity = np.concatenate(entities)
    order = np.argsort(entity, kind="stable")
    return entity[order], np.concatenate(records)[order]


def _newest(events: _Events, layout: EventLayout, rows: np.ndarray) -> np.ndarray:
    """Each group's newest event in ``rows`` (stamp, encoded fields); returns their ids (rows x
    :attr:`~EventLayout.id_slots` x ``w``, uint8), ``w`` the width of the longest (see :func:`width_for`)."""
    kept: list[tuple[int, _OfType, np.ndarray, np.ndarray]] = []
    longest = 0
    for g in layout.groups:
        of = events.of[layout.events.index(g.event)]
        newest = of.newest(of.matching(g.where))
        entity = of.row[newest]
        rows[entity, g.slot] = of.stamp[newest]
        if not g.values:
            continue
        longest = max(longest, of.longest_id(newest))
        if longest > ID_BYTES:
            raise OfflineStoreError(f"events table: an event_id of {g.event!r} is longer than {ID_BYTES} bytes")
        for i, value in enumerate(g.values, start=1):
            rows[entity, g.slot + i] = _encoded(value, of.table.column(value.field).take(newest))
        kept.append((g.id_index, of, newest, entity))
    w = width_for(longest)
    ids = np.zeros((rows.shape[0], layout.id_slots, w), dtype=np.uint8)
    for index, of, newest, entity in kept:
        of.copy_ids(newest, ids.reshape(-1), (entity * layout.id_slots + index) * w)
    return ids


def _encoded(value: LastValue, column: pa.ChunkedArray) -> np.ndarray:
    """:meth:`LastValue.encode` over a column: NaN where absent, the unknown-category mark where unlisted.

    A stored -0.0 is kept as 0.0 (adding 0.0 does it), as the point-in-time join's ``arg_max_null`` returns it."""
    encoded = value.feature.encode_column(column, apply_default=False) + 0.0
    if value.feature.dtype != "category":
        return encoded
    text = column.cast(pa.string())
    present = pc.fill_null(pc.not_equal(text, ""), False).to_numpy(zero_copy_only=False)
    return np.where(present & np.isnan(encoded), UNKNOWN_CATEGORY, encoded)


async def materialize_events(
    offline: OfflineStore,
    online: OnlineStore,
    entity: str,
    *,
    now: float | None = None,
    batch_size: int = 20_000,
    progress: Progress | None = None,
) -> int:
    """Write the event state of every ``entity`` with events in the horizon; returns how many."""
    layout = online.layout(entity)
    if not layout.features:
        return 0
    state = event_state(offline, layout, entity, now=time.time() if now is None else now)
    ids = state.ids
    for start in range(0, len(ids), batch_size):
        end = min(start + batch_size, len(ids))
        await online.write_event_state(entity, ids[start:end], state.values(start, end))
        if progress is not None:
            progress(end, len(ids))
    return len(ids)


async def materialize_identities(offline: OfflineStore, online: OnlineStore) -> int:
    """Point each identifier the events table mentions at its holder, as the newest identity event says.

    Per identifier the newest ``identifier_linked`` or ``identifier_unlinked`` (by time, then event id) wins,
    whoever it names; identity has no horizon, so the whole table is read. Returns the identifiers linked.
    """
    events = offline.events("customer")
    con = duckdb.connect()
    con.register("events", events)
    rows = con.sql(
        f"SELECT identifier_kind, identifier, arg_max(customer_id, (occurred_at, event_id)), "
        f"arg_max(type, (occurred_at, event_id)) FROM events WHERE type IN ('{LINKED}', '{UNLINKED}') GROUP BY ALL"
    ).fetchall()
    linked = 0
    for kind, value, holder, kind_of_event in rows:
        identifier = Identifier(kind, value)
        if kind_of_event == LINKED:
            await online.link(holder, [identifier])
            linked += 1
        else:
            await online.unlink(holder, [identifier])
    return linked
