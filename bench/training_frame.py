"""A training frame at scale: the point-in-time join of a label table over millions of events.

Synthetic offline tables shaped by the feature contract (every customer event type of ``registry.yaml``
with its declared payload fields, and a snapshot of every snapshot view every 30 days) are written as parquet in a
temporary folder by a child process, so neither the generation's time nor its memory is counted. This
process then times :meth:`features.OfflineStore.point_in_time` for the labels and prints the frame's size,
seconds and rows/s, its own peak RSS (DuckDB runs in-process, so its memory is in that figure) and the
machine's cores. These machines are noisy, so the join is printed beside a same-run baseline: one DuckDB
scan and group-by of the same events file.

``--world DIR`` times the join of a simulated world's churn labels instead (``nba simulate --out DIR``): the
demo's training frame.

    .venv/bin/python -m bench.training_frame [--events N --labels M --customers C | --world DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench import peak_rss_gb
from features import OfflineStore, Registry
from features.registry import DAY_SECONDS, EntitySchema, EventField
from training.world.tables import _ids, _ts

ENTITY = "customer"
END = datetime(2026, 6, 1, tzinfo=UTC)
"""The newest moment of the synthetic history; fixed so two runs join the same tables."""
HISTORY_DAYS = 365
"""Events span a year, twice the longest window, so every label's horizon is full of events."""
LABEL_DAYS = 180
"""Labels fall in the last half-year of the history."""
SNAPSHOT_MONTHS = 12
LOGIN_WEIGHT = 24.0
"""Logins outnumber every other event type about this many times over, as in the simulated world."""
CHUNK = 1_000_000
SEED = 7
US = 1_000_000
TS = pa.timestamp("us", tz="UTC")
ARROW_TYPE = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "category": pa.string(), "str": pa.string()}


def _payload(rng: np.random.Generator, spec: EventField, n: int) -> np.ndarray:
    """``n`` values of a field within its declared bounds (codes into ``_names`` for categories and strings)."""
    dtype = spec.dtype
    if dtype == "bool":
        return rng.random(n) < 0.3
    if dtype == "float":
        low = spec.min if spec.min is not None else 0.0
        high = spec.max if spec.max is not None else low + 1_000.0
        return np.round(rng.uniform(low, high, n), 3)
    if dtype == "int":
        return rng.integers(0, 100, n)
    return rng.integers(0, len(_names(spec)), n)


def _names(spec: EventField) -> pa.Array:
    """The values a category or string field takes: its categories, or a few action ids."""
    return pa.array(spec.categories or [f"action_{i}" for i in range(8)])


def _events(registry: Registry, rng: np.random.Generator, n: int, customers: int, path: Path) -> None:
    """``n`` events of the entity's declared types, oldest first, written in chunks to bound the memory."""
    types = [name for name, e in registry.events.items() if e.entity == ENTITY]
    weights = np.array([LOGIN_WEIGHT if t == "login" else 1.0 for t in types])
    columns = registry.event_columns(ENTITY)
    start = int(END.timestamp()) - HISTORY_DAYS * DAY_SECONDS
    occurred = np.sort(rng.integers(start, int(END.timestamp()), n))
    fields = [
        pa.field("event_id", pa.string()),
        pa.field(f"{ENTITY}_id", pa.string()),
        pa.field("occurred_at", TS),
        pa.field("type", pa.string()),
        *(pa.field(name, ARROW_TYPE[dtype]) for name, dtype in columns.items()),
    ]
    with pq.ParquetWriter(path, pa.schema(fields)) as writer:
        for at in range(0, n, CHUNK):
            m = min(CHUNK, n - at)
            kind = rng.choice(len(types), m, p=weights / weights.sum())
            data: dict[str, pa.Array] = {
                "event_id": _ids("E", np.arange(at + 1, at + m + 1), 10),
                f"{ENTITY}_id": _ids("C", rng.integers(1, customers + 1, m), 7),
                "occurred_at": _ts(occurred[at : at + m] * US),
                "type": pc.take(pa.array(types), pa.array(kind)),
            }
            for name, dtype in columns.items():
                has = np.zeros(m, dtype=bool)
                spec = None
                for code, t in enumerate(types):
                    declared = registry.events[t].fields.get(name)
                    if declared is not None:
                        has |= kind == code
                        spec = declared
                assert spec is not None
                values = _payload(rng, spec, m)
                if dtype in ("category", "str"):
                    data[name] = pc.take(_names(spec), pa.array(values, mask=~has))
                else:
                    data[name] = pa.array(values, mask=~has)
            writer.write_table(pa.table(data, schema=writer.schema))


def _snapshots(schema: EntitySchema, rng: np.random.Generator, customers: int, path: Path) -> None:
    """One snapshot of every customer every 30 days, the newest at the end of the history."""
    stamps = np.arange(SNAPSHOT_MONTHS)[::-1] * 30 * DAY_SECONDS
    n = customers * SNAPSHOT_MONTHS
    data: dict[str, pa.Array] = {
        schema.join_key: _ids("C", np.tile(np.arange(1, customers + 1), SNAPSHOT_MONTHS), 7),
        "feature_ts": _ts((int(END.timestamp()) - np.repeat(stamps, customers)) * US),
    }
    for f in schema.snapshot_features:
        if f.dtype == "category":
            assert f.categories is not None
            data[f.name] = pc.take(pa.array(f.categories), pa.array(rng.integers(0, len(f.categories), n)))
        elif f.dtype == "bool":
            data[f.name] = pa.array(rng.random(n) < 0.5)
        elif f.dtype == "int":
            data[f.name] = pa.array(rng.integers(-100, 100, n))
        else:
            data[f.name] = pa.array(np.round(rng.normal(50, 20, n), 2))
    pq.write_table(pa.table(data), path)


def _labels(rng: np.random.Generator, n: int, customers: int, path: Path) -> None:
    """Churn-style labels: a customer, a moment in the last half-year, an outcome."""
    end = int(END.timestamp())
    table = pa.table(
        {
            f"{ENTITY}_id": _ids("C", rng.integers(1, customers + 1, n), 7),
            "ts": _ts(rng.integers(end - LABEL_DAYS * DAY_SECONDS, end, n) * US),
            "churned": pa.array(rng.random(n) < 0.1, pa.bool_()).cast(pa.int8()),
        }
    )
    pq.write_table(table, path)


def generate(root: Path, *, events: int, labels: int, customers: int) -> None:
    """Write the entity's events and snapshots and a label table under ``root``."""
    registry = Registry.load()
    store = OfflineStore(root, registry)
    rng = np.random.default_rng(SEED)
    _events(registry, rng, events, customers, store.events_path(ENTITY))
    _snapshots(registry.entity(ENTITY), rng, customers, store.table_path(ENTITY))
    _labels(rng, labels, customers, root / "labels.parquet")


def _generate_in_child(root: Path, *, events: int, labels: int, customers: int) -> None:
    """:func:`generate` in a child process, so that neither its time nor its memory is counted."""
    start = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(
        target=generate, args=(root,), kwargs={"events": events, "labels": labels, "customers": customers}
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"generating the tables failed (exit code {child.exitcode})")
    size_mb = sum(p.stat().st_size for p in root.iterdir()) / 1024**2
    print(
        f"generated {events:,} events, {customers * SNAPSHOT_MONTHS:,} snapshots and {labels:,} labels of "
        f"{customers:,} customers ({size_mb:,.0f} MB of parquet) in {time.perf_counter() - start:.1f} s, in a child "
        "process (not counted below)"
    )


def main(argv: list[str] | None = None) -> None:
    """Generate in a child process, then time the join here and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.training_frame", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="event rows (default 10,000,000)")
    parser.add_argument("--labels", type=int, default=1_000_000, help="label rows (default 1,000,000)")
    parser.add_argument("--customers", type=int, default=200_000, help="distinct customers (default 200,000)")
    parser.add_argument("--world", type=Path, help="a simulated world's folder: join its churn labels instead")
    args = parser.parse_args(argv)
    for name in ("events", "labels", "customers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.world is not None and not (args.world / "churn_labels.parquet").is_file():
        parser.error(f"--world: {args.world} holds no churn_labels.parquet")

    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores, DuckDB {duckdb.__version__}")
    with tempfile.TemporaryDirectory(prefix="nba-frame-") as tmp:
        if args.world is not None:
            root, labels_file = args.world, args.world / "churn_labels.parquet"
        else:
            root, labels_file = Path(tmp), Path(tmp) / "labels.parquet"
            _generate_in_child(root, events=args.events, labels=args.labels, customers=args.customers)
        store = OfflineStore(root, Registry.load())
        labels = pq.read_table(labels_file)
        start = time.perf_counter()
        scanned = (
            duckdb.connect()
            .sql(f"SELECT {ENTITY}_id, type, count(*) FROM read_parquet('{store.events_path(ENTITY)}') GROUP BY ALL")
            .fetchall()
        )
        scan_s = time.perf_counter() - start
        print(f"baseline: DuckDB scan + group-by of the events file ({len(scanned):,} groups) in {scan_s:.2f} s")

        start, cpu = time.perf_counter(), time.process_time()
        frame = store.point_in_time(ENTITY, labels)
        frame_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        assert frame.num_rows == labels.num_rows
        print(
            f"frame: {frame.num_rows:,} rows x {frame.num_columns} columns in {frame_s:.1f} s, {cpu_s:.1f} s of CPU "
            f"({frame.num_rows / frame_s:,.0f} rows/s; {frame_s / scan_s:.1f}x the scan baseline)"
        )
        print(f"peak RSS: {peak_rss_gb():.2f} GB (this process, DuckDB in it; generation not included)")


if __name__ == "__main__":
    main()
