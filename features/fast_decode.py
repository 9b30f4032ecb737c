"""One entity kind's stored values decoded in C for the few entities a request reads: the online store's fast path.

Why: the numpy decode (``_Kind.decode_numpy`` in :mod:`features.online_store`, with
:meth:`features.event_state.EventLayout.decode`) is whole-matrix code built for N entities. For the one customer a
recommend reads it still makes ~30 numpy calls of a few microseconds each: 21.5% of a recommend's server CPU in a
py-spy profile of ``nba run`` under wrk.

How: ``_decode.c`` walks each entity's bytes once, with the index arrays the numpy decode resolves per layout
(:class:`~features.packed.PackedLayout`, :class:`~features.event_state.ReadPlan` and the kind's positions),
passed as pointers once at start-up. It computes what the numpy decode computes in the same operations and
order: each windowed total is its days added oldest first onto 0.0 (as numpy's reduction adds them, and as the
offline store added its per-day totals), means, `last` values with their TTL and unknown-category mark, view
ages, freshness, defaults and derivations. ``tests/features/test_fast_decode.py`` holds the two equal (values,
known flags, ages and found flags) for arbitrary stored values: absent ones, other layouts' tags, stale views,
NaNs, unknown categories, day records outside their ring, late and early days, several entities.

Where the numpy decode's answer depends on the platform or it raises (a NaN day record key or ring header, whose
cast to int64 is undefined; a day record naming a series the layout lacks; an id width that is not a number; a
clock that is not finite), the C part declines and the numpy decode answers, so the two never differ. The numpy
decode also serves where the C part did not build (the package installs without it).

Measured (``bench.decode`` on the 20,000-customer demo's stored values, this process's CPU per decode, the two
alternating, least of 7 rounds; 2026-12-05, load average 3-5 from other jobs): one customer 3.7 us against
numpy's 68.6 us (18.7x); with the CPU caches below L3 flushed before each decode, as a request's other work leaves
them, 10-14 us of wall time against 131-217 us; one customer and 100 agents (an assign's read) 20.6 us against
99.5 us (4.8x). In ``nba run`` under wrk it took a recommend's server CPU from 814-891 to 683-712 us (py-spy: the
decode from 18.0% of the samples to 2.7%). The C decode stays ahead at every batch size measured, so it takes
every batch: 1,000 agents 140 us against 147 us, 10,000 agents 1.57 ms against 2.26 ms (joining the values, which
both pay, is most of it), 10,000 customers with event state 6.6 ms against 72.6 ms.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from features.event_state import EventLayout
from features.packed import PackedLayout, joined
from features.registry import Derivation

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""values (entities x features), known (the same, bool), found (bool per entity), ages (entities x views)."""


def _library() -> ctypes.CDLL | None:
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_decode{suffix}"
        if path.exists():
            # PyDLL: a call holds the GIL, so no two calls share the plan's scratch at once (a call takes a few us).
            lib = ctypes.PyDLL(str(path))
            # Pointers travel as plain ints or bytes objects (whose buffer ctypes passes without a copy).
            pointer, i64, mode = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
            lib.decode_one.argtypes = [pointer, pointer, pointer, i64, mode, ctypes.c_double, pointer]
            lib.decode_many.argtypes = [pointer, i64, pointer, i64, pointer, pointer, mode, ctypes.c_double, pointer]
            lib.decode_one.restype = lib.decode_many.restype = ctypes.c_int
            return lib
    return None


_LIB = _library()
AVAILABLE = _LIB is not None
"""Whether the C part was built (it is an optional extension: see pyproject.toml)."""

_NO_STATE, _TAG_ONLY, _WHOLE_STATE = 0, 1, 2
"""What the C part reads of the event state: none (the kind has no event features), its tag, all of it."""


class _Plan(ctypes.Structure):
    _fields_ = [
        ("n_features", ctypes.c_int32),
        ("n_views", ctypes.c_int32),
        ("packed_tag", ctypes.c_void_p),
        ("snap_views", ctypes.c_int32),
        ("stamp_slot", ctypes.c_void_p),
        ("snap_ttl", ctypes.c_void_p),
        ("snap_view_at", ctypes.c_void_p),
        ("snap_features", ctypes.c_int32),
        ("value_slot", ctypes.c_void_p),
        ("feature_view", ctypes.c_void_p),
        ("snap_default", ctypes.c_void_p),
        ("snap_at", ctypes.c_void_p),
        ("derived", ctypes.c_int32),
        ("derived_at", ctypes.c_void_p),
        ("derived_source", ctypes.c_void_p),
        ("derived_default", ctypes.c_void_p),
        ("event_features", ctypes.c_int32),
        ("event_tag", ctypes.c_void_p),
        ("ids_at", ctypes.c_int32),
        ("id_slots", ctypes.c_int32),
        ("series", ctypes.c_int32),
        ("series_head", ctypes.c_void_p),
        ("series_days", ctypes.c_void_p),
        ("rows", ctypes.c_int32),
        ("w_max", ctypes.c_int32),
        ("widest_feed", ctypes.c_int32),
        ("feed_row", ctypes.c_void_p),
        ("feed_window", ctypes.c_void_p),
        ("means", ctypes.c_int32),
        ("mean_rows", ctypes.c_void_p),
        ("mean_missing", ctypes.c_void_p),
        ("lasts", ctypes.c_int32),
        ("last_fixed", ctypes.c_void_p),
        ("last_ttl", ctypes.c_void_p),
        ("last_missing", ctypes.c_void_p),
        ("is_days", ctypes.c_void_p),
        ("unknown_mark", ctypes.c_void_p),
        ("event_views", ctypes.c_int32),
        ("widest_view", ctypes.c_int32),
        ("view_stamp", ctypes.c_void_p),
        ("event_view_at", ctypes.c_void_p),
        ("value_from", ctypes.c_void_p),
        ("known_from", ctypes.c_void_p),
        ("event_at", ctypes.c_void_p),
        ("event_default", ctypes.c_void_p),
        ("unfresh", ctypes.c_void_p),
        ("plane", ctypes.c_void_p),
        ("mark", ctypes.c_void_p),
        ("cells", ctypes.c_void_p),
        ("cols", ctypes.c_void_p),
        ("kcols", ctypes.c_void_p),
    ]


_Derived = tuple[int, int, Derivation, float]
"""A derived feature as ``_Kind`` resolves it: its position, its source's position, how, its encoded default."""


class FastDecoder:
    """One entity kind's decode in C; :meth:`decode` answers what the numpy decode answers, or None to let it."""

    def __init__(
        self,
        *,
        names: int,
        views: int,
        packed: PackedLayout,
        events: EventLayout,
        snapshot_at: np.ndarray,
        snapshot_view_at: np.ndarray,
        snapshot_ttl: np.ndarray,
        feature_view: np.ndarray,
        derived: Sequence[_Derived],
        event_at: np.ndarray,
        event_view_at: np.ndarray,
    ) -> None:
        """The kind's index arrays, as ``_Kind`` resolved them: ``names`` features and ``views`` views in all."""
        if _LIB is None:
            raise RuntimeError("the C part (features/_decode.c) was not built on this machine")
        if any(d.kind != "days_until" for _, _, d, _ in derived):
            raise ValueError("the C decode computes days_until derivations only")
        plan = events.plan
        i32, f64 = np.int32, np.float64
        self._arrays: dict[str, np.ndarray] = {
            "packed_tag": np.frombuffer(packed.tag, dtype=np.uint8).copy(),
            "stamp_slot": packed.stamp_slots.astype(i32),
            "snap_ttl": snapshot_ttl.astype(f64),
            "snap_view_at": snapshot_view_at.astype(i32),
            "value_slot": packed.value_slots.astype(i32),
            "feature_view": feature_view.astype(i32),
            "snap_default": packed.defaults.astype(f64),
            "snap_at": snapshot_at.astype(i32),
            "derived_at": np.array([d[0] for d in derived], dtype=i32),
            "derived_source": np.array([d[1] for d in derived], dtype=i32),
            "derived_default": np.array([d[3] for d in derived], dtype=f64),
            "event_tag": np.frombuffer(events.tag, dtype=np.uint8).copy(),
            "series_head": plan.series_head.astype(i32),
            "series_days": plan.series_days.astype(np.uint64),
            "feed_row": np.ascontiguousarray(plan.feed_rows, dtype=i32),
            "feed_window": np.ascontiguousarray(plan.feed_windows, dtype=np.int64),
            "mean_rows": plan.mean_rows.astype(i32),
            "mean_missing": plan.mean_missing.astype(f64),
            # The stamps then the values of the `last` features: the first 2 x lasts of the plan's fixed slots.
            "last_fixed": plan.fixed[: 2 * plan.lasts].astype(i32),
            "last_ttl": plan.last_ttl.astype(f64),
            "last_missing": plan.last_missing.astype(f64),
            "is_days": plan.is_days.astype(np.uint8),
            "unknown_mark": plan.unknown_mark.astype(f64),
            "view_stamp": plan.fixed[2 * plan.lasts :].astype(i32),
            "event_view_at": event_view_at.astype(i32),
            "value_from": plan.value_from.astype(i32),
            "known_from": plan.known_from.astype(i32),
            "event_at": event_at.astype(i32),
            "event_default": events.defaults.astype(f64),
            # Scratch, the C part's between calls: zeros where it must find zeros (the plane, its marks).
            "unfresh": np.zeros(len(packed.views), dtype=np.uint8),
            "plane": np.zeros(1 + plan.w_max * plan.rows, dtype=f64),
            "mark": np.zeros(1 + plan.w_max * plan.rows, dtype=np.uint8),
            "cells": np.zeros(1 + plan.w_max * plan.rows, dtype=np.int64),
            "cols": np.zeros(plan.rows + plan.m + plan.lasts + 1, dtype=f64),
            "kcols": np.zeros(plan.rows + plan.m + plan.lasts + 1, dtype=np.uint8),
        }
        # Empty arrays still get a buffer of their own, so every pointer is valid.
        self._arrays = {k: a if a.size else np.zeros(1, dtype=a.dtype) for k, a in self._arrays.items()}
        self._plan = _Plan(
            n_features=names,
            n_views=views,
            snap_views=len(packed.views),
            snap_features=len(packed.features),
            derived=len(derived),
            event_features=len(events.features),
            ids_at=events.ids_at,
            id_slots=events.id_slots,
            series=len(events.series),
            rows=plan.rows,
            w_max=plan.w_max,
            widest_feed=plan.feed_rows.shape[1],
            means=plan.m,
            lasts=plan.lasts,
            event_views=plan.views,
            widest_view=plan.widest,
            **{name: a.ctypes.data for name, a in self._arrays.items()},
        )
        self._address = ctypes.addressof(self._plan)
        self._features, self._views = names, views
        self._has_events = bool(events.features)
        self._size, self._absent = packed.size, packed.absent
        self._row_bytes = 8 * (names + views) + names + 1
        self._at_ages = 8 * names
        self._at_known = 8 * (names + views)

    def decode(
        self, blobs: Sequence[bytes | None], states: Sequence[bytes | None] | None, now: float, *, events: bool = True
    ) -> Decoded | None:
        """What ``_Kind.decode_numpy`` answers for these arguments, or None where it must answer itself.

        ``states`` must be None exactly when the kind has no event features (a read of another shape is the numpy
        decode's); with ``events`` False they are the states' first bytes, read for whether there are any.
        """
        n = len(blobs)
        if (states is None) == self._has_events or (states is not None and len(states) != n):
            return None
        mode = _NO_STATE if states is None else _WHOLE_STATE if events else _TAG_ONLY
        # A bytearray and a ctypes reference to its first byte cost a third of an ndarray and its .ctypes.data.
        out = bytearray(n * self._row_bytes)
        address = ctypes.byref(ctypes.c_char.from_buffer(out))
        assert _LIB is not None
        if n == 1:
            blob = blobs[0]
            if blob is None or len(blob) != self._size:
                blob = self._absent
            state = None if states is None else states[0]
            declined = _LIB.decode_one(self._address, blob, state, len(state) if state else 0, mode, now, address)
        else:
            packed = joined(blobs, self._size, self._absent)
            states_of, lengths = None, np.zeros(n, dtype=np.int64)  # kept referenced until the call returns
            if states is not None:
                held = [s or b"" for s in states]
                states_of = b"".join(held)
                lengths = np.fromiter(map(len, held), dtype=np.int64, count=n)
            declined = _LIB.decode_many(
                self._address, n, packed, self._size, states_of, lengths.ctypes.data, mode, now, address
            )
        if declined:
            return None
        f, v = self._features, self._views
        return (
            np.ndarray((n, f), np.float64, out, 0),
            np.ndarray((n, f), np.bool_, out, n * self._at_known),
            np.ndarray(n, np.bool_, out, n * (self._at_known + f)),
            np.ndarray((n, v), np.float64, out, n * self._at_ages),
        )
