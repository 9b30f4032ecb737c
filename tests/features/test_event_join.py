"""The point-in-time join's event features equal, for every event table, those of the join they replaced: each label
paired with every event of its entity within the horizon, each feature a filtered aggregate over the pairs. That join
(:func:`_reference`) is kept here, and only here, as the definition the faster one must meet."""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import EntitySchema, Feature, FeatureView, OfflineStore, Registry
from features.event_join import sql_literal

NOW_DAY = 20_619
"""2026-06-15, the day the drawn histories end on."""
DAY_US = 86_400 * 1_000_000
CUSTOMERS = ("K1", "K2")
ARROW = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "category": pa.string(), "str": pa.string()}
TS = pa.timestamp("us", tz="UTC")


def _aggregate_sql(feature: Feature, view: FeatureView) -> str:
    """One SELECT expression computing ``feature`` over the joined events ``j`` of one label row."""
    agg = feature.aggregation
    assert agg is not None
    conditions = [f"type = {sql_literal(agg.event)}", *(f"{k} = {sql_literal(v)}" for k, v in agg.where.items())]
    if agg.window_days is not None:
        conditions.append(f"_day > _label_day - {agg.window_days}")
    elif view.ttl_days is not None:
        conditions.append(f"_age_s <= {view.ttl_seconds}")
    if agg.field is not None and agg.kind != "last":
        conditions.append(f"{agg.field} IS NOT NULL")
    where = " AND ".join(conditions)
    call = {
        "count": "count(*)",
        "sum": f"sum({agg.field})",
        "mean": f"avg({agg.field})",
        "last": f"arg_max_null({agg.field}, (occurred_at, event_id))",
        "days_since": "min(_age_s)",
    }[agg.kind]
    filtered = f"{call} FILTER (WHERE {where})"
    if agg.kind == "days_since":
        filtered = f"CAST(floor({filtered} / 86400) AS BIGINT)"
    elif agg.kind in ("count", "sum"):
        filtered = f"coalesce({filtered}, 0)"
    return f"{filtered} AS {feature.name}"


def _reference(root: Path, schema: EntitySchema, labels: pa.Table, erased: set[str]) -> pa.Table:
    """The label columns and event features, in the frame's row order, by the join ``point_in_time`` ran before."""
    key, features = schema.join_key, schema.event_features
    events = f"read_parquet('{root / 'customer_events.parquet'}')"
    kept = "TRUE"
    if erased:
        kept = f"{key} NOT IN ({', '.join(sql_literal(e) for e in sorted(erased))})"
        events = f"(SELECT * FROM {events} WHERE {kept})"
    horizon = schema.event_horizon_days + 1
    timeless = ", ".join(sql_literal(t) for t in schema.timeless_events) or "NULL"
    types = ", ".join(sql_literal(t) for t in {f.aggregation.event for f in features if f.aggregation})
    con = duckdb.connect()
    con.register("labels_in", labels)
    con.sql(f"""
        CREATE TEMP TABLE labels AS SELECT *, row_number() OVER () AS _row FROM labels_in
        WHERE {key} IS NULL OR {kept}
    """)
    con.sql(f"""
        CREATE TEMP TABLE event_features AS
        SELECT _row, {", ".join(_aggregate_sql(f, schema.view_for(f)) for f in features)}
        FROM (
            SELECT l._row, e.*,
                   floor(epoch(e.occurred_at) / 86400) AS _day,
                   floor(epoch(l.ts) / 86400) AS _label_day,
                   epoch(l.ts) - epoch(e.occurred_at) AS _age_s
            FROM labels l JOIN {events} e
              ON e.{key} = l.{key}
             AND e.occurred_at <= l.ts
             AND (e.occurred_at > l.ts - INTERVAL '{horizon} days' OR e.type IN ({timeless}))
            WHERE e.type IN ({types})
        ) j
        GROUP BY _row
    """)
    columns = [
        f"coalesce(ef.{f.name}, 0) AS {f.name}"
        if f.aggregation is not None and f.aggregation.kind in ("count", "sum")
        else f"ef.{f.name}"
        for f in features
    ]
    return con.sql(f"""
        SELECT l.* EXCLUDE (_row), {", ".join(columns)}
        FROM labels l LEFT JOIN event_features ef ON ef._row = l._row
        ORDER BY l.ts, l.{key}, l._row
    """).to_arrow_table()


@pytest.fixture(scope="module")
def wide_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The packaged contract plus the aggregations it lacks: a sum of an integer field (a HUGEINT in DuckDB), a mean
    of an optional one, a one-day window narrowed to a category, a `last` with a two-day TTL, and a `days_since`
    that never expires (so that usage events count however old)."""
    data = yaml.safe_load(resources.files("features").joinpath("registry.yaml").read_text(encoding="utf-8"))
    base = {"description": "d", "reason": "r"}
    data["views"].append(
        {
            "name": "customer_extras",
            "entity": "customer",
            "source": "events",
            "ttl_days": 2,
            "owner": "tests",
            "description": "Aggregations the packaged contract does not declare.",
            "features": [
                {
                    **base,
                    "name": "csat_sum_30d",
                    "dtype": "int",
                    "aggregation": {"kind": "sum", "event": "survey_answered", "field": "csat", "window_days": 30},
                },
                {
                    **base,
                    "name": "nps_mean_7d",
                    "dtype": "float",
                    "aggregation": {"kind": "mean", "event": "survey_answered", "field": "nps", "window_days": 7},
                },
                {
                    **base,
                    "name": "billing_contacts_1d",
                    "dtype": "int",
                    "aggregation": {
                        "kind": "count",
                        "event": "contact_ended",
                        "where": {"intent": "billing"},
                        "window_days": 1,
                    },
                },
                {
                    **base,
                    "name": "last_units_2d",
                    "dtype": "float",
                    "aggregation": {"kind": "last", "event": "usage", "field": "units"},
                },
            ],
        }
    )
    data["views"].append(
        {
            "name": "customer_forever",
            "entity": "customer",
            "source": "events",
            "ttl_days": None,
            "owner": "tests",
            "description": "What never expires.",
            "features": [
                {
                    **base,
                    "name": "days_since_usage",
                    "dtype": "int",
                    "aggregation": {"kind": "days_since", "event": "usage"},
                },
            ],
        }
    )
    path = tmp_path_factory.mktemp("contract") / "registry.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return Registry.load(path)


# Labels on the last two days; events a few days apart from the edges of the windows (1, 7, 30, 90 days) and TTLs (2,
# 30, 45, 90, 180 days) before them and past the horizon; both at a few seconds of the day and microseconds. So a label
# falls exactly on an edge of an event's window or TTL, on a day's first or last microsecond, on an event's own.
DAYS_BACK = (0, 1, 2, 3, 6, 7, 8, 29, 30, 31, 44, 45, 46, 89, 90, 91, 179, 180, 181, 182, 200)


def _moment(days_back: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return st.builds(
        lambda days, second, micro: (NOW_DAY - days) * DAY_US + second * 1_000_000 + micro,
        days_back,
        st.sampled_from([0, 1, 43_200, 86_399]),
        st.sampled_from([0, 1, 999_999]),
    )


LABEL_MOMENT = _moment(st.sampled_from((0, 1)))
EVENT_MOMENT = _moment(st.sampled_from(DAYS_BACK))


def _field(dtype: str, categories: tuple[str, ...] | None) -> st.SearchStrategy[Any]:
    value: st.SearchStrategy[Any] = {
        "float": st.floats(-1e3, 1e3, allow_nan=False),
        "int": st.integers(-20, 20),
        "bool": st.booleans(),
        "category": st.sampled_from(categories or ("x",)),
        "str": st.sampled_from(("retention_offer", "discount_10", "other")),
    }[dtype]
    return st.none() | value


@st.composite
def _events(draw: st.DrawFn, registry: Registry, moment: st.SearchStrategy[int]) -> pa.Table:
    """Events of the types the features read (and one they do not) at ``moment``s, each field drawn or null, with
    unique ids in an order of their own; some have a twin of the same customer, type and microsecond, with fields of
    its own (which one is newer is the ids' call)."""
    features = registry.entity("customer").event_features
    types = sorted({"identifier_linked", *(f.aggregation.event for f in features if f.aggregation)})
    columns = registry.event_columns("customer")
    rows: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 60))):
        kind = draw(st.sampled_from(types))
        row = {
            "customer_id": draw(st.sampled_from(CUSTOMERS)),
            "occurred_at": _time(draw(moment)),
            "type": kind,
            **{name: None for name in columns},
        }
        for _ in range(draw(st.sampled_from((1, 1, 1, 2)))):
            fields = registry.events[kind].fields
            rows.append(row | {name: draw(_field(f.dtype, f.categories)) for name, f in fields.items()})
    ids = draw(st.permutations(range(len(rows))))
    schema = pa.schema(
        [
            pa.field("event_id", pa.string()),
            pa.field("customer_id", pa.string()),
            pa.field("occurred_at", TS),
            pa.field("type", pa.string()),
            *(pa.field(name, ARROW[dtype]) for name, dtype in columns.items()),
        ]
    )
    return pa.Table.from_pylist([row | {"event_id": f"e{i:03d}"} for i, row in zip(ids, rows, strict=True)], schema)


def _time(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def _labels(moments: list[tuple[str | None, int | None]]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([c for c, _ in moments], pa.string()),
            "ts": pa.array([None if m is None else _time(m) for _, m in moments], TS),
            "n": pa.array(range(len(moments)), pa.int64()),
        }
    )


def _same(got: pa.Table, expected: pa.Table) -> None:
    """Equal tables, but that a float may differ in its last bits (sums add the same numbers in another order)."""
    assert got.schema == expected.schema
    for name in expected.column_names:
        have, want = got.column(name).to_pylist(), expected.column(name).to_pylist()
        if pa.types.is_floating(expected.schema.field(name).type):
            assert [v is None for v in have] == [v is None for v in want], name
            assert all(
                math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)
                for a, b in zip(have, want, strict=True)
                if a is not None
            ), (name, have, want)
        else:
            assert have == want, (name, have, want)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), pool=st.lists(LABEL_MOMENT, min_size=1, max_size=4), erase=st.sampled_from((None, "K2")))
def test_event_features_are_the_pairwise_joins(
    wide_registry: Registry, tmp_path: Path, data: st.DataObject, pool: list[int], erase: str | None
) -> None:
    """Every event feature of every label (of the packaged contract and of the aggregations it lacks), with its
    type, nulls and the frame's row order, as the pairwise join computes it, for any events: sharing a microsecond,
    at a day's edge, older than the horizon, with null fields, of an erased customer."""
    schema = wide_registry.entity("customer")
    # Events whole days before a label of the pool, or on it: each falls on an edge of its windows and TTLs.
    before = st.builds(lambda at, days: at - days * DAY_US, st.sampled_from(pool), st.sampled_from(DAYS_BACK))
    events = data.draw(_events(wide_registry, before | EVENT_MOMENT))
    label = st.tuples(st.sampled_from((*CUSTOMERS, "K9")) | st.none(), st.sampled_from(pool) | LABEL_MOMENT | st.none())
    label_moments = data.draw(st.lists(label, min_size=1, max_size=12))
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    pq.write_table(events, root / "customer_events.parquet")
    snapshot = [pa.field("customer_id", pa.string()), pa.field("feature_ts", TS)]
    snapshot += [pa.field(f.name, ARROW[f.dtype]) for f in schema.snapshot_features]
    pq.write_table(pa.schema(snapshot).empty_table(), root / "customer_snapshots.parquet")
    store = OfflineStore(root, wide_registry)
    if erase is not None:
        store.erasures.record("customer", erase)
    labels = _labels(label_moments)

    expected = _reference(root, schema, labels, {erase} if erase else set())
    got = store.point_in_time("customer", labels).select(expected.column_names)

    _same(got, expected)
