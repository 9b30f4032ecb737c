"""The erasure ledger records each id once, survives concurrent writers, and the offline store honours it."""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import OfflineStore, OfflineStoreError, Registry
from features.erasure import ERASURES_FILE, SCHEMA, ErasureLedger
from features.registry import ENTITY_ID_PATTERN


def test_record_is_idempotent_and_keeps_entities_apart(tmp_path: Path) -> None:
    ledger = ErasureLedger(tmp_path / "world" / ERASURES_FILE)
    assert ledger.ids("customer") == set()
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert ledger.record("customer", "C1", at=at) is True
    assert ledger.record("customer", "C1") is False
    assert ledger.record("agent", "C1") is True
    assert ledger.ids("customer") == {"C1"}
    assert ledger.ids("agent") == {"C1"}
    table = pq.read_table(ledger.path)
    assert table.schema == SCHEMA
    assert table.to_pylist()[0] == {"entity": "customer", "entity_id": "C1", "erased_at": at}
    assert not ledger.path.with_suffix(".parquet.partial").exists()


@settings(max_examples=25, deadline=None)
@given(ids=st.lists(st.from_regex(ENTITY_ID_PATTERN, fullmatch=True), min_size=1, max_size=8))
def test_every_recorded_id_is_read_back(ids: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:  # pytest's tmp_path is one per test, not per example
        ledger = ErasureLedger(Path(tmp) / ERASURES_FILE)
        for customer_id in ids:
            ledger.record("customer", customer_id)
        assert ledger.ids("customer") == set(ids)
        assert pq.read_table(ledger.path).num_rows == len(set(ids))


def test_concurrent_writers_all_land(tmp_path: Path) -> None:
    ledger = ErasureLedger(tmp_path / ERASURES_FILE)
    ids = [f"C{i:04d}" for i in range(120)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Each call opens its own lock file handle, as separate workers would.
        assert all(pool.map(lambda i: ErasureLedger(ledger.path).record("customer", i), ids))
    assert ledger.ids("customer") == set(ids)


def test_an_unwritable_ledger_is_an_offline_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(OfflineStoreError, match="cannot record the erasure"):
        ErasureLedger(blocker / ERASURES_FILE).record("customer", "C1")


def test_a_corrupt_ledger_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / ERASURES_FILE
    path.write_bytes(b"not parquet")
    with pytest.raises(OfflineStoreError, match=r"erasures\.parquet: cannot read the erasure ledger"):
        ErasureLedger(path).ids("customer")


def test_the_offline_store_leaves_erased_customers_out(tmp_path: Path, world: Path, registry: Registry) -> None:
    for table in world.iterdir():
        (tmp_path / table.name).symlink_to(table)
    offline = OfflineStore(tmp_path, registry)
    labels = pq.read_table(world / "churn_labels.parquet")
    before = offline.point_in_time("customer", labels)
    erased = {"C000042", "C000100"}
    for customer_id in erased:
        offline.erasures.record("customer", customer_id)

    frame = offline.point_in_time("customer", labels)
    kept = [c for c in labels.column("customer_id").to_pylist() if c not in erased]
    assert sorted(frame.column("customer_id").to_pylist()) == sorted(kept)
    assert frame.num_rows < before.num_rows
    latest = set(offline.latest("customer").column("customer_id").to_pylist())
    assert not latest & erased
    assert not set(offline.events("customer").column("customer_id").to_pylist()) & erased
    # Agents are another entity: a customer's erasure leaves them alone.
    assert offline.latest("agent").num_rows == OfflineStore(world, registry).latest("agent").num_rows
    # The rows of everyone else are exactly what they were.
    unchanged = before.filter(pc.invert(pc.is_in(before.column("customer_id"), value_set=pa.array(sorted(erased)))))
    assert frame.sort_by([("customer_id", "ascending"), ("ts", "ascending")]).equals(
        unchanged.sort_by([("customer_id", "ascending"), ("ts", "ascending")])
    )
