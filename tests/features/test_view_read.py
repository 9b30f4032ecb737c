"""A snapshot view decoded alone answers exactly what the whole vector's decode answers for that view.

The decoder (:mod:`features.view_read`) exists only to be faster; any difference from the general decode would be
a feature read that disagrees with what the models scored. So the two are compared on arbitrary stored values:
NaN, infinities, stamps never written, fresh, past the TTL or in the future, values of another contract or cut
short, with and without event state, at any clock.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import Registry
from features.online_store import _Kind
from features.packed import TAG_BYTES
from features.view_read import SnapshotViewDecoder
from tests.features.stored import NOW, packed_values

KIND = _Kind(Registry.load().entity("customer"))
VIEWS = [v.name for v in KIND.packed.views]

event_tags = st.sampled_from([None, KIND.events.tag, KIND.events.tag + b"rest of the state", b"\0" * TAG_BYTES])


@settings(max_examples=400, deadline=None)
@given(
    view=st.sampled_from(VIEWS),
    packed=packed_values(KIND.packed),
    tag=event_tags,
    now=st.floats(NOW - 86_400, NOW + 86_400),
)
def test_a_view_decoded_alone_is_the_whole_vectors_slice(
    view: str, packed: bytes | None, tag: bytes | None, now: float
) -> None:
    whole = KIND.decode(["C1"], [packed], [tag], now, events=False)[0]
    alone = KIND.view_decoders[view].decode("C1", packed, tag, now)
    schema = KIND.schema
    at = [schema.index[f.name] for f in KIND.view_decoders[view].features]
    assert [f.name for f in KIND.view_decoders[view].features] == [
        f.name for f in schema.features if schema.view_of[f.name] == view
    ]
    np.testing.assert_array_equal(np.array(alone.values), whole.values[at])  # NaN where NaN, else bit for bit
    assert alone.known == whole.known[at].tolist()
    assert alone.found == whole.found
    assert alone.age_s == whole.view_age_s[view]
    assert alone.stale == (view in whole.stale_views)


def test_every_snapshot_view_has_a_decoder_and_no_event_view_does() -> None:
    schema = KIND.schema
    assert sorted(KIND.view_decoders) == sorted(v.name for v in schema.views if v.source == "snapshot")
    events_view = next(v for v in schema.views if v.source == "events")
    with pytest.raises(ValueError, match=events_view.name):
        SnapshotViewDecoder(schema, KIND.packed, events_view, KIND.events.tag)


def test_a_derived_feature_counts_from_the_read_day() -> None:
    """days_to_contract_end is the stored end day less the day of the read, missing when its source is."""
    layout, decoder = KIND.packed, KIND.view_decoders["customer_profile"]
    names = [f.name for f in decoder.features]
    slots = [math.nan] * layout.width
    first, _ = layout.segments["customer_profile"]
    slots[first] = NOW - 60.0
    stored = [f.name for f in layout.stored["customer_profile"]]
    slots[first + 1 + stored.index("contract_end_day")] = NOW // 86_400 + 12
    packed = layout.tag + struct.pack(f"<{layout.width}d", *slots)
    one = decoder.decode("C1", packed, None, NOW)
    assert one.values[names.index("days_to_contract_end")] == 12.0
    assert one.known[names.index("days_to_contract_end")] is True
    assert one.age_s == 60.0
    assert one.found
    assert not one.stale
    slots[first] = NOW - 400 * 86_400.0  # the view past its TTL: the source is missing, so is the derived value
    stale = decoder.decode("C1", layout.tag + struct.pack(f"<{layout.width}d", *slots), None, NOW)
    assert stale.stale
    assert stale.known[names.index("days_to_contract_end")] is False
