"""Offline to online: copy each entity's latest snapshot and its event state into Redis.

Idempotent: running it twice leaves the same hashes. Snapshots go in pipelined batches so throughput is
bounded by Redis, not by round trips. Event state (day totals and newest-event fields, see
:mod:`features.event_state`) is aggregated from the events table by DuckDB, not replayed event by event:
it overwrites what live ingestion wrote for the same days, which is right only when the events table holds
every event (the event sink keeps it so).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from features.event_state import EventLayout, text
from features.identity import LINKED, UNLINKED, Identifier
from features.offline_store import TIMESTAMP_COLUMN, OfflineStore, sql_literal
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


def _where(conditions: list[str]) -> str:
    return " AND ".join(conditions) if conditions else "TRUE"


def event_state(offline: OfflineStore, layout: EventLayout, entity: str, *, now: float) -> dict[str, dict[str, str]]:
    """The event-state hash fields of every entity with events in the horizon, as of ``now``."""
    key = offline.registry.entity(entity).join_key
    until = datetime.fromtimestamp(now, UTC)
    since = datetime.fromtimestamp(now - layout.horizon_days * DAY_SECONDS, UTC)
    con = duckdb.connect()
    con.register("events", offline.events(entity, since=since, until=until))
    today = int(now // DAY_SECONDS)
    state: dict[str, dict[str, str]] = defaultdict(dict)
    for s in layout.series:
        conditions = [f"type = '{s.event}'", f"floor(epoch(occurred_at) / 86400) > {today - s.days}"]
        conditions += [f"{k} = {sql_literal(v)}" for k, v in s.where]
        measure = "count(*)"
        if s.field is not None:
            conditions.append(f"{s.field} IS NOT NULL")
            measure = f"sum({s.field})" if s.sums else "count(*)"
        rows = con.sql(
            f"SELECT {key}, CAST(floor(epoch(occurred_at) / 86400) AS BIGINT), {measure} FROM events "
            f"WHERE {_where(conditions)} GROUP BY ALL"
        ).fetchall()
        for entity_id, day, value in rows:
            state[entity_id][f"{s.name}@{day}"] = text(float(value) if s.sums else int(value))
            # Nothing older than the window was written: live events need not sweep behind it.
            state[entity_id][f"sw|{s.name}"] = str(today - s.days)
    for event, fields in layout.last_fields.items():
        # The newest event's value even when null (arg_max would skip to an older one), as live ingestion does.
        values = "".join(f", arg_max_null({f}, (occurred_at, event_id))" for f in fields)
        rows = con.sql(
            f"SELECT {key}, arg_max(lpad(CAST(epoch_us(occurred_at) AS VARCHAR), 20, '0') || '|' || event_id, "
            f"(occurred_at, event_id)){values} FROM events WHERE type = '{event}' GROUP BY ALL"
        ).fetchall()
        for entity_id, newest, *latest in rows:
            state[entity_id][f"last|{event}"] = newest
            for f, value in zip(fields, latest, strict=True):
                if value is not None:
                    state[entity_id][f"lv|{event}|{f}"] = text(value)
    return dict(state)


async def materialize_events(
    offline: OfflineStore,
    online: OnlineStore,
    entity: str,
    *,
    now: float | None = None,
    batch_size: int = 2_000,
    progress: Progress | None = None,
) -> int:
    """Write the event state of every ``entity`` with events in the horizon; returns how many."""
    layout = online.layout(entity)
    if not layout.features:
        return 0
    state = event_state(offline, layout, entity, now=time.time() if now is None else now)
    ids = sorted(state)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        await online.write_event_state(entity, {i: state[i] for i in chunk})
        if progress is not None:
            progress(start + len(chunk), len(ids))
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
