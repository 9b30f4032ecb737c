"""Hypothesis strategies for values as the online store may hold them: ours (with any numbers in them), absent, of
another contract, cut short; the decoders' tests draw from them."""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import strategies as st

from features.event_state import ERASED, EventLayout
from features.packed import TAG_BYTES, PackedLayout

NOW = 1_780_000_000.0
DAY = 86_400

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-20_000, 40_000).map(float),  # category codes, flags, counts and day numbers as stored
)
stamps = st.one_of(
    st.just(0.0),
    st.just(math.nan),
    st.floats(NOW - 200 * 86_400.0, NOW + 3_600.0),  # fresh, past a view's TTL, or observed "in the future"
    st.floats(-1e12, 1e12),
)


@st.composite
def packed_values(draw: st.DrawFn, layout: PackedLayout) -> bytes | None:
    """A packed snapshot as Redis may hold it: ours, absent, of another contract, or cut short."""
    slots = [draw(values) for _ in range(layout.width)]
    for s in layout.stamp_slots:
        slots[s] = draw(stamps)
    body = layout.tag + struct.pack(f"<{layout.width}d", *slots)
    shape = draw(st.sampled_from(["ours", "ours", "ours", "absent", "foreign", "short"]))
    if shape == "absent":
        return None
    if shape == "foreign":
        return bytes(TAG_BYTES) + body[TAG_BYTES:]
    return body[:-8] if shape == "short" else body


amounts = st.one_of(
    st.sampled_from([1.0, 1.0, 2.0, 0.0, -0.0, 0.1, 0.7, 1e-300, math.nan, math.inf, -math.inf]),
    st.integers(1, 999).map(lambda i: i / 10),  # sums of field values, whose totals depend on the order of adding
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)
"""A day record's amount: counts, sums of any field values (negative zeros, NaN and infinities among them)."""
last_values = st.one_of(
    st.sampled_from([-1.0, 0.0, 1.0, 2.0, 3.0, 5.0, math.nan, math.inf, -math.inf]),  # -1: an unknown category
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)


@st.composite
def event_states(draw: st.DrawFn, layout: EventLayout, now: float, odd: bool = False) -> bytes | None:
    """An event state of ``layout`` as Redis may hold it at ``now``: ours, absent, of another contract, an erased
    entity's tombstone, cut short. Ring headers from 100 days back to a few days ahead (events stamped early),
    group stamps fresh, past a TTL or ahead, `last` values of unknown categories, NaN, infinite, day records of
    any series in or out of their ring and before or after today, any amounts, a partial record at the end, ids
    of any width. ``odd`` adds what no writer produces and the C decode declines: day record keys that are not
    numbers or name no series, ring headers beyond int64, id widths that are not whole non-negative numbers."""
    today = math.floor(now / DAY)
    fixed = [0.0] * layout.width
    for ring in layout.rings:
        fixed[ring.slot] = float(today + draw(st.one_of(st.just(0), st.integers(-100, 4))))
        if odd and draw(st.integers(0, 4)) == 0:
            fixed[ring.slot] = draw(st.sampled_from([math.nan, math.inf, 1e300, -1e19, 9.3e18]))
    for group in layout.groups:
        us = draw(st.one_of(st.just(0.0), st.integers(-5 * DAY, 400 * DAY).map(lambda back: (now - back) * 1e6)))
        fixed[group.slot] = us if draw(st.integers(0, 9)) else draw(stamps) * 1e6
        for i in range(len(group.values)):
            fixed[group.slot + 1 + i] = draw(last_values)
    width = draw(st.sampled_from([0, 8, 16]))
    ids = np.frombuffer(draw(st.binary(min_size=layout.id_slots * width, max_size=layout.id_slots * width)), np.uint8)
    records = []
    busy = draw(st.integers(0, len(layout.series) - 1))  # a series with many days: its totals add many amounts
    for _ in range(draw(st.integers(0, 40))):
        series = draw(st.one_of(st.just(busy), st.integers(0, len(layout.series) - 1)))
        key = float((today - draw(st.one_of(st.integers(0, 29), st.integers(-4, 100)))) * 256 + series)
        if odd and draw(st.integers(0, 5)) == 0:
            key = draw(st.sampled_from([math.nan, math.inf, -1e300, float(today * 256 + 255)]))
        records.append((key, draw(amounts)))
    for every_day in draw(st.lists(st.integers(0, len(layout.series) - 1), max_size=3)):
        # A series with events every day: more cells than sorting them is worth.
        daily = draw(st.lists(st.sampled_from([1.0, 0.1, 0.7, 2.5, -0.0, 1e16]), min_size=20, max_size=95))
        records += [(float((today - back) * 256 + every_day), amount) for back, amount in enumerate(daily)]
    if records and draw(st.booleans()):
        records.append(records[draw(st.integers(0, len(records) - 1))])  # the same day twice: the last one counts
    rows = np.array([fixed], dtype=np.float64)
    owners = np.zeros(len(records), dtype=np.intp)
    table = np.array(records, dtype=np.float64).reshape(-1, 2)
    value = layout.values(rows, ids.reshape(1, layout.id_slots, width), owners, table)[0]
    value += draw(st.binary(max_size=15))  # a partial record at the end is not read
    if odd and draw(st.integers(0, 3)) == 0:
        odd_width = draw(st.sampled_from([math.nan, math.inf, -8.0, 3.0, 2.5, 1e20, -1e20]))
        value = value[: TAG_BYTES + 8] + struct.pack("<d", odd_width) + value[TAG_BYTES + 16 :]
    shape = draw(st.sampled_from(["ours"] * 6 + ["absent", "foreign", "erased", "short", "empty"]))
    if shape == "absent":
        return None
    if shape == "foreign":
        return bytes(TAG_BYTES) + value[TAG_BYTES:]
    if shape == "erased":
        return ERASED
    if shape == "short":
        return value[: draw(st.integers(0, layout.ids_at - 1))]
    return b"" if shape == "empty" else value
