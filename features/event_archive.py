"""Live events appended to the offline store, so training sees the same history serving saw.

Each append writes one parquet part, ``{root}/{entity}_events/part-*.parquet``, in the human form of
``{entity}_events.parquet`` (``event_id``, join key, ``occurred_at``, ``type``, one column per declared field).
A part is written under a hidden temporary name, flushed to disk, then renamed: a crash leaves either the
whole part or a stray temporary file that no reader globs, never half a table.

The same event may be archived more than once: a stream consumer that dies after archiving but before
acknowledging gets the entry again, and duplicates are archived on purpose so that a crash between the
online apply and the archive loses nothing. Readers therefore see the base table and the parts through
:func:`events_source`, which keeps one row per (join key, ``event_id``), the first one archived: the same
identity and the same winner as the online store's idempotent apply.

:meth:`EventArchive.compact` merges the small parts into one, so a long-running consumer does not leave
the offline reads a file per batch.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from features.event_state import Event
from features.registry import Registry

_ARROW_TYPES = {
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "category": pa.string(),
    "str": pa.string(),
}
COMPACT_BELOW_BYTES = 64 * 1024 * 1024
"""Parts smaller than this are merged by :meth:`EventArchive.compact`; bigger ones are left as they are, so a
compaction never rewrites the whole history again."""


def parts_dir(root: Path, entity: str) -> Path:
    """The folder of ``entity``'s archived parts, beside its ``{entity}_events.parquet``."""
    return root / f"{entity}_events"


def archived_parts(root: Path, entity: str) -> list[Path]:
    """``entity``'s complete parts, oldest first (the names sort by the time they were written)."""
    folder = parts_dir(root, entity)
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def _sql_text(value: str) -> str:
    return "'{}'".format(value.replace("'", "''"))


def events_source(files: Sequence[Path], join_key: str) -> str:
    """A DuckDB table expression over ``files`` (the base table first, then parts) with duplicates dropped.

    One row per (``join_key``, ``event_id``): the one in the earliest file, and within a file the earliest row,
    which is the event as it was first archived. ``union_by_name`` lets a part written before the contract
    gained a field sit beside newer ones (its column reads as null).
    """
    listed = ", ".join(_sql_text(str(f)) for f in files)
    rank = " ".join(f"WHEN {_sql_text(str(f))} THEN {i}" for i, f in enumerate(files))
    return f"""(
        SELECT * EXCLUDE (filename, file_row_number)
        FROM read_parquet([{listed}], union_by_name = true, filename = true, file_row_number = true)
        QUALIFY row_number() OVER (
            PARTITION BY {join_key}, event_id ORDER BY CASE filename {rank} END, file_row_number
        ) = 1
    )"""


class EventArchive:
    """Appends validated events to the offline store as parquet parts under ``root``."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self.registry = registry

    def table(self, entity: str, events: Sequence[Event]) -> pa.Table:
        """``events`` as rows of ``{entity}_events.parquet``: the envelope, then every declared field."""
        columns = self.registry.event_columns(entity)
        return pa.table(
            {
                "event_id": pa.array([e.event_id for e in events], pa.string()),
                self.registry.entity(entity).join_key: pa.array([e.entity_id for e in events], pa.string()),
                # Whole microseconds, rounded as the online store stamps them, so both order ties alike.
                "occurred_at": pa.array([round(e.occurred_at * 1_000_000) for e in events], pa.int64()).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "type": pa.array([e.type for e in events], pa.string()),
                **{
                    name: pa.array([e.fields.get(name) for e in events], _ARROW_TYPES[dtype])
                    for name, dtype in columns.items()
                },
            }
        )

    def append(self, entity: str, events: Sequence[Event]) -> Path | None:
        """Write ``events`` as one new part; returns its path (None when there was nothing to write)."""
        if not events:
            return None
        folder = parts_dir(self.root, entity)
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"
        _write_whole(part, self.table(entity, events))
        return part

    def compact(self, entity: str, *, below_bytes: int = COMPACT_BELOW_BYTES) -> int:
        """Merge ``entity``'s parts smaller than ``below_bytes`` into one; returns how many parts it replaced.

        Safe beside a running consumer, another consumer's compaction, readers and a crash. It runs only while
        no other compaction and no read (:func:`parts_held`) holds the folder, and otherwise skips its turn:
        the parts stay until the next. The merged part is a new file, complete before any part it replaces is
        removed, and a part written meanwhile was not listed, so it is not touched. A crash between the two
        leaves the rows twice, which every read drops (:func:`events_source`).
        """
        key = self.registry.entity(entity).join_key
        with _flocked(parts_dir(self.root, entity), fcntl.LOCK_EX | fcntl.LOCK_NB) as alone:
            small = [p for p in archived_parts(self.root, entity) if p.stat().st_size < below_bytes] if alone else []
            if len(small) < 2:
                return 0
            merged = (
                duckdb.connect()
                .sql(f"SELECT * FROM {events_source(small, key)} ORDER BY occurred_at, event_id")
                .to_arrow_table()
            )
            _write_whole(_beside(small[-1]), merged)
            for part in small:
                part.unlink()
            return len(small)


@contextmanager
def parts_held(root: Path, entity: str) -> Iterator[None]:
    """Hold ``entity``'s parts for a read: no compaction removes one from the listing to the last byte read.

    A training read can take longer than a busy consumer takes between two compactions, so a read that started
    again whenever a part it had listed was removed could start again forever; a compaction that skips its
    turn while a read runs only leaves a few more small parts until its next.
    """
    with _flocked(parts_dir(root, entity), fcntl.LOCK_SH):
        yield


@contextmanager
def _flocked(folder: Path, how: int) -> Iterator[bool]:
    """Whether ``folder``'s lock was granted as ``how`` asks (``flock``), held for the ``with`` block.

    Two consumers on one volume used to compact the same parts at once, and the merged part replaced the
    newest part in place: one consumer's DuckDB, reading that part while the other renamed over it, read
    the new file's bytes at the old file's offsets ("TProtocolException: Invalid data", seen in CI). The
    lock is advisory and the kernel releases it when its holder dies, so a crashed consumer or reader never
    leaves the folder locked. Without the folder there are no parts to guard, and in an archive this process
    may not write to, none to create the lock in: both are granted.
    """
    try:
        lock = os.open(folder / ".compact.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    except (FileNotFoundError, PermissionError):
        yield True
        return
    try:
        try:
            fcntl.flock(lock, how)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(lock)  # and with it the lock


def _beside(part: Path) -> Path:
    """A new part's name that sorts where ``part`` does: the same write time, another suffix.

    The merged part takes the place in the order of the newest part it holds, so the parts written before
    and after it keep their precedence in :func:`events_source`; a new name, not ``part`` itself, so no file
    a reader may have open is ever rewritten: parts are only created whole and removed.
    """
    written = part.name.split("-")[1]
    return part.with_name(f"part-{written}-{uuid.uuid4().hex[:12]}.parquet")


def _write_whole(path: Path, table: pa.Table) -> None:
    """Write ``table`` to ``path`` all or nothing: under a hidden temporary name, flushed to disk, renamed.

    The temporary name is derived from ``path``, which is new each time, so no two writers ever share one.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as out:
        pq.write_table(table, out)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)
