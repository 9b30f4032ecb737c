"""Event-derived customer features read from a ``customer_events`` table at any moments (:func:`event_features_at`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.registry import Registry
from training.world.aggregate import _aggregate, _Typed
from training.world.config import _US_PER_S


def _to_us(at: dt.datetime | Sequence[dt.datetime] | np.ndarray | pa.Array | pa.ChunkedArray, n: int) -> np.ndarray:
    """Read times as µs since the epoch (UTC; naive datetimes are taken as UTC), broadcast to ``n`` rows."""
    if isinstance(at, dt.datetime):
        moment = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
        delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        us = (delta.days * 86_400 + delta.seconds) * _US_PER_S + delta.microseconds
        return np.full(n, us, dtype=np.int64)
    if isinstance(at, pa.Array | pa.ChunkedArray):
        arr = at
    else:
        raw = np.asarray(at)
        if raw.dtype.kind == "M":
            values = raw.astype("datetime64[us]").astype(np.int64)
            return np.broadcast_to(values, (n,)).copy() if values.ndim == 0 else values
        arr = pa.array(list(raw))
    ts = pc.cast(arr, pa.timestamp("us", tz=getattr(arr.type, "tz", None) or "UTC"))
    values = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    if len(values) != n:
        raise ValueError(f"'at' has {len(values)} times for {n} ids")
    return values


def _as_float(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """A payload column as floats (NaN for null); strings become codes into the returned labels."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        encoded = pc.dictionary_encode(column)
        codes = encoded.indices.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return codes, tuple(encoded.dictionary.to_pylist())
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False), None


def event_features_at(
    events: pa.Table,
    registry: Registry,
    ids: np.ndarray | Sequence[str],
    at: dt.datetime | Sequence[dt.datetime] | np.ndarray | pa.Array | pa.ChunkedArray,
) -> dict[str, np.ndarray]:
    """Every event-derived customer feature of the contract, for each id read at ``at``.

    ``events`` is a ``customer_events`` table (``event_id``, ``customer_id``, ``occurred_at``, ``type`` and
    the payload columns); ``at`` is one moment for all ids or one per id (ids may repeat with different
    times). Semantics, the same as the offline and online stores':

    - a window of N days at T holds the events with ``occurred_at <= T`` whose UTC day number
      ``floor(epoch_seconds / 86400)`` is greater than T's day number minus N;
    - ``count`` counts the window's events of the type whose ``where`` fields equal the given values;
      ``sum``/``mean`` run over the field's non-null values (mean is null with none);
    - ``last`` is the field of the newest event of the type (and ``where``) at or before T, ties broken by
      the larger ``event_id``, whether or not that field is null; ``days_since`` is the whole days
      ``floor((T - occurred_at) / 1 day)`` since it; both are null when it is more than the view's
      ``ttl_days`` older than T, or when there is none.

    Returns one array per feature aligned with ``ids``: counts as int64; sums, means, ``days_since`` and
    ``last`` of numbers or bools as float64 with NaN for null (bools as 1.0/0.0); ``last`` of strings as
    object arrays with None.
    """
    schema = registry.entity("customer")
    query = pa.array(np.asarray(ids, dtype=object), pa.string())
    keys = pc.unique(query)
    q_key = pc.index_in(query, value_set=keys).to_numpy(zero_copy_only=False).astype(np.int64)
    q_at = _to_us(at, len(q_key))
    seq = np.empty(events.num_rows, dtype=np.int64)
    seq[pc.sort_indices(events, [("event_id", "ascending")]).to_numpy()] = np.arange(events.num_rows)
    key = pc.index_in(events.column(schema.join_key), value_set=keys).to_numpy(zero_copy_only=False)
    t = pc.cast(pc.cast(events.column("occurred_at"), pa.timestamp("us", tz="UTC")), pa.int64())
    t_us = t.to_numpy().astype(np.int64)
    type_col = events.column("type")
    typed: dict[str, _Typed] = {}
    for name, spec in registry.events.items():
        if spec.entity != "customer":
            continue
        is_type = pc.fill_null(pc.equal(type_col, name), False).to_numpy(zero_copy_only=False)
        mask = np.asarray(is_type, dtype=bool) & ~np.isnan(key.astype(np.float64))
        fields: dict[str, np.ndarray] = {}
        labels: dict[str, tuple[str, ...]] = {}
        rows = pa.array(np.flatnonzero(mask))
        for field_name in spec.fields:
            if field_name not in events.column_names:
                continue
            values, names = _as_float(events.column(field_name).take(rows))
            fields[field_name] = values
            if names is not None:
                labels[field_name] = names
        typed[name] = _Typed(key[mask].astype(np.int64), t_us[mask], seq[mask], fields, labels)
    return _aggregate(registry, typed, q_key, q_at)
