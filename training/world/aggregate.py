"""Event aggregation: the feature contract's semantics in numpy, shared by the simulation and event_features_at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from features.registry import Registry
from training.world.config import _US_PER_DAY


@dataclass
class _Typed:
    """The events of one type, as numbers: key index, time (µs since the epoch), tie order, payload.

    Payload fields are float64 with NaN for null; string and category fields hold codes into ``labels``.
    """

    key: np.ndarray
    t: np.ndarray
    seq: np.ndarray
    fields: dict[str, np.ndarray]
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _aggregate(
    reg: Registry, events: Mapping[str, _Typed], q_key: np.ndarray, q_at: np.ndarray, entity: str = "customer"
) -> dict[str, np.ndarray]:
    """Every event-derived feature of ``entity`` for the queries (``q_key[i]`` read at ``q_at[i]`` µs).

    Windows hold the events with ``t <= at`` whose UTC day is one of the ``window_days`` days ending on the
    day of ``at``; ``last``/``days_since`` take the newest event with ``t <= at`` (ties: larger ``seq``)
    and are null (NaN/None) when it is more than the view's TTL older than ``at``.
    """
    schema = reg.entity(entity)
    n_q = len(q_key)
    q_key, q_at = np.asarray(q_key, dtype=np.int64), np.asarray(q_at, dtype=np.int64)
    q_day = q_at // _US_PER_DAY
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    lookup = _lookup(q_key)
    out: dict[str, np.ndarray] = {}
    for feature in schema.event_features:
        agg = feature.aggregation
        assert agg is not None
        typed = events.get(agg.event)
        if typed is None:
            empty = np.zeros(0, dtype=np.int64)
            typed = _Typed(empty, empty, empty, fields={})
        if agg.event not in pairs:
            pairs[agg.event] = _pairs(typed, q_key, q_at, lookup)
        pq_, pe = pairs[agg.event]
        match = np.ones(len(pq_), dtype=bool)
        for name, wanted in agg.where.items():
            values = typed.fields.get(name, np.full(len(typed.t), np.nan))[pe]
            labels = typed.labels.get(name)
            if labels is not None:
                code = labels.index(str(wanted)) if str(wanted) in labels else -1
                match &= values == code
            else:
                match &= values == float(wanted)
        if agg.kind in ("count", "sum", "mean"):
            assert agg.window_days is not None
            match &= typed.t[pe] // _US_PER_DAY > q_day[pq_] - agg.window_days
            if agg.kind == "count":
                out[feature.name] = np.bincount(pq_[match], minlength=n_q).astype(np.int64)
                continue
            assert agg.field is not None
            values = typed.fields.get(agg.field, np.full(len(typed.t), np.nan))[pe][match]
            carried = ~np.isnan(values)
            rows = pq_[match][carried]
            total = np.bincount(rows, weights=values[carried], minlength=n_q).astype(np.float64)
            if agg.kind == "sum":
                out[feature.name] = total
            else:
                count = np.bincount(rows, minlength=n_q)
                out[feature.name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            continue
        # last / days_since: each query's newest matching event (latest t, then largest seq).
        rows, ev = _newest(pq_[match], pe[match], typed, n_q)
        age = q_at[rows] - typed.t[ev]
        ttl_days = reg.views[schema.view_of[feature.name]].ttl_days
        fresh = age <= (np.inf if ttl_days is None else round(ttl_days * _US_PER_DAY))
        rows, ev, age = rows[fresh], ev[fresh], age[fresh]
        if agg.kind == "days_since":
            result = np.full(n_q, np.nan)
            result[rows] = age // _US_PER_DAY
            out[feature.name] = result
            continue
        assert agg.field is not None
        values = typed.fields.get(agg.field, np.full(len(typed.t), np.nan))[ev]
        labels = typed.labels.get(agg.field)
        if labels is None:
            result = np.full(n_q, np.nan)
            result[rows] = values
        else:
            result = np.full(n_q, None, dtype=object)
            known = ~np.isnan(values)
            result[rows[known]] = np.asarray(labels, dtype=object)[values[known].astype(np.int64)]
        out[feature.name] = result
    return out


def _lookup(q_key: np.ndarray) -> np.ndarray | None:
    """Each key's query row (-1 for a key not queried) when there is one query per key, else None.

    Keys are small non-negative integers (customer indices), so a dense table answers in one gather; built
    once per :func:`_aggregate` call and shared by every event type's :func:`_pairs`.
    """
    size = int(q_key.max()) + 1 if len(q_key) else 0
    if len(q_key) and np.bincount(q_key, minlength=size).max() > 1:
        return None
    row = np.full(size, -1, dtype=np.int64)
    row[q_key] = np.arange(len(q_key))
    return row


def _pairs(
    typed: _Typed, q_key: np.ndarray, q_at: np.ndarray, lookup: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(query row, event index) for every event of the query's key at or before the query's time."""
    if lookup is not None:  # one query per key (the simulation): a lookup, no expansion
        rows = np.full(len(typed.key), -1, dtype=np.int64)
        known = typed.key < len(lookup)
        rows[known] = lookup[typed.key[known]]
        pe = np.flatnonzero(rows >= 0)
        pq_ = rows[pe]
    else:
        order = np.argsort(typed.key, kind="stable")
        keys = typed.key[order]
        starts = np.searchsorted(keys, q_key, side="left")
        counts = np.searchsorted(keys, q_key, side="right") - starts
        pq_ = np.repeat(np.arange(len(q_key)), counts)
        offsets = np.arange(len(pq_)) - np.repeat(np.cumsum(counts) - counts, counts)
        pe = order[np.repeat(starts, counts) + offsets]
    keep = typed.t[pe] <= q_at[pq_]
    return pq_[keep], pe[keep]


def _newest(rows: np.ndarray, ev: np.ndarray, typed: _Typed, n_q: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query row, its newest event among the pairs: the latest ``t``, ties to the largest ``seq``."""
    low = np.iinfo(np.int64).min
    t, seq = typed.t[ev], typed.seq[ev]
    latest = np.full(n_q, low, dtype=np.int64)
    np.maximum.at(latest, rows, t)
    tied = t == latest[rows]
    top = np.full(n_q, low, dtype=np.int64)
    np.maximum.at(top, rows[tied], seq[tied])
    pick = tied & (seq == top[rows])
    return rows[pick], ev[pick]
