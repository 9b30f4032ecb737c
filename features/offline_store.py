"""The offline store: parquet snapshots and events of each entity, joined point-in-time with DuckDB.

Two tables per entity, in human form (category names, booleans, numbers):

- ``{entity}_snapshots.parquet``: (join key, ``feature_ts``, the entity's snapshot features). Each label row
  gets the latest snapshot taken at or before its timestamp (an as-of join); a view's values older than its
  TTL at that moment are nulled, exactly as the online store treats a stale view.
- ``{entity}_events.parquet``: (``event_id``, join key, ``occurred_at``, ``type``, payload columns). Event
  features are aggregated over the events at or before each label's timestamp with the contract's window
  semantics (see :class:`features.registry.Aggregation`), the same arithmetic the online store applies as
  events arrive.

Nothing observed after a label's timestamp can reach its row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.erasure import ERASURES_FILE, ErasureLedger
from features.errors import OfflineStoreError
from features.event_archive import archived_parts, events_source, parts_held
from features.event_join import event_features, sql_literal
from features.registry import DAY_SECONDS, EntitySchema, Feature, Registry

TIMESTAMP_COLUMN = "feature_ts"
EVENT_TIME_COLUMN = "occurred_at"
SCAN_ROWS = 262_144
"""Events per batch of :meth:`OfflineStore.scan_events`: a quarter of pyarrow's default row group."""
P = ParamSpec("P")
T = TypeVar("T")


def _sql_path(path: Path) -> str:
    return "read_parquet('{}')".format(str(path).replace("'", "''"))


def _exists(path: Path, what: str) -> None:
    if not path.is_file():
        raise OfflineStoreError(f"{path}: no {what} table")


def _has_columns(path: Path, columns: Collection[str], required: Iterable[str]) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise OfflineStoreError(f"{path}: missing column(s) {', '.join(missing)}")


def _epoch_us(moment: datetime) -> int:
    """``moment`` in microseconds since the epoch, a naive one read as UTC (as the parquet timestamps are)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _snapshot_sql(schema: EntitySchema, feature: Feature, ts_column: str) -> tuple[Feature, str]:
    """The stored feature whose view's freshness governs ``feature``, and the expression of its value.

    A derived feature is computed from its source against the label's UTC day, the arithmetic the online
    store applies against the day of the read (:meth:`features.registry.Derivation.compute`).
    """
    if feature.derive is None:
        return feature, f"s.{feature.name}"
    source = schema.feature(feature.derive.feature)
    return source, f"s.{source.name} - CAST(floor(epoch(l.{ts_column}) / {DAY_SECONDS}) AS BIGINT)"


def _holding_parts(
    read: Callable[Concatenate[OfflineStore, str, P], T],
) -> Callable[Concatenate[OfflineStore, str, P], T]:
    """``read`` (an :class:`OfflineStore` method of an entity) with the entity's archived parts held
    (:func:`features.event_archive.parts_held`): a running consumer's compaction would otherwise remove a part
    between the read's listing and DuckDB's opening it, and the read fail."""

    @functools.wraps(read)
    def held(store: OfflineStore, entity: str, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with parts_held(store.root, entity):
            return read(store, entity, *args, **kwargs)

    return held


@dataclass(frozen=True)
class EventScan:
    """Events as read, with the rows within the bounds asked for marked in ``keep``; see
    :meth:`OfflineStore.scan_events`."""

    table: pa.Table
    keep: np.ndarray


@dataclass(frozen=True)
class _Selection:
    """Which events a caller asks for (see :meth:`OfflineStore.events`): both readers take it whole."""

    since: datetime | None
    until: datetime | None
    whole: Collection[str]
    columns: Sequence[str] | None
    types: Collection[str] | None


class _ScanBounds:
    """Which rows of a scanned batch :meth:`OfflineStore.events` would return, by DuckDB's rules: a null time or
    type matches no bound, a naive time reads as UTC; and which have an entity that is not erased."""

    def __init__(self, key: str, selection: _Selection, erased: set[str]) -> None:
        self._key, self._whole, self._types = key, selection.whole, selection.types
        self._since = None if selection.since is None else _epoch_us(selection.since)
        self._until = None if selection.until is None else _epoch_us(selection.until)
        self._erased = pa.array(sorted(erased), pa.string()) if erased else None

    def keep(self, batch: pa.Table) -> np.ndarray:
        kind = batch.column("type").combine_chunks()
        if not isinstance(kind, pa.DictionaryArray):
            kind = pc.dictionary_encode(kind)
        labels = kind.dictionary.to_pylist()
        listed = np.array([self._types is None or t in self._types for t in labels] + [False], dtype=bool)
        code = pc.fill_null(kind.indices, len(labels)).to_numpy()
        stamps = pc.cast(batch.column(EVENT_TIME_COLUMN), pa.timestamp("us", "UTC")).cast(pa.int64())
        keep = listed[code] & pc.is_valid(stamps).to_numpy(zero_copy_only=False)
        stamp = pc.fill_null(stamps, 0).to_numpy()
        if self._until is not None:
            keep &= stamp <= self._until
        if self._since is not None:
            timeless = np.array([t in self._whole for t in labels] + [False], dtype=bool)
            keep &= (stamp > self._since) | timeless[code]
        key = batch.column(self._key)
        keep &= pc.is_valid(key).to_numpy(zero_copy_only=False)
        if self._erased is not None:
            keep &= ~pc.is_in(key, value_set=self._erased.cast(key.type)).to_numpy(zero_copy_only=False)
        return keep


def _scanned(
    events: pq.ParquetFile, read: list[str], wanted: list[str], bounds: _ScanBounds, batch_rows: int
) -> Iterator[EventScan]:
    with events:
        for batch in events.iter_batches(batch_rows, columns=read):
            table = pa.Table.from_batches([batch])
            yield EventScan(table.select(wanted), bounds.keep(table))


class OfflineStore:
    """Parquet snapshot and event tables under ``root``, two per entity, less the entities erased since."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self.registry = registry
        self.erasures = ErasureLedger(root / ERASURES_FILE)

    def table_path(self, entity: str) -> Path:
        """Where ``entity``'s snapshots live."""
        return self.root / f"{entity}_snapshots.parquet"

    def events_path(self, entity: str) -> Path:
        """Where ``entity``'s events live (live events are archived beside it, see :mod:`features.event_archive`)."""
        return self.root / f"{entity}_events.parquet"

    def _table(self, path: Path, required: tuple[str, ...], what: str) -> str:
        _exists(path, what)
        return self._checked(_sql_path(path), path, required)

    def _checked(self, source: str, path: Path, required: tuple[str, ...]) -> str:
        described = duckdb.connect().sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
        _has_columns(path, {c[0] for c in described}, required)
        return source

    def _without_erased(self, source: str, schema: EntitySchema) -> str:
        """``source`` less the rows of erased entities: every query reads its tables through this."""
        if not self.erasures.path.is_file():
            return source
        erased = f"SELECT entity_id FROM {_sql_path(self.erasures.path)} WHERE entity = {sql_literal(schema.name)}"
        return f"(SELECT * FROM {source} WHERE {schema.join_key} NOT IN ({erased}))"

    def _snapshots(self, schema: EntitySchema) -> str:
        source = self._table(
            self.table_path(schema.name),
            (schema.join_key, TIMESTAMP_COLUMN, *schema.snapshot_names),
            f"snapshot table for entity {schema.name!r}",
        )
        return self._without_erased(source, schema)

    def _event_columns(self, schema: EntitySchema) -> tuple[str, ...]:
        """The columns an events table must have: the event's identity, time and type, and every declared field."""
        return ("event_id", schema.join_key, EVENT_TIME_COLUMN, "type", *self.registry.event_columns(schema.name))

    def _events(self, schema: EntitySchema) -> str:
        """The events table, plus the live events archived beside it, each (entity, event id) once."""
        columns = self._event_columns(schema)
        base = self.events_path(schema.name)
        parts = archived_parts(self.root, schema.name)
        if not parts:
            source = self._table(base, columns, f"events table for entity {schema.name!r}")
        else:
            files = [base, *parts] if base.is_file() else parts
            source = self._checked(events_source(files, schema.join_key), base, columns)
        return self._without_erased(source, schema)

    def latest(self, entity: str, as_of: datetime | None = None, *, since: datetime | None = None) -> pa.Table:
        """Each entity's most recent snapshot at or before ``as_of`` (all of them when None).

        Snapshot features only: event features are state, materialized from the events table. ``since`` keeps
        only the entities whose latest snapshot was observed at or after it: incremental materialization by
        event time. It filters after the latest row is picked, so an entity comes with its latest row or not
        at all; a naive ``since`` is read as UTC, like the parquet timestamps.
        """
        schema = self.registry.entity(entity)
        source = self._snapshots(schema)
        params: dict[str, datetime] = {}
        where = ""
        if as_of is not None:
            where = "WHERE feature_ts <= $as_of"
            params["as_of"] = as_of
        recent = ""
        if since is not None:
            recent = "AND feature_ts >= $since"
            params["since"] = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
        query = f"""
            SELECT {schema.join_key}, feature_ts, {", ".join(schema.snapshot_names)}
            FROM {source} {where}
            QUALIFY row_number() OVER (PARTITION BY {schema.join_key} ORDER BY feature_ts DESC) = 1 {recent}
            ORDER BY {schema.join_key}
        """
        return duckdb.connect().sql(query, params=params or None).to_arrow_table()

    def events(
        self,
        entity: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        whole: Collection[str] = (),
        columns: Sequence[str] | None = None,
        types: Collection[str] | None = None,
    ) -> pa.Table:
        """The entity's events with ``since < occurred_at <= until``, oldest first (by time, then event id).
        Events of the types in ``whole`` are returned from the first, whatever ``since`` says. ``columns`` and
        ``types`` narrow the answer to what a caller reads (every column and type by default): most of the time
        of a large read is spent handing over strings it would not look at."""
        return self._query_events(entity, _Selection(since, until, whole, columns, types), ordered=True)

    def scan_events(
        self,
        entity: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        whole: Collection[str] = (),
        columns: Sequence[str] | None = None,
        types: Collection[str] | None = None,
        batch_rows: int = SCAN_ROWS,
    ) -> Iterator[EventScan]:
        """:meth:`events` for an aggregation: in no particular order, a batch at a time, as read, not filtered.

        From the events table alone (no archived parts to merge), the rows are read by pyarrow rather than DuckDB,
        in file order, with ``type`` and the category fields dictionary-encoded: for materialization's horizon of
        2,000,000 events DuckDB spent most of its time handing those strings over, one per event, and the
        aggregation gets the types as small integers it would otherwise encode itself. The rows out of bounds
        are marked, not dropped: filtering copied the whole table, which cost materializing 100,000 customers'
        event state 0.5 s of CPU and as much again in page faults, more than the read itself. Batches of
        ``batch_rows`` let a caller keep only what it needs of each, so the memory of one serves the next instead
        of the whole horizon's columns being faulted in at once. An event without an entity is out of bounds
        here, being no entity's state. The table's presence and columns are checked at the call."""
        schema = self.registry.entity(entity)
        selection = _Selection(since, until, whole, columns, types)
        if archived_parts(self.root, schema.name):
            return self._scan_query(schema, selection, batch_rows)
        path = self.events_path(schema.name)
        _exists(path, f"events table for entity {schema.name!r}")
        # The type and the category fields come dictionary-encoded: a dozen strings each, not one per event.
        # The columns are checked against the file's footer (a DuckDB DESCRIBE of the file cost 30 ms).
        kinds = self.registry.event_columns(schema.name)
        coded = ["type", *(c for c, kind in kinds.items() if kind == "category")]
        events = pq.ParquetFile(path, read_dictionary=coded)
        names = events.schema_arrow.names
        _has_columns(path, set(names), self._event_columns(schema))
        wanted = names if columns is None else list(dict.fromkeys(columns))
        read = list(dict.fromkeys([*wanted, schema.join_key, EVENT_TIME_COLUMN, "type"]))
        bounds = _ScanBounds(schema.join_key, selection, self.erasures.ids(schema.name))
        return _scanned(events, read, wanted, bounds, batch_rows)

    def _scan_query(self, schema: EntitySchema, selection: _Selection, batch_rows: int) -> Iterator[EventScan]:
        """:meth:`scan_events` over the events table and its archived parts, merged by DuckDB."""
        table = self._query_events(schema.name, selection, ordered=False)
        for batch in table.to_batches(max_chunksize=batch_rows):
            yield EventScan(pa.Table.from_batches([batch]), pc.is_valid(batch.column(schema.join_key)).to_numpy())

    @_holding_parts
    def _query_events(self, entity: str, selection: _Selection, *, ordered: bool) -> pa.Table:
        """The events in bounds by DuckDB, over the events table and the live events archived beside it."""
        source = self._events(self.registry.entity(entity))
        after = "occurred_at > $since"
        if selection.whole:
            after = f"({after} OR type IN ({', '.join(sql_literal(t) for t in sorted(selection.whole))}))"
        params = {k: v for k, v in (("since", selection.since), ("until", selection.until)) if v is not None}
        bounds = [c for c, k in ((after, "since"), ("occurred_at <= $until", "until")) if k in params]
        if selection.types is not None:
            bounds.append(f"type IN ({', '.join(sql_literal(t) for t in sorted(selection.types)) or 'NULL'})")
        where = f"WHERE {' AND '.join(bounds)}" if bounds else ""
        select = "*" if selection.columns is None else ", ".join(dict.fromkeys(selection.columns))
        order = " ORDER BY occurred_at, event_id" if ordered else ""
        query = f"SELECT {select} FROM {source} {where}{order}"
        return duckdb.connect().sql(query, params=params or None).to_arrow_table()

    @_holding_parts
    def point_in_time(self, entity: str, labels: pa.Table, *, ts_column: str = "ts") -> pa.Table:
        """``labels`` with the entity's features as they stood at each row's ``ts_column``.

        Rows with no snapshot at or before their timestamp keep nulls (the models' defaults apply); event
        features aggregate the events at or before it. Rows of erased entities are left out: their labels are
        the entity's data as much as its features are.
        """
        schema = self.registry.entity(entity)
        for needed in (schema.join_key, ts_column):
            if needed not in labels.column_names:
                raise OfflineStoreError(f"label table has no column {needed!r}")
        key = schema.join_key
        erased = self.erasures.ids(entity)
        if erased:
            ids = labels.column(key)
            labels = labels.filter(pc.invert(pc.is_in(ids, value_set=pa.array(sorted(erased), ids.type))))
        # Each feature's SELECT expression, emitted in contract order whichever source it comes from.
        columns = {
            feature.name: f"CASE WHEN l.{ts_column} - s.feature_ts <= "
            f"INTERVAL '{schema.view_for(stored).ttl_seconds} seconds' THEN {value} END AS {feature.name}"
            for view in schema.views
            if view.source == "snapshot"
            for feature in view.features
            for stored, value in [_snapshot_sql(schema, feature, ts_column)]
        }
        con = duckdb.connect()
        # DuckDB draws a progress bar on stdout for a join over two seconds: it would corrupt a command's output.
        con.sql("SET enable_progress_bar = false")
        con.register("labels_in", labels)
        con.sql("CREATE TEMP TABLE labels AS SELECT *, row_number() OVER () AS _row FROM labels_in")
        event_join = ""
        if schema.event_features:
            con.register("event_features", event_features(con, self._events(schema), schema, ts_column))
            columns.update((f.name, f"ef.{f.name}") for f in schema.event_features)
            event_join = "LEFT JOIN event_features ef ON ef._row = l._row"
        features = ", ".join(columns[name] for name in schema.names)
        snapshot_select = ", s.feature_ts" if schema.snapshot_features else ""
        snapshot_join = (
            f"ASOF LEFT JOIN {self._snapshots(schema)} s ON l.{key} = s.{key} AND l.{ts_column} >= s.feature_ts"
            if schema.snapshot_features
            else ""
        )
        query = f"""
            SELECT l.* EXCLUDE (_row){snapshot_select}, {features}
            FROM labels l {snapshot_join} {event_join}
            ORDER BY l.{ts_column}, l.{key}, l._row
        """
        return con.sql(query).to_arrow_table()

    def as_of(self, entity: str, ids: list[str], at: datetime | None = None) -> pa.Table:
        """Every feature of ``ids`` as it stood at ``at`` (now by default), in the order of ``ids``.

        What the online store should be serving for them at that moment: the reference for parity checks
        and for scoring a list of entities in batch. Erased ids have no row.
        """
        when = at if at is not None else datetime.now(UTC)
        key = self.registry.entity(entity).join_key
        labels = pa.table(
            {key: pa.array(ids, pa.string()), "ts": pa.array([when] * len(ids), pa.timestamp("us", "UTC"))}
        )
        table = self.point_in_time(entity, labels).drop_columns(["ts"])
        order = {entity_id: i for i, entity_id in enumerate(table.column(key).to_pylist())}
        return table.take([order[i] for i in ids if i in order])

    def matrix(self, entity: str, table: pa.Table) -> np.ndarray:
        """Every feature of ``table``'s rows as the online store serves them: float64, registry order, NaN for
        missing."""
        schema = self.registry.entity(entity)
        return np.column_stack([f.encode_column(table.column(f.name)) for f in schema.features])

    def model_matrix(self, entity: str, table: pa.Table) -> np.ndarray:
        """The model input for ``table``'s rows: the columns of :meth:`matrix` that are model inputs."""
        return self.registry.entity(entity).model_matrix(table)
