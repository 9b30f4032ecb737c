"""The erasure ledger: which entities were erased on request (right to erasure), honoured offline.

The offline tables are the record the project was given and are not rewritten per request: rewriting every
parquet table on each erasure would be slow and would race a running materialization or training job.
Instead each erasure is added to one small ledger, ``erasures.parquet`` beside the tables, and the
:class:`~features.offline_store.OfflineStore` leaves every listed id out of its sources (snapshots, events,
and the label rows of a point-in-time frame). A training frame built, or a materialization run, after the
erasure never sees the entity again. The ledger keeps the id itself, and only with the time of the erasure:
a suppression list cannot work without the id it suppresses.

A write is atomic (a new file renamed over the old one) and serialised by an exclusive lock on a lock file
beside it, so two service workers erasing at the same moment both land and a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.errors import OfflineStoreError

ERASURES_FILE = "erasures.parquet"
SCHEMA = pa.schema([("entity", pa.string()), ("entity_id", pa.string()), ("erased_at", pa.timestamp("us", "UTC"))])


class ErasureLedger:
    """The append-only list of erased (entity, id) pairs at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> pa.Table:
        if not self.path.is_file():
            return SCHEMA.empty_table()
        try:
            return pq.read_table(self.path, schema=SCHEMA)
        except (OSError, pa.ArrowInvalid) as exc:
            raise OfflineStoreError(f"{self.path}: cannot read the erasure ledger: {exc}") from exc

    def record(self, entity: str, entity_id: str, *, at: datetime | None = None) -> bool:
        """Add ``entity_id`` to the ledger; False when it was there already (so retrying is safe)."""
        when = at if at is not None else datetime.now(UTC)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_suffix(".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                table = self._read()
                if entity_id in self._ids(table, entity):
                    return False
                row = pa.table({"entity": [entity], "entity_id": [entity_id], "erased_at": [when]}, schema=SCHEMA)
                partial = self.path.with_suffix(".parquet.partial")
                pq.write_table(pa.concat_tables([table, row]), partial)
                os.replace(partial, self.path)
        except OSError as exc:
            raise OfflineStoreError(f"{self.path}: cannot record the erasure: {exc}") from exc
        return True

    @staticmethod
    def _ids(table: pa.Table, entity: str) -> set[str]:
        rows = table.filter(pc.equal(table.column("entity"), entity))
        return set(rows.column("entity_id").to_pylist())

    def ids(self, entity: str) -> set[str]:
        """The erased ids of ``entity``."""
        return self._ids(self._read(), entity)
