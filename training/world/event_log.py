"""The events the simulation emits, kept per month and type, and written as ``customer_events``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from features.registry import Registry
from training.world.aggregate import _Typed
from training.world.config import _LABELS
from training.world.tables import _ids, _ts


class _EventLog:
    """The events emitted so far, per month and type, numbered in the order they were made."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, str, dict[str, np.ndarray]]] = []
        self.made = 0

    def add(self, step: int, kind: str, key: np.ndarray, t: np.ndarray, **fields: np.ndarray) -> None:
        n = len(key)
        seq = np.arange(self.made, self.made + n, dtype=np.int64)
        self.made += n
        arrays = {"key": np.asarray(key, np.int64), "t": np.asarray(t, np.int64), "seq": seq}
        self.chunks.append((step, kind, arrays | {f: np.asarray(v, np.float64) for f, v in fields.items()}))

    def typed(self, reg: Registry, since: Mapping[str, int]) -> dict[str, _Typed]:
        """Each type in ``since`` (the types features read), from the months at or after ``since[type]``."""
        out: dict[str, _Typed] = {}
        for name, spec in reg.events.items():
            if name not in since:
                continue
            parts = [a for step, kind, a in self.chunks if kind == name and step >= since.get(name, 0)]
            if not parts:
                continue
            cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            fields = {f: cat[f] for f in spec.fields}
            out[name] = _Typed(
                cat["key"], cat["t"], cat["seq"], fields, {f: _LABELS[f] for f in fields if f in _LABELS}
            )
        return out

    def table(self, reg: Registry, customer_ids: pa.Array) -> pa.Table:
        """The ``customer_events`` table: envelope, then every payload column, sorted by (time, event_id)."""
        names = [name for name, spec in reg.events.items() if spec.entity == "customer"]
        chunks = [(names.index(kind), arrays) for _, kind, arrays in self.chunks]  # in seq order
        sizes = np.array([len(arrays["key"]) for _, arrays in chunks], dtype=np.int64)
        total = int(sizes.sum())

        def gather(column: str) -> np.ndarray:
            return np.concatenate([arrays[column] for _, arrays in chunks] or [np.zeros(0, np.int64)])

        t = gather("t")
        order = np.argsort(t, kind="stable")  # chunks are in seq order, so ties stay in seq order
        rank = np.empty(total, dtype=np.int64)  # each event's row in the sorted table
        rank[order] = np.arange(total)
        kind = np.repeat(np.array([code for code, _ in chunks], dtype=np.int64), sizes)[order]
        columns: dict[str, pa.Array] = {
            "event_id": _ids("E", np.arange(1, total + 1), 10),
            "customer_id": customer_ids.take(pa.array(gather("key")[order])),
            "occurred_at": _ts(t[order]),
            "type": pa.array(names, pa.string()).take(pa.array(kind)),
        }
        ends = np.cumsum(sizes)
        for column, dtype in reg.event_columns("customer").items():
            values = np.full(total, np.nan)
            for (_, arrays), stop, size in zip(chunks, ends, sizes, strict=True):
                if column in arrays:  # scatter only the chunks that carry the column: most carry few
                    values[rank[stop - size : stop]] = arrays[column]
            null = np.isnan(values)
            if dtype in ("category", "str"):
                codes = pa.array(np.where(null, 0, values).astype(np.int32), mask=null)
                columns[column] = pa.array(_LABELS[column], pa.string()).take(codes)
            elif dtype == "bool":
                columns[column] = pa.array(values == 1.0, pa.bool_(), mask=null)
            elif dtype == "int":
                columns[column] = pa.array(np.where(null, 0, values).astype(np.int64), pa.int64(), mask=null)
            else:
                columns[column] = pa.array(values, pa.float64(), mask=null)
        return pa.table(columns)
