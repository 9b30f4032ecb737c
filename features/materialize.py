"""Offline to online: copy each entity's latest snapshot and its event state into Redis.

Idempotent: running it twice leaves the same values. Both kinds of value are packed by numpy and sent as
MSETs of whole values, so throughput is bounded by Redis, not by round trips. Event state (rings of day
totals and the newest event of each group, see :mod:`features.event_state`) is aggregated from the events
table by DuckDB, not replayed event by event: it replaces what live ingestion wrote, which is right only
when the events table holds every event (the event sink keeps it so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import OfflineStoreError
from features.event_state import ID_BYTES, UNKNOWN_CATEGORY, EventLayout, LastValue
from features.identity import LINKED, UNLINKED, Identifier
from features.offline_store import TIMESTAMP_COLUMN, OfflineStore, matching_sql, sql_literal
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


def _all(conditions: list[str]) -> str:
    return " AND ".join(conditions) if conditions else "TRUE"


def event_state(
    offline: OfflineStore, layout: EventLayout, entity: str, *, now: float
) -> tuple[list[str], list[bytes]]:
    """The ids of every entity with events in the horizon as of ``now``, and each one's event-state value.

    Two DuckDB aggregations over the events (the day totals of every series, the newest event of every group)
    and numpy scatters their results into the slot matrix: no Python loop over events or entities. Every ring
    is written holding the days up to today, so an entity's rings read the same whatever live events did before.
    """
    key = offline.registry.entity(entity).join_key
    until = datetime.fromtimestamp(now, UTC)
    since = datetime.fromtimestamp(now - layout.horizon_days * DAY_SECONDS, UTC)
    con = duckdb.connect()
    con.sql("SET enable_progress_bar = false")
    con.register("events", offline.events(entity, since=since, until=until, ordered=False, whole=layout.timeless))
    types = ", ".join(sql_literal(t) for t in layout.events)
    con.sql(f"""
        CREATE TEMP TABLE ids AS
        SELECT {key}, CAST(row_number() OVER (ORDER BY {key}) - 1 AS BIGINT) AS _row
        FROM (SELECT DISTINCT {key} FROM events WHERE type IN ({types}))
    """)
    con.sql(f"""
        CREATE TEMP TABLE e AS
        SELECT ids._row, CAST(floor(epoch(occurred_at) / {DAY_SECONDS}) AS BIGINT) AS _day, events.*
        FROM events JOIN ids USING ({key})
    """)
    ids: list[str] = con.sql(f"SELECT {key} FROM ids ORDER BY _row").to_arrow_table().column(0).to_pylist()
    rows = layout.empty_rows(len(ids))
    today = int(now // DAY_SECONDS)
    _day_totals(con, layout, rows, today)
    tail = _newest(con, layout, rows)
    return ids, layout.values(rows, tail)


def _day_totals(con: duckdb.DuckDBPyConnection, layout: EventLayout, rows: np.ndarray, today: int) -> None:
    """Each ring's day totals in ``rows``: one row of the query per (entity, event type, day)."""
    if not layout.rings:
        return
    measures = []
    for ring in layout.rings:
        for s in ring.series:
            conditions = matching_sql(s.event, s.where)
            if s.field is not None:
                conditions.append(f"{s.field} IS NOT NULL")
            measure = f"sum({s.field})" if s.field is not None and s.sums else "count(*)"
            measures.append(f"CAST(coalesce({measure} FILTER (WHERE {_all(conditions)}), 0) AS DOUBLE)")
    oldest = " OR ".join(f"(type = {sql_literal(r.event)} AND _day > {today - r.days})" for r in layout.rings)
    found = con.sql(f"SELECT _row, type, _day, {', '.join(measures)} FROM e WHERE {oldest} GROUP BY ALL").fetchnumpy()
    entity, kind, day = found["_row"], found["type"], found["_day"]
    columns = list(found.values())[3:]
    at = 0
    for ring in layout.rings:
        rows[:, ring.slot] = today
        mine = (kind == ring.event) & (day > today - ring.days)
        slots = ring.slot + 1 + (day[mine] % ring.days) * len(ring.series)
        for c in range(len(ring.series)):
            rows[entity[mine], slots + c] = columns[at + c][mine]
        at += len(ring.series)


def _newest(con: duckdb.DuckDBPyConnection, layout: EventLayout, rows: np.ndarray) -> np.ndarray:
    """Each group's newest event in ``rows`` (stamp, encoded fields); returns the tail of their ids."""
    order = "(occurred_at, event_id)"
    selects = []
    for g in layout.groups:
        matching = f"FILTER (WHERE {_all(matching_sql(g.event, g.where))})"
        selects.append(f"max(epoch_us(occurred_at)) {matching}")
        if g.values:
            selects.append(f"arg_max(event_id, {order}) {matching}")
            # The newest event's value even when null (arg_max would skip to an older one), as live ingestion does.
            selects += [f"arg_max_null({v.field}, {order}) {matching}" for v in g.values]
    found = con.sql(f"SELECT _row, {', '.join(selects)} FROM e GROUP BY _row").to_arrow_table()
    entity = found.column(0).to_numpy()
    tail = np.zeros((rows.shape[0], sum(1 for g in layout.groups if g.values)), dtype=f"S{ID_BYTES}")
    at, kept = 1, 0
    for g in layout.groups:
        stamps = found.column(at).to_numpy(zero_copy_only=False)
        seen = ~np.isnan(stamps)
        rows[entity[seen], g.slot] = stamps[seen]
        at += 1
        if not g.values:
            continue
        event_ids = found.column(at)
        if (pc.max(pc.binary_length(event_ids)).as_py() or 0) > ID_BYTES:
            raise OfflineStoreError(f"events table: an event_id of {g.event!r} is longer than {ID_BYTES} bytes")
        tail[entity[seen], kept] = np.array(event_ids.filter(pa.array(seen)).to_pylist(), dtype=f"S{ID_BYTES}")
        for i, value in enumerate(g.values, start=1):
            column = found.column(at + i)
            rows[entity[seen], g.slot + i] = _encoded(value, column)[seen]
        at += 1 + len(g.values)
        kept += 1
    return tail


def _encoded(value: LastValue, column: pa.ChunkedArray) -> np.ndarray:
    """:meth:`LastValue.encode` over a column: NaN where absent, the unknown-category mark where unlisted."""
    encoded = value.feature.encode_column(column, apply_default=False)
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
    ids, values = event_state(offline, layout, entity, now=time.time() if now is None else now)
    for start in range(0, len(ids), batch_size):
        end = min(start + batch_size, len(ids))
        await online.write_event_state(entity, ids[start:end], values[start:end])
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
