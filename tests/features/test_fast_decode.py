"""The C decode answers exactly what the numpy decode answers, for every stored value.

It exists only to be faster (:mod:`features.fast_decode`): any difference would be a model scoring other inputs
than training saw, or a window total that is no longer the offline store's to the bit. So the two are compared on
arbitrary stored values (see :mod:`tests.features.stored`): absent, of another layout, stale views, NaNs and
infinities, unknown categories, day records outside their ring or after today, several entities at once; and on
values no writer produces, where the C part must decline and leave the answer (or the error) to numpy.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import EntityBatch, Registry, fast_decode
from features.event_state import TAG_BYTES
from features.online_store import _Kind
from tests.features.stored import NOW, event_states, packed_values

# Only a machine without a C compiler installs the package without its C part (an optional extension); where one is
# found, a C part that did not build is a failure, not a reason to skip.
pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the package installs without C")


def test_the_c_part_was_built() -> None:
    assert fast_decode.AVAILABLE, "features/_decode.c did not build: see the pip install's output"


REGISTRY = Registry.load()
CUSTOMER = _Kind(REGISTRY.entity("customer"))
AGENT = _Kind(REGISTRY.entity("agent"))
clocks = st.floats(NOW - 3 * 86_400, NOW + 3 * 86_400)


def _same_numbers(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    assert np.array_equal(a, b, equal_nan=True)
    numbers = ~np.isnan(a)
    assert np.array_equal(np.signbit(a[numbers]), np.signbit(b[numbers]))  # 0.0 and -0.0 apart too


def _same(fast: EntityBatch, reference: EntityBatch) -> None:
    _same_numbers(fast.values, reference.values)
    _same_numbers(fast.ages, reference.ages)
    assert fast.known.dtype == reference.known.dtype == np.bool_
    assert np.array_equal(fast.known, reference.known)
    assert fast.found.dtype == reference.found.dtype == np.bool_
    assert np.array_equal(fast.found, reference.found)
    assert fast.ids == reference.ids


def _fast(
    kind: _Kind, ids: list[str], blobs: list[bytes | None], states: list[bytes | None] | None, now: float, events: bool
) -> EntityBatch:
    assert kind.fast is not None
    decoded = kind.fast.decode(blobs, states, now, events=events)
    assert decoded is not None, "the C part declined a value a writer can produce"
    return EntityBatch(kind.schema, ids, *decoded)


def _reference(
    kind: _Kind, ids: list[str], blobs: list[bytes | None], states: list[bytes | None] | None, now: float, events: bool
) -> EntityBatch:
    with np.errstate(all="ignore"):  # infinities over infinities in means, as stored values may hold
        return kind.decode_numpy(ids, blobs, states, now, events=events)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(1, 4), events=st.booleans(), now=clocks)
def test_customers_decode_in_c_as_in_numpy(data: st.DataObject, n: int, events: bool, now: float) -> None:
    ids = [f"C{i}" for i in range(n)]
    blobs = [data.draw(packed_values(CUSTOMER.packed)) for _ in ids]
    states = [data.draw(event_states(CUSTOMER.events, now)) for _ in ids]
    if not events:  # a read without event state asks for its tag alone
        states = [s if s is None or data.draw(st.booleans()) else s[:TAG_BYTES] for s in states]
    _same(
        _fast(CUSTOMER, ids, blobs, states, now, events),
        _reference(CUSTOMER, ids, blobs, states, now, events),
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 120), now=clocks)
def test_agents_decode_in_c_as_in_numpy(data: st.DataObject, n: int, now: float) -> None:
    ids = [f"A{i}" for i in range(n)]
    pool = [data.draw(packed_values(AGENT.packed)) for _ in range(data.draw(st.integers(1, 6)))]
    blobs = [pool[data.draw(st.integers(0, len(pool) - 1))] for _ in ids]  # a roster's worth of a few values
    _same(_fast(AGENT, ids, blobs, None, now, True), _reference(AGENT, ids, blobs, None, now, True))


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 3),
    now=st.one_of(clocks, st.sampled_from([math.nan, math.inf, -math.inf, 1e18, 0.0, -0.0])),
)
def test_values_no_writer_produces_get_numpys_answer_or_error(data: st.DataObject, n: int, now: float) -> None:
    """NaN record keys, series the layout lacks, headers beyond int64, odd id widths, clocks that are not finite:
    the store's decode answers (or raises) as the numpy decode does, the C part declining where it cannot."""
    ids = [f"C{i}" for i in range(n)]
    blobs = [data.draw(packed_values(CUSTOMER.packed)) for _ in ids]
    clock = now if math.isfinite(now) else NOW
    states = [data.draw(event_states(CUSTOMER.events, clock, odd=True)) for _ in ids]
    with np.errstate(all="ignore"):
        try:
            reference = CUSTOMER.decode_numpy(ids, blobs, states, now)
        except (ValueError, OverflowError, IndexError) as exc:
            with pytest.raises(type(exc)):
                CUSTOMER.decode(ids, blobs, states, now)
            return
        _same(CUSTOMER.decode(ids, blobs, states, now), reference)


def test_a_demo_like_customer_decodes_alike_through_either_path() -> None:
    """A customer with every view fresh and a few events of each kind: the C answer is the numpy one, and known."""
    layout = CUSTOMER.packed
    slots = np.arange(layout.width, dtype=np.float64) % 3
    slots[layout.stamp_slots] = NOW - 3_600
    blob = layout.tag + slots.tobytes()
    events = CUSTOMER.events
    today = math.floor(NOW / 86_400)
    fixed = np.zeros((1, events.width))
    for ring in events.rings:
        fixed[0, ring.slot] = today
    for group in events.groups:
        fixed[0, group.slot] = (NOW - 2 * 86_400) * 1e6
        fixed[0, group.slot + 1 : group.slot + 1 + len(group.values)] = 1.0
    records = np.array([[(today - back) * 256 + s, 1.0 + s] for s in range(len(events.series)) for back in (0, 5, 40)])
    state = events.values(fixed, np.zeros((1, events.id_slots, 8), np.uint8), np.zeros(len(records), np.intp), records)
    fast = CUSTOMER.decode(["C1"], [blob], state, NOW)
    reference = CUSTOMER.decode_numpy(["C1"], [blob], state, NOW)
    _same(fast, reference)
    assert fast.found.tolist() == [True]
    index = CUSTOMER.schema.index
    assert fast.values[0, index["logins_7d"]] == 2.0  # today and 5 days ago; 40 days ago is past the 30-day ring
    assert fast.values[0, index["contacts_90d"]] == 3 * 3.0  # series 2 (contact_ended), all three in 90 days


def test_a_window_total_adds_its_days_oldest_first() -> None:
    """0.1, 0.2 and 0.3 units of usage on three days add to (0.1 + 0.2) + 0.3, not 0.1 + (0.2 + 0.3): the order the
    offline store adds its per-day totals in, which keeps the online total the training frame's to the bit."""
    events = CUSTOMER.events
    today = math.floor(NOW / 86_400)
    fixed = np.zeros((1, events.width))
    for ring in events.rings:
        fixed[0, ring.slot] = today
    usage = [s.name for s in events.series].index("s.units|usage|")
    records = np.array([[(today - back) * 256 + usage, amount] for back, amount in ((20, 0.1), (10, 0.2), (5, 0.3))])
    state = events.values(fixed, np.zeros((1, events.id_slots, 0), np.uint8), np.zeros(3, np.intp), records)
    at = CUSTOMER.schema.index["usage_30d"]
    fast = CUSTOMER.decode(["C1"], [None], state, NOW).values[0, at]
    assert fast == (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3)
    assert fast == CUSTOMER.decode_numpy(["C1"], [None], state, NOW).values[0, at]
