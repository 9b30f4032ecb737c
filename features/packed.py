"""An entity's snapshot features packed as one binary string: the encoding the online store reads.

Layout (little-endian float64 slots after an 8-byte tag)::

    tag | stamp(view 1) f(1,1) f(1,2) ... | stamp(view 2) f(2,1) ... | ...

- The tag is a hash of the layout itself (entity, views, features in order). A reader built from another
  contract finds a different tag and treats the value as absent, so a contract change can never make one
  feature's number be read as another's; it reads as a cold start until the next materialization.
- Values are stored already encoded, as the models see them (category index, 0/1 for booleans); NaN marks a
  missing value, and the contract's default is applied at read time, so changing a default needs no rewrite.
- A stamp is the epoch seconds a view was observed at; 0 means the view was never written. Every slot sits at
  a fixed offset, so a producer updating a few features (an agent's live load) rewrites only their bytes and
  their view's stamp (``SETRANGE``), and the rest of the value stays as it was.

Why this and not a hash with one field per feature (the first encoding): the read for 1 customer + 100 agents
is one MGET whose reply is turned into a matrix by ``numpy.frombuffer`` with no per-field parsing, and a
materialization is one MSET per batch of rows packed by numpy. ``make bench`` prints both encodings side
by side on the same data. What is given up: ``HGETALL`` no longer shows readable values (``nba features``
and ``GET /v1/customers/{id}/features`` do).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
import pyarrow as pa

from features.registry import EntitySchema, Feature

TAG_BYTES = 8
_F8 = np.dtype("<f8")


class PackedLayout:
    """Where each snapshot feature and view stamp of one entity kind sits in the packed value."""

    def __init__(self, schema: EntitySchema) -> None:
        self.views = tuple(v for v in schema.views if v.source == "snapshot")
        self.features = schema.snapshot_features
        # Derived features (see features.registry.Derivation) are computed at read time: they take no slot.
        self.stored: dict[str, tuple[Feature, ...]] = {
            v.name: tuple(f for f in v.features if f.derive is None) for v in self.views
        }
        stamp_slots: list[int] = []
        value_slots: list[int] = []
        self.segments: dict[str, tuple[int, int]] = {}
        """view name -> (first slot, number of slots) of its segment, stamp included."""
        slot = 0
        for view in self.views:
            width = len(self.stored[view.name])
            self.segments[view.name] = (slot, 1 + width)
            stamp_slots.append(slot)
            value_slots.extend(range(slot + 1, slot + 1 + width))
            slot += 1 + width
        self.width = slot
        self.size = TAG_BYTES + 8 * slot
        self.stamp_slots = np.array(stamp_slots, dtype=np.intp)
        self.value_slots = np.array(value_slots, dtype=np.intp)
        shape = [
            schema.name,
            [(v.name, [(f.name, f.dtype, f.categories) for f in self.stored[v.name]]) for v in self.views],
        ]
        self.tag = hashlib.sha256(json.dumps(shape).encode()).digest()[:TAG_BYTES]
        self._tag_word = np.frombuffer(self.tag, dtype=np.uint64)[0]
        self.absent = bytes(self.size)
        """What an absent value (or one of another size) reads as: a tag no layout has (a hash is never all zeros
        in practice)."""
        self.defaults = np.array([f.encode(None) for f in self.features], dtype=np.float64)
        """Each feature's encoded default (NaN where it has none), applied where a value is missing."""

    # ---- writing -----------------------------------------------------------------------------------

    def pack_table(self, table: pa.Table, observed_at: np.ndarray) -> list[bytes]:
        """One packed value per row of a snapshot table (all views stamped ``observed_at``), column-wise."""
        rows = np.zeros((table.num_rows, self.width), dtype=_F8)
        rows[:, self.stamp_slots] = observed_at[:, None]
        for feature, slot in zip(self.features, self.value_slots, strict=True):
            if feature.name in table.column_names:
                rows[:, slot] = feature.encode_column(table.column(feature.name), apply_default=False)
            else:
                rows[:, slot] = math.nan
        body = rows.tobytes()
        step = 8 * self.width
        return [self.tag + body[i : i + step] for i in range(0, len(body), step)]

    def pack_segments(self, row: Mapping[str, object], observed_at: float) -> list[tuple[int, bytes]]:
        """(byte offset, bytes) of each feature ``row`` carries and of the stamps of the views they belong to.

        Features the row does not name keep their stored values (a producer may send only what changed);
        a feature it holds as None is stored missing, so a value that became unknown is not served stale.
        """
        segments: list[tuple[int, bytes]] = []
        stamp = np.array([observed_at], dtype=_F8).tobytes()
        for view in self.views:
            first, _ = self.segments[view.name]
            carried = [(i, f) for i, f in enumerate(self.stored[view.name]) if f.name in row]
            if not carried:
                continue
            segments.append((TAG_BYTES + 8 * first, stamp))
            for i, feature in carried:
                raw = row[feature.name]
                value = math.nan if raw is None else feature.encode(_as_raw(raw), apply_default=False)
                segments.append((TAG_BYTES + 8 * (first + 1 + i), np.array([value], dtype=_F8).tobytes()))
        return segments

    @property
    def empty(self) -> bytes:
        """A value with every view unwritten and every feature missing: what a partial write starts from."""
        slots = np.full(self.width, math.nan, dtype=_F8)
        slots[self.stamp_slots] = 0.0
        return self.tag + slots.tobytes()

    # ---- reading -----------------------------------------------------------------------------------

    def unpack(self, blobs: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
        """The slot matrix (rows x width; NaN rows where absent) and which rows were present with this tag.

        Vectorised: the values are joined and viewed as one matrix whose first column is the tag, so telling
        present rows from absent or foreign ones is one comparison, not a Python test per row.
        """
        table = rows_of(blobs, self.size, self.absent)
        present = table[:, 0].view(np.uint64) == self._tag_word
        matrix = table[:, 1:]
        if not present.all():
            matrix = np.where(present[:, None], matrix, math.nan)
        return matrix, present


def rows_of(blobs: Sequence[bytes | None], size: int, absent: bytes) -> np.ndarray:
    """``blobs`` as a float64 matrix of ``size // 8`` columns, ``absent`` standing in for a missing value or one
    of another size. When every value is there at its size (the usual read), one join, no test per value."""
    return np.frombuffer(joined(blobs, size, absent), dtype=_F8).reshape(len(blobs), size // 8)


def joined(blobs: Sequence[bytes | None], size: int, absent: bytes) -> bytes:
    """``blobs`` back to back, each ``size`` bytes: ``absent`` stands in for a missing value or one of another size."""
    rows = cast(Sequence[bytes], blobs)
    if None in blobs or set(map(len, rows)) != {size}:
        rows = [b if b is not None and len(b) == size else absent for b in blobs]
    return b"".join(rows)


def _as_raw(value: object) -> str | float | int | bool:
    if isinstance(value, np.generic):
        value = value.item()
    return value  # type: ignore[return-value]
