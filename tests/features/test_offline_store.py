"""The offline store joins point-in-time: a label row sees the latest snapshot at or before it, never a later
one, and a view older than its TTL is null, exactly as the online store would serve it."""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import EntitySchema, OfflineStore, OfflineStoreError, Registry
from tests.features.test_events import NOW, _events_table, _random_events

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
AGENTS = ("A1", "A2", "A3")
ARROW_TYPE = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "category": pa.string()}


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _snapshot_table(schema: EntitySchema, rows: list[dict[str, Any]]) -> pa.Table:
    """A snapshot table of ``schema``'s entity with every declared column, typed as the world writes it."""
    fields = [
        pa.field(schema.join_key, pa.string()),
        pa.field("feature_ts", TS),
        *(pa.field(f.name, ARROW_TYPE[f.dtype]) for f in schema.features),
    ]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _agent_row(schema: EntitySchema, agent_id: str, hours: float, fill: int) -> dict[str, Any]:
    values = {"float": 0.1 * fill, "int": fill, "bool": fill % 2 == 1}
    return {
        "agent_id": agent_id,
        "feature_ts": _at(hours),
        **{f.name: values[f.dtype] for f in schema.features},
    }


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# ---- point-in-time correctness, for every input ----------------------------------------------------


@st.composite
def agent_history(draw: st.DrawFn, schema: EntitySchema) -> tuple[list[dict[str, Any]], list[tuple[str, float]]]:
    """Snapshots (unique per agent and time) and label rows, some placed exactly on a TTL boundary."""
    value = {
        "float": st.floats(-1e6, 1e6, allow_nan=False),
        "int": st.integers(-(2**40), 2**40),
        "bool": st.booleans(),
    }
    stamps = draw(st.lists(st.tuples(st.sampled_from(AGENTS), st.integers(0, 60 * 24)), unique=True, max_size=12))
    snapshots = []
    for agent_id, hours in stamps:
        features = {f.name: draw(st.none() | value[f.dtype]) for f in schema.features}
        snapshots.append({"agent_id": agent_id, "feature_ts": _at(hours), **features})
    free = st.tuples(st.sampled_from((*AGENTS, "A9")), st.integers(-24, 62 * 24).map(float))
    labels = st.lists(free, min_size=1, max_size=12)
    if stamps:
        # Just before a snapshot (it must not be seen), exactly at it, exactly one TTL after it (still
        # fresh) and one second past the TTL (stale).
        offsets = [-1.0, -1 / 3600, 0.0, 24.0, 24.0 + 1 / 3600, 30 * 24.0, 30 * 24.0 + 1 / 3600]
        edge = st.sampled_from(stamps).flatmap(lambda s: st.sampled_from(offsets).map(lambda d: (s[0], s[1] + d)))
        labels = st.lists(free | edge, min_size=1, max_size=12)
    return snapshots, draw(labels)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_point_in_time_sees_the_latest_fresh_snapshot(data: st.DataObject, registry: Registry, tmp_path: Path) -> None:
    schema = registry.entity("agent")
    snapshots, labels = data.draw(agent_history(schema))
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    pq.write_table(_snapshot_table(schema, snapshots), root / "agent_snapshots.parquet")
    label_table = pa.table(
        {
            "row": pa.array(range(len(labels)), pa.int64()),
            "agent_id": pa.array([a for a, _ in labels], pa.string()),
            "ts": pa.array([_at(h) for _, h in labels], TS),
        }
    )

    out = OfflineStore(root, registry).point_in_time("agent", label_table)

    assert out.num_rows == len(labels)
    got = sorted(out.to_pylist(), key=lambda r: r["row"])
    for (agent_id, hours), row in zip(labels, got, strict=True):
        ts = _at(hours)
        assert (row["agent_id"], row["ts"]) == (agent_id, ts)
        before = [s for s in snapshots if s["agent_id"] == agent_id and s["feature_ts"] <= ts]
        if not before:
            assert row["feature_ts"] is None
            assert all(row[name] is None for name in schema.names)
            continue
        latest = max(before, key=lambda s: s["feature_ts"])
        assert row["feature_ts"] <= ts
        assert row["feature_ts"] == latest["feature_ts"]
        for view in schema.views:
            fresh = ts - latest["feature_ts"] <= timedelta(days=view.ttl_days)
            for feature in view.features:
                expected = latest[feature.name] if fresh else None
                assert _same(row[feature.name], expected), (
                    view.name,
                    feature.name,
                    row[feature.name],
                    expected,
                )


CUSTOMERS = ("K1", "K2")
DAY_US = 86_400 * 1_000_000
# Moments on a coarse grid (whole days back from NOW's day, at a few times of day) so that events, snapshots
# and labels often share a second or a day, where an off-by-one in a bound would show.
MOMENT = st.builds(
    lambda days, second: (int(NOW) // 86_400 - days) * DAY_US + second * 1_000_000,
    st.integers(0, 100),
    st.sampled_from([0, 1, 43_200, 86_399]),
)


def _customer_snapshots(schema: EntitySchema, stamps: list[tuple[int, str, int]]) -> pa.Table:
    """Snapshots at (fill, customer, microsecond) stamps, each value derived from its fill number."""
    rows = []
    for fill, customer, us in stamps:
        values = {"float": 0.5 * fill, "int": fill, "bool": fill % 2 == 1}
        rows.append(
            {
                "customer_id": customer,
                "feature_ts": datetime.fromtimestamp(us / 1e6, UTC),
                **{
                    f.name: (f.categories or ("",))[fill % len(f.categories or ("",))]
                    if f.dtype == "category"
                    else values[f.dtype]
                    for f in schema.snapshot_features
                },
            }
        )
    fields = [
        pa.field("customer_id", pa.string()),
        pa.field("feature_ts", TS),
        *(pa.field(f.name, ARROW_TYPE[f.dtype]) for f in schema.snapshot_features),
    ]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    event_moments=st.lists(st.tuples(st.sampled_from(CUSTOMERS), MOMENT), min_size=1, max_size=40),
    snapshot_moments=st.lists(st.tuples(st.sampled_from(CUSTOMERS), MOMENT), unique=True, max_size=8),
    label_moments=st.lists(st.tuples(st.sampled_from(CUSTOMERS), MOMENT), min_size=1, max_size=10),
    cut=MOMENT,
)
def test_nothing_after_a_label_reaches_its_row(
    registry: Registry,
    tmp_path: Path,
    seed: int,
    event_moments: list[tuple[str, int]],
    snapshot_moments: list[tuple[str, int]],
    label_moments: list[tuple[str, int]],
    cut: int,
) -> None:
    """Every label at or before ``cut`` gets the same row whether or not the history after ``cut`` exists.

    The history always holds events of every type and a snapshot one microsecond after the cut, and the
    drawn labels fall on both sides of it, so a bound that lets the future in fails here.
    """
    schema = registry.entity("customer")
    rng = random.Random(seed)
    # Enough random events that every customer has one of every type to copy past the cut.
    samples = [e for c in CUSTOMERS for e in _random_events(rng, registry, c, 300)]
    future = {(e.entity_id, e.type): e for e in samples}
    assert len(future) == len(CUSTOMERS) * sum(spec.entity == "customer" for spec in registry.events.values())
    events = [
        dataclasses.replace(e, entity_id=c, occurred_at=us / 1e6, event_id=f"x{i:03d}")
        for i, ((c, us), e) in enumerate(zip(event_moments, samples, strict=False))
    ]
    events += [
        dataclasses.replace(e, occurred_at=(cut + 1) / 1e6, event_id=f"future-{e.type}-{e.entity_id}")
        for e in future.values()
    ]
    snapshots = [*snapshot_moments, *((c, cut + 1) for c in CUSTOMERS if (c, cut + 1) not in snapshot_moments)]
    numbered = [(fill, c, us) for fill, (c, us) in enumerate(snapshots)]
    labels = pa.table(
        {
            "row": pa.array(range(len(label_moments)), pa.int64()),
            "customer_id": pa.array([c for c, _ in label_moments], pa.string()),
            "ts": pa.array([datetime.fromtimestamp(us / 1e6, UTC) for _, us in label_moments], TS),
        }
    )

    def frame(until: int | None) -> list[dict[str, Any]]:
        """The rows of the labels up to the cut, over the history up to ``until`` (all of it when None)."""
        root = Path(tempfile.mkdtemp(dir=tmp_path))
        kept = [e for e in events if until is None or e.occurred_at <= until / 1e6]
        pq.write_table(_events_table(registry, kept), root / "customer_events.parquet")
        stamps = [s for s in numbered if until is None or s[2] <= until]
        pq.write_table(_customer_snapshots(schema, stamps), root / "customer_snapshots.parquet")
        out = OfflineStore(root, registry).point_in_time("customer", labels).to_pylist()
        return sorted((r for r in out if r["ts"] <= datetime.fromtimestamp(cut / 1e6, UTC)), key=lambda r: r["row"])

    everything, until_cut = frame(None), frame(cut)

    assert len(everything) == sum(us <= cut for _, us in label_moments)
    for full, truncated in zip(everything, until_cut, strict=True):
        for name, value in full.items():
            other = truncated[name]
            if isinstance(value, float) and isinstance(other, float):
                assert math.isclose(value, other, rel_tol=1e-12, abs_tol=1e-12), (name, value, other)
            else:
                assert value == other, (name, value, other)


def test_ttl_boundary_and_defaults(registry: Registry, tmp_path: Path) -> None:
    schema = registry.entity("agent")
    rows = [_agent_row(schema, "A1", 0, 3), _agent_row(schema, "A1", 48, 4)]
    pq.write_table(_snapshot_table(schema, rows), tmp_path / "agent_snapshots.parquet")
    store = OfflineStore(tmp_path, registry)
    labels = pa.table(
        {
            "agent_id": ["A1", "A1", "A1", "A1", "A2"],
            "ts": pa.array([_at(-1), _at(24), _at(24 + 1 / 3600), _at(48 + 31 * 24), _at(10)], TS),
            "outcome": [1, 2, 3, 4, 5],
        }
    )
    out = store.point_in_time("agent", labels)
    assert out.column("outcome").to_pylist() == [1, 5, 2, 3, 4]  # ordered by ts, then agent_id
    assert out.column("feature_ts").to_pylist() == [None, None, _at(0), _at(0), _at(48)]
    # agent_state (TTL 1 day) is fresh exactly one day after the snapshot and stale one second later.
    assert out.column("current_load").to_pylist() == [None, None, 3, None, None]
    # agent_profile (TTL 30 days) is still fresh a day later, stale 31 days later.
    assert out.column("proficiency_sales").to_pylist() == [
        None,
        None,
        pytest.approx(0.3),
        pytest.approx(0.3),
        None,
    ]
    matrix = store.matrix("agent", out)
    load, cap, prof = (
        schema.index["current_load"],
        schema.index["max_load"],
        schema.index["proficiency_sales"],
    )
    # Missing or stale values become the declared defaults (current_load 0, max_load 1, proficiency 0.5).
    assert matrix[:, load].tolist() == [0.0, 0.0, 3.0, 0.0, 0.0]
    assert matrix[:, cap].tolist() == [1.0, 1.0, 3.0, 1.0, 1.0]
    assert matrix[:, prof].tolist() == pytest.approx([0.5, 0.5, 0.3, 0.3, 0.5])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    end_day=st.integers(min_value=18_000, max_value=21_000),
    hour=st.floats(min_value=0.0, max_value=23.99),
    days_later=st.integers(min_value=0, max_value=44),
)
def test_days_to_contract_end_is_derived_at_each_labels_day(
    registry: Registry, tmp_path: Path, end_day: int, hour: float, days_later: int
) -> None:
    """The snapshot states the contract's end day; a label ``days_later`` after the snapshot sees that many fewer
    days to it (a week later: 7 fewer), counted in UTC days as the online store counts them."""
    schema = registry.entity("customer")
    snapshot_day = int(T0.timestamp() // 86_400)
    snapshots = _customer_snapshots(schema, [(1, "K1", int(T0.timestamp() * 1e6))])
    snapshots = snapshots.set_column(
        snapshots.schema.get_field_index("contract_end_day"), "contract_end_day", pa.array([end_day], pa.int64())
    )
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    pq.write_table(snapshots, root / "customer_snapshots.parquet")
    pq.write_table(_events_table(registry, []), root / "customer_events.parquet")
    at_snapshot, later, week = _at(hour), _at(hour + 24 * days_later), _at(hour + 24 * 7)
    labels = pa.table({"customer_id": ["K1"] * 3, "ts": pa.array([at_snapshot, later, week], TS), "n": [0, 1, 2]})
    out = OfflineStore(root, registry).point_in_time("customer", labels).sort_by("n")
    derived = out.column("days_to_contract_end").to_pylist()
    assert derived[0] == end_day - snapshot_day
    assert derived[0] - derived[1] == days_later
    assert derived[0] - derived[2] == 7
    assert out.column("contract_end_day").to_pylist() == [end_day] * 3
    # Past the view's TTL (45 days) the source is stale, and the derived value with it.
    stale = pa.table({"customer_id": ["K1"], "ts": pa.array([_at(24 * 46)], TS)})
    assert OfflineStore(root, registry).point_in_time("customer", stale).column("days_to_contract_end").to_pylist() == [
        None
    ]


def test_custom_timestamp_column(registry: Registry, tmp_path: Path) -> None:
    schema = registry.entity("agent")
    pq.write_table(_snapshot_table(schema, [_agent_row(schema, "A1", 0, 2)]), tmp_path / "agent_snapshots.parquet")
    labels = pa.table({"agent_id": ["A1"], "decided_at": pa.array([_at(1)], TS)})
    out = OfflineStore(tmp_path, registry).point_in_time("agent", labels, ts_column="decided_at")
    assert out.column("max_load").to_pylist() == [2]
    assert out.column("feature_ts").to_pylist() == [_at(0)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), group_rows=st.integers(1, 40), batch=st.integers(1, 120), erase=st.booleans())
def test_scanned_events_are_the_ordered_ones_in_file_order(
    registry: Registry, seed: int, group_rows: int, batch: int, erase: bool
) -> None:
    """Scanned, one file's events are read by pyarrow instead of DuckDB: the rows it keeps are the ordered
    (DuckDB) read's, in file order across row groups (materialization adds a day's amounts in that order), with
    bounds met exactly, and nulls and erasures treated alike, but for an event without an entity, which the
    scan leaves out (it is no entity's state)."""
    rng = random.Random(seed)
    events = [e for i in range(4) for e in _random_events(rng, registry, f"C{i}", 25)]
    rng.shuffle(events)
    table = _events_table(registry, events)
    for at, name, kind in ((1, "customer_id", pa.string()), (2, "occurred_at", TS), (3, "type", pa.string())):
        holes = pa.array([rng.random() < 0.05 for _ in events])
        table = table.set_column(at, name, pc.if_else(holes, pa.scalar(None, kind), table[name]))
    types = [t for t, e in registry.events.items() if e.entity == "customer"]
    fields = list(registry.event_columns("customer"))
    since, until = sorted(datetime.fromtimestamp(e.occurred_at, UTC) for e in rng.sample(events, 2))
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(table, Path(tmp) / "customer_events.parquet", row_group_size=group_rows)
        offline = OfflineStore(Path(tmp), registry)
        if erase:
            offline.erasures.record("customer", "C1")
        narrowed: dict[str, Any] = {
            "since": since,
            "until": until,
            "whole": rng.sample(types, rng.randint(0, 2)),
            "types": rng.sample(types, rng.randint(len(types) // 2, len(types))),
            "columns": ["event_id", "customer_id", "occurred_at", "type", *rng.sample(fields, rng.randint(0, 4))],
        }
        scans = list(offline.scan_events("customer", batch_rows=batch, **narrowed))
        ordered = offline.events("customer", **narrowed)
    assert all(0 < s.table.num_rows <= batch for s in scans)
    assert sum(s.table.num_rows for s in scans) == len(events)
    unordered = pa.concat_tables([s.table.filter(s.keep) for s in scans])
    assert unordered.column_names == ordered.column_names
    in_file = {e.event_id: i for i, e in enumerate(events)}
    positions = [in_file[i] for i in unordered.column("event_id").to_pylist()]
    assert positions == sorted(positions)
    by_time = pc.sort_indices(unordered, [("occurred_at", "ascending"), ("event_id", "ascending")])
    assert unordered.take(by_time).to_pylist() == [e for e in ordered.to_pylist() if e["customer_id"] is not None]


# ---- errors ----------------------------------------------------------------------------------------


def test_missing_table_names_the_file(registry: Registry, tmp_path: Path) -> None:
    store = OfflineStore(tmp_path, registry)
    with pytest.raises(OfflineStoreError, match=r"agent_snapshots\.parquet: no snapshot table for entity 'agent'"):
        store.latest("agent")
    labels = pa.table({"agent_id": ["A1"], "ts": pa.array([T0], TS)})
    with pytest.raises(OfflineStoreError, match=r"agent_snapshots\.parquet"):
        store.point_in_time("agent", labels)


@pytest.mark.parametrize("column", ["feature_ts", "agent_id", "max_load", "speaks_fr"])
def test_missing_column_names_it(registry: Registry, tmp_path: Path, column: str) -> None:
    schema = registry.entity("agent")
    table = _snapshot_table(schema, [_agent_row(schema, "A1", 0, 1)]).drop_columns([column])
    pq.write_table(table, tmp_path / "agent_snapshots.parquet")
    store = OfflineStore(tmp_path, registry)
    with pytest.raises(OfflineStoreError, match=rf"agent_snapshots\.parquet: missing column\(s\) {column}$"):
        store.latest("agent")
    with pytest.raises(OfflineStoreError, match=rf"missing column\(s\) {column}$"):
        store.point_in_time("agent", pa.table({"agent_id": ["A1"], "ts": pa.array([T0], TS)}))


@pytest.mark.parametrize("reader", ["events", "scan_events"], ids=["duckdb", "pyarrow"])
def test_events_table_missing_or_short_of_a_column_is_named(registry: Registry, tmp_path: Path, reader: str) -> None:
    """Both readers of the events table refuse it alike: absent, or without a declared field."""
    store = OfflineStore(tmp_path, registry)
    with pytest.raises(OfflineStoreError, match=r"customer_events\.parquet: no events table for entity 'customer'"):
        getattr(store, reader)("customer")
    table = _events_table(registry, _random_events(random.Random(3), registry, "C1", 5)).drop_columns(["nps"])
    pq.write_table(table, tmp_path / "customer_events.parquet")
    with pytest.raises(OfflineStoreError, match=r"customer_events\.parquet: missing column\(s\) nps$"):
        getattr(store, reader)("customer")


@pytest.mark.parametrize(
    ("labels", "ts_column", "missing"),
    [
        (pa.table({"agent_id": ["A1"], "when": pa.array([T0], TS)}), "ts", "ts"),
        (pa.table({"agent": ["A1"], "ts": pa.array([T0], TS)}), "ts", "agent_id"),
        (pa.table({"agent_id": ["A1"], "ts": pa.array([T0], TS)}), "decided_at", "decided_at"),
    ],
    ids=["no-ts", "no-join-key", "no-custom-ts"],
)
def test_label_table_without_a_column_names_it(
    registry: Registry, tmp_path: Path, labels: pa.Table, ts_column: str, missing: str
) -> None:
    schema = registry.entity("agent")
    pq.write_table(_snapshot_table(schema, [_agent_row(schema, "A1", 0, 1)]), tmp_path / "agent_snapshots.parquet")
    with pytest.raises(OfflineStoreError, match=f"label table has no column '{missing}'"):
        OfflineStore(tmp_path, registry).point_in_time("agent", labels, ts_column=ts_column)


# ---- latest and matrix on the simulated world ------------------------------------------------------


@pytest.fixture(scope="module")
def raw_snapshots(world: Path) -> pa.Table:
    return pq.read_table(world / "customer_snapshots.parquet")


@pytest.fixture(scope="module")
def raw_rows(raw_snapshots: pa.Table) -> list[dict[str, Any]]:
    return raw_snapshots.to_pylist()


def _world_end(raw: pa.Table) -> datetime:
    end: datetime = pc.max(raw.column("feature_ts")).as_py()
    return end


@pytest.mark.parametrize(
    "days_before_end",
    [None, 0.0, 1.0, 30.0, 45.5, 200.0],
    ids=["all", "at-end", "day-before", "at-a-snapshot", "between", "before-any"],
)
def test_latest_never_returns_a_newer_snapshot(
    offline: OfflineStore,
    registry: Registry,
    raw_snapshots: pa.Table,
    raw_rows: list[dict[str, Any]],
    days_before_end: float | None,
) -> None:
    end = _world_end(raw_snapshots)
    as_of = None if days_before_end is None else end - timedelta(days=days_before_end)
    out = offline.latest("customer", as_of)

    expected: dict[str, dict[str, Any]] = {}
    for row in raw_rows:
        if as_of is not None and row["feature_ts"] > as_of:
            continue
        known = expected.get(row["customer_id"])
        if known is None or row["feature_ts"] > known["feature_ts"]:
            expected[row["customer_id"]] = row
    # Snapshot features only: event features are aggregated from the events table, not snapshotted.
    names = ("customer_id", "feature_ts", *registry.entity("customer").snapshot_names)
    assert out.column_names == list(names)
    got = out.to_pylist()
    assert [r["customer_id"] for r in got] == sorted(expected)  # one row per customer, ordered by id
    assert got == [{n: expected[r["customer_id"]][n] for n in names} for r in got]
    if as_of is not None:
        assert all(r["feature_ts"] <= as_of for r in got)
    if days_before_end == 200.0:
        assert got == []
    if days_before_end is None:
        assert len(got) == len(set(raw_snapshots.column("customer_id").to_pylist()))


def test_matrix_shape_and_codes(offline: OfflineStore, registry: Registry, raw_snapshots: pa.Table) -> None:
    schema = registry.entity("customer")
    ids = sorted(set(raw_snapshots.column("customer_id").to_pylist()), reverse=True)
    table = offline.as_of("customer", ids)
    assert table.column("customer_id").to_pylist() == ids  # rows in the order asked
    assert table.column_names == ["customer_id", "feature_ts", *schema.names]
    x = offline.matrix("customer", table)
    assert x.shape == (table.num_rows, len(schema.names)) == (len(ids), 40)
    assert x.dtype == np.float64
    for feature in schema.features:
        column = x[:, schema.index[feature.name]]
        values = [feature.default if v is None else v for v in table.column(feature.name).to_pylist()]
        if feature.dtype == "category":
            assert feature.categories is not None
            expected = [math.nan if v is None else float(feature.categories.index(v)) for v in values]
        elif feature.dtype == "bool":
            expected = [math.nan if v is None else 1.0 if v else 0.0 for v in values]
        else:
            expected = [math.nan if v is None else float(v) for v in values]
        assert np.array_equal(column, np.array(expected), equal_nan=True), feature.name
    plan = x[:, schema.index["plan"]]
    assert set(np.unique(plan[~np.isnan(plan)]).tolist()) == {0.0, 1.0, 2.0}
    assert int((plan == 2.0).sum()) == pc.sum(pc.equal(table.column("plan"), "premium")).as_py()
    # Event features are there too, aggregated from events: counts never missing, a window within a wider one.
    logins_7d, logins_30d = x[:, schema.index["logins_7d"]], x[:, schema.index["logins_30d"]]
    assert not np.isnan(logins_30d).any()
    assert (logins_7d <= logins_30d).all()
    assert logins_30d.sum() > 0
    contacts = [x[:, schema.index[f"contacts_{d}d"]] for d in (7, 30, 90)]
    assert (contacts[0] <= contacts[1]).all()
    assert (contacts[1] <= contacts[2]).all()
