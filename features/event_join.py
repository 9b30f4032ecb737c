"""The event features of label rows, point in time: what :meth:`features.OfflineStore.point_in_time` joins.

Each label row gets its entity's event aggregates over the events at or before its timestamp, with the contract's
semantics (:class:`features.registry.Aggregation`): a window of W days holds the events of the W UTC days ending on
the label's day (days as ``floor(epoch / 86400)``); ``last`` is the newest matching event's field, ties broken by
event id, even when that field is null; ``last`` and ``days_since`` are null once that event is older than the view's
TTL; a view without a TTL reads its events however old (:attr:`~features.registry.EntitySchema.timeless_events`).

How: the events any label can see (of the labels' entities, of the types a feature reads, within the contract's
horizon of the labels' times) are read once and sorted by (entity, ``occurred_at``, ``event_id``). A label's events
are then one run of that order, from its entity's first row to ``hi``, the first row after its timestamp; a window
starts at ``lo``, the entity's first row of the window's first day. Both are binary searches within the entity's
rows. For each matching condition (an event type and its ``where``, and for a sum or mean the field's presence) the
positions of the rows that match are listed once, so a count is how many of them lie in ``[lo, hi)``, a sum adds
their field in time order, and ``last`` and ``days_since`` read the last of them before ``hi``.

Why: the join this replaced paired each label with every event of its entity within the horizon and evaluated each
of some 30 filtered aggregates on every pair, a cost of labels x events per entity, which daily usage and login
events make large: 107 s for the churn labels of a 50,000-customer world in the session that measured it. This
costs one read and one sort of the events and a few binary searches per label (figures in the README's benchmarks).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.registry import Aggregation, EntitySchema, Feature

_TIME = "occurred_at"


def sql_literal(value: bool | str) -> str:
    """A contract value (a bool or a category) as a SQL literal."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return "'{}'".format(value.replace("'", "''"))


Where = tuple[str, bool | str]
"""One ``where`` test: a field and the value it must hold."""
Reads = tuple[str, tuple[Where, ...], str | None]
"""Which events an aggregation reads: their type, its ``where`` tests, and the field a sum or mean needs present."""


def _aggregation(feature: Feature) -> Aggregation:
    agg = feature.aggregation
    assert agg is not None, f"{feature.name} is not an event feature"
    return agg


def _reads(agg: Aggregation) -> Reads:
    return agg.event, tuple(sorted(agg.where.items())), agg.field if agg.kind in ("sum", "mean") else None


def _within(values: np.ndarray, start: np.ndarray, end: np.ndarray, target: np.ndarray, *, right: bool) -> np.ndarray:
    """Per row i, the first position in ``[start[i], end[i])`` of the sorted run ``values[start[i]:end[i]]`` whose
    value is above ``target[i]`` (``right``) or at least it (otherwise); ``end[i]`` when there is none.

    numpy's ``searchsorted`` within one run per row, bisecting every row at once: about log2 of the longest run
    steps of a few vector operations.
    """
    lo, hi = start.copy(), end.copy()
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) // 2
        value = values[np.where(open_, mid, 0)]
        after = value <= target if right else value < target
        lo = np.where(open_ & after, mid + 1, lo)
        hi = np.where(open_ & ~after, mid, hi)


def _sums(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``values[lo[i]:hi[i]].sum()`` for every i, each added in order (0 for an empty range).

    One ``np.add.reduceat`` over the ranges in order of ``lo``: it also adds up the gaps between them, whose total is
    at most ``len(values)``, so the work is the ranges' length plus the values'.
    """
    order = np.argsort(lo, kind="stable")
    bounds = np.empty(2 * len(lo), dtype=np.intp)
    bounds[0::2], bounds[1::2] = lo[order], hi[order]
    padded = np.append(values, np.zeros(1, dtype=values.dtype))  # reduceat needs each bound below the length
    added = np.add.reduceat(padded, bounds)[0::2] if len(lo) else padded[:0]
    out = np.empty_like(added)
    out[order] = np.where(lo[order] < hi[order], added, 0)
    return out


def event_features(con: duckdb.DuckDBPyConnection, events: str, schema: EntitySchema, ts_column: str) -> pa.Table:
    """``_row`` and every event feature of ``schema``, one row per row of the connection's ``labels`` table (whose
    column ``_row`` numbers its rows; the answer is in another order, join it on ``_row``), from the events of the SQL
    source ``events``.

    Counts and sums are 0 for a label with no matching event (and for one without an entity or a timestamp); a mean,
    ``last`` or ``days_since`` is null. Each column has the type DuckDB gives the aggregate: ``count`` and
    ``days_since`` BIGINT, a sum of a floating field DOUBLE and of an integer one HUGEINT (an arrow decimal of 38
    digits), a mean DOUBLE, ``last`` the field's own type.
    """
    key = schema.join_key
    features = schema.event_features
    reads = [_reads(_aggregation(f)) for f in features]
    types = sorted({event for event, _, _ in reads})
    wheres = sorted({test for _, tests, _ in reads for test in tests}, key=str)
    fields = sorted({a.field for f in features for a in [_aggregation(f)] if a.field is not None})
    recent = f"e.{_TIME} > (SELECT min({ts_column}) FROM labels) - INTERVAL '{schema.event_horizon_days + 1} days'"
    if schema.timeless_events:
        recent = f"({recent} OR e.type IN ({', '.join(sql_literal(t) for t in sorted(schema.timeless_events))}))"
    con.sql(f"""
        CREATE TEMP TABLE _entities AS
        SELECT {key}, (row_number() OVER () - 1)::BIGINT AS _code
        FROM (SELECT DISTINCT {key} FROM labels WHERE {key} IS NOT NULL)
    """)
    # The type as its index in `types`, each `where` test as a column of its own (a null field fails it): evaluating
    # every aggregation's whole condition here cost more than reading the events. The days are the contract's SQL
    # always computed (floor(epoch / 86400)), for the events and the labels alike.
    found = con.sql(f"""
        SELECT k._code, epoch_us(e.{_TIME}) AS _us, CAST(floor(epoch(e.{_TIME}) / 86400) AS BIGINT) AS _day,
               epoch(e.{_TIME}) AS _epoch, e.event_id,
               CAST(CASE e.type {" ".join(f"WHEN {sql_literal(t)} THEN {i}" for i, t in enumerate(types))} END
                    AS SMALLINT) AS _type
               {"".join(f", coalesce({f} = {sql_literal(v)}, FALSE) AS _where{i}" for i, (f, v) in enumerate(wheres))}
               {"".join(f", e.{f}" for f in fields)}
        FROM {events} e JOIN _entities k ON e.{key} = k.{key}
        WHERE e.type IN ({", ".join(sql_literal(t) for t in types)})
          AND e.{_TIME} <= (SELECT max({ts_column}) FROM labels) AND {recent}
    """).to_arrow_table()
    labels = con.sql(f"""
        SELECT l._row, k._code, epoch_us(l.{ts_column}) AS _us,
               CAST(floor(epoch(l.{ts_column}) / 86400) AS BIGINT) AS _day, epoch(l.{ts_column}) AS _epoch
        FROM labels l LEFT JOIN _entities k ON l.{key} = k.{key}
        ORDER BY k._code, l.{ts_column}
    """).to_arrow_table()
    con.sql("DROP TABLE _entities")
    present = sorted({field for _, _, field in reads if field is not None})
    rows = _Rows(found, types, wheres, present)
    at = _Labels(labels, rows)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {"_row": labels.column("_row")}
    windows: dict[int, np.ndarray] = {}
    for feature, read in zip(features, reads, strict=True):
        agg = _aggregation(feature)
        matching = rows.matching(read)
        # Per label, how many of the matching events are at or before it: the end of every window and the newest.
        before = at.before(read, matching)
        if agg.window_days is None:
            columns[feature.name] = at.newest(agg, matching, before, schema.view_for(feature).ttl_seconds)
            continue
        if agg.window_days not in windows:
            windows[agg.window_days] = at.first_of_day(at.day - agg.window_days + 1)
        first = np.searchsorted(matching, windows[agg.window_days])
        columns[feature.name] = at.windowed(agg, matching, first, before)
    return pa.table(columns)


def _order(code: np.ndarray, us: np.ndarray) -> np.ndarray:
    """The order of rows by (``code``, ``us``), ties in no particular order.

    numpy's quicksort of the times, then a stable radix sort of the codes (which are at least 0) 16 bits at a time:
    numpy sorts 16-bit integers stably by radix, in linear time. Half the time of ``np.lexsort``'s two merge sorts on
    10 million events.
    """
    order = np.argsort(us)
    for shift in range(0, int(code.max(initial=0)).bit_length(), 16):
        digit = ((code[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
    return order


class _Rows:
    """The events read, in order of (entity, time, event id): arrays by sorted position, the table as read."""

    def __init__(self, table: pa.Table, types: list[str], wheres: list[Where], present: list[str]) -> None:
        self.table, self._types, self._wheres, self._present = table, types, wheres, present
        code, us = table.column("_code").to_numpy(), table.column("_us").to_numpy()
        order = _order(code, us)
        code, us = code[order], us[order]
        # Events of one entity at the same microsecond: the newest is the greater id, as the online store has it.
        tied = np.zeros(len(order), dtype=bool)
        same = (code[1:] == code[:-1]) & (us[1:] == us[:-1])
        tied[1:] |= same
        tied[:-1] |= same
        if tied.any():
            runs = pa.table({"c": code[tied], "u": us[tied], "id": table.column("event_id").take(order[tied])})
            by_id = pc.sort_indices(runs, [("c", "ascending"), ("u", "ascending"), ("id", "ascending")])
            order[tied] = order[tied][by_id.to_numpy()]
        self.order = order
        """The row of ``table`` at each sorted position."""
        self.code, self.us = code, us
        self.day = table.column("_day").to_numpy()[order]
        self._type = table.column("_type").to_numpy()[order]
        # Every `where` test, then every field a sum or mean needs present, one column each, gathered in one pass.
        tests = [table.column(f"_where{i}") for i in range(len(wheres))]
        tests += [pc.is_valid(table.column(f)) for f in present]
        self._tests = np.column_stack([t.to_numpy(zero_copy_only=False) for t in tests])[order] if tests else None
        self._matching: dict[Reads, np.ndarray] = {}
        self._fields: dict[str, pa.Array] = {}

    def matching(self, reads: Reads) -> np.ndarray:
        """The sorted positions of the events ``reads`` picks (see :data:`Reads`)."""
        if reads not in self._matching:
            event, tests, field = reads
            mask = self._type == self._types.index(event)
            columns = [self._wheres.index(t) for t in tests]
            columns += [] if field is None else [len(self._wheres) + self._present.index(field)]
            for column in columns:
                assert self._tests is not None
                mask &= self._tests[:, column]
            self._matching[reads] = np.flatnonzero(mask)
        return self._matching[reads]

    def epoch(self, positions: np.ndarray) -> np.ndarray:
        """The events' ``epoch(occurred_at)`` (as DuckDB computes it) at the sorted ``positions``."""
        return np.asarray(self.field("_epoch", positions).to_numpy())

    def field(self, name: str, positions: np.ndarray, found: np.ndarray | None = None) -> pa.Array:
        """The field ``name`` of the events at the sorted ``positions`` (null where ``found`` is false)."""
        if name not in self._fields:
            # One chunk: a take from the 64 chunks DuckDB hands over for 8 million events cost 50 times as much.
            self._fields[name] = self.table.column(name).combine_chunks()
        return self._fields[name].take(pa.array(self.order[positions], mask=None if found is None else ~found))


class _Labels:
    """Where each label's events lie in the sorted rows: its entity's run ``[start, end)`` and ``hi``, the first
    position after its timestamp."""

    def __init__(self, table: pa.Table, rows: _Rows) -> None:
        self.rows = rows
        code, us = table.column("_code"), table.column("_us")
        known = pc.and_(pc.is_valid(code), pc.is_valid(us)).to_numpy(zero_copy_only=False)
        entity = pc.fill_null(code, -1).to_numpy()
        self.start = np.where(known, np.searchsorted(rows.code, entity, "left"), 0)
        end = np.where(known, np.searchsorted(rows.code, entity, "right"), 0)
        self.hi = _within(rows.us, self.start, end, pc.fill_null(us, 0).to_numpy(), right=True)
        self.day = pc.fill_null(table.column("_day"), 0).to_numpy()
        self.epoch = pc.fill_null(table.column("_epoch"), 0.0).to_numpy()
        self._before: dict[Reads, np.ndarray] = {}

    def first_of_day(self, day: np.ndarray) -> np.ndarray:
        """Per label, the position of its entity's first event on or after UTC ``day`` (``hi`` if none before it)."""
        return _within(self.rows.day, self.start, self.hi, day, right=False)

    def windowed(self, agg: Aggregation, matching: np.ndarray, first: np.ndarray, last: np.ndarray) -> pa.Array:
        """A count, sum or mean over the matching rows ``matching[first:last]`` of each label."""
        count = last - first
        if agg.kind == "count":
            return pa.array(count, pa.int64())
        assert agg.field is not None
        values = self.rows.field(agg.field, matching)
        integer = pa.types.is_integer(values.type)
        total = _sums(values.to_numpy(zero_copy_only=False).astype(np.int64 if integer else np.float64), first, last)
        if agg.kind == "sum":
            return pa.array(total).cast(pa.decimal128(38, 0)) if integer else pa.array(total, pa.float64())
        return pa.array(total / np.maximum(count, 1), pa.float64(), mask=count == 0)

    def before(self, reads: Reads, matching: np.ndarray) -> np.ndarray:
        """Per label, the number of the ``matching`` rows (those ``reads`` picks) before its ``hi``."""
        if reads not in self._before:
            self._before[reads] = np.searchsorted(matching, self.hi)
        return self._before[reads]

    def newest(self, agg: Aggregation, matching: np.ndarray, before: np.ndarray, ttl_seconds: float) -> pa.Array:
        """``last`` or ``days_since``: from the newest matching row before each label's ``hi``, if it is the label's
        entity's and no older than ``ttl_seconds`` (seconds between the epochs, as the SQL computed them)."""
        k = before - 1
        position = matching[np.maximum(k, 0)] if len(matching) else k
        found = (k >= 0) & (position >= self.start)
        if not found.any():
            return pa.nulls(len(k), pa.int64() if agg.field is None else self.rows.table.column(agg.field).type)
        age = self.epoch - self.rows.epoch(np.where(found, position, 0))
        found &= age <= ttl_seconds
        if agg.kind == "days_since":
            return pa.array(np.floor(age / 86400).astype(np.int64), mask=~found)
        assert agg.field is not None
        return self.rows.field(agg.field, np.where(found, position, 0), found)
