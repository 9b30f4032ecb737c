"""One snapshot view of one entity, decoded straight from its packed value: the feature read's fast decode.

Why it exists: ``GET /v1/customers/{id}/features?view=V`` lists one view's few values, but the general decode
(``_Kind.decode`` in :mod:`features.online_store`) builds the entity's whole vector with a dozen numpy
operations, each a microsecond or more on a single row: about a quarter of the server's CPU per request
(21 of 83 us, measured 2026-12-04 on the ``make bench`` read). Unpacking the slots with one ``struct`` call and
applying freshness, defaults and derivations in plain Python over the view's features costs a few.

The rule it keeps: its answer is exactly the general decode's slice for the view (values, which are known,
the view's age and staleness, ``found``). ``tests/features/test_view_read.py`` holds the two equal for
arbitrary stored values, stamps, clocks, foreign or truncated values and event tags.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from features.packed import TAG_BYTES, PackedLayout
from features.registry import DAY_SECONDS, Derivation, EntitySchema, Feature, FeatureView


@dataclass(frozen=True, slots=True)
class ViewVector:
    """One entity's features of one snapshot view, as :class:`~features.online_store.EntityVector` has them."""

    entity_id: str
    found: bool
    """False when the store holds nothing for this id, neither snapshot nor event state (a cold start)."""
    values: list[float]
    """The view's features in contract order, encoded; a missing value is its default (NaN without one)."""
    known: list[bool]
    """Per feature: True where the value came from the store, False where a default stands in."""
    age_s: float | None
    """Seconds since the view was observed; None where it was never written."""
    stale: bool
    """The view is older than its TTL (its values then read as missing)."""


_Slot = tuple[int, int, float, Derivation | None]
"""Where one listed feature's value comes from: its slot in the unpacked value (for a derived feature, its
source's), the index among the packed layout's views of the view whose stamp says whether the value is fresh, the
default that stands in when it is missing, and how it is derived (None: it is stored). A tuple, so the loop
over a view's features unpacks it instead of looking attributes up."""


class SnapshotViewDecoder:
    """Decodes one snapshot view of one entity kind from the packed value and the event state's tag."""

    def __init__(self, schema: EntitySchema, layout: PackedLayout, view: FeatureView, event_tag: bytes | None) -> None:
        if view.source != "snapshot":
            raise ValueError(f"view {view.name!r} is not a snapshot view")
        self.features: tuple[Feature, ...] = tuple(f for f in schema.features if schema.view_of[f.name] == view.name)
        """The view's features in contract order: the order of :attr:`ViewVector.values`."""
        self._layout = layout
        self._event_tag = event_tag
        self._slots = struct.Struct(f"<{TAG_BYTES}x{layout.width}d")
        self._stamps = [int(s) for s in layout.stamp_slots]
        self._ttls = [v.ttl_seconds for v in layout.views]
        self._view = [v.name for v in layout.views].index(view.name)
        slot_of = dict(zip((f.name for f in layout.features), (int(s) for s in layout.value_slots), strict=True))
        view_of = {f.name: i for i, v in enumerate(layout.views) for f in layout.stored[v.name]}
        self._plan: list[_Slot] = [
            (slot_of[source], view_of[source], f.encode(None), f.derive)
            for f in self.features
            for source in [f.derive.feature if f.derive is not None else f.name]
        ]

    def decode(self, entity_id: str, packed: bytes | None, state_tag: bytes | None, now: float) -> ViewVector:
        """The view of ``entity_id`` from its packed value and the first bytes of its event state, as of ``now``."""
        held = self._event_tag is not None and state_tag is not None and state_tag[:TAG_BYTES] == self._event_tag
        layout = self._layout
        if packed is None or len(packed) != layout.size or packed[:TAG_BYTES] != layout.tag:
            # Absent, or written under another contract: every view unwritten, every value missing.
            defaults = [p[2] for p in self._plan]
            return ViewVector(entity_id, held, defaults, [False] * len(defaults), None, False)
        slots = self._slots.unpack(packed)
        stamps = [slots[s] for s in self._stamps]
        found = held or any(s > 0 for s in stamps)
        ages = [max(now - s, 0.0) if s > 0 else math.nan for s in stamps]
        fresh = [a <= ttl for a, ttl in zip(ages, self._ttls, strict=True)]
        today = math.floor(now / DAY_SECONDS)
        values: list[float] = []
        known: list[bool] = []
        for slot, view, default, derive in self._plan:
            raw = slots[slot]
            if fresh[view] and raw == raw:  # False only for NaN, and cheaper than math.isnan's call
                values.append(raw if derive is None else float(derive.compute(raw, today)))
                known.append(True)
            else:
                values.append(default)
                known.append(False)
        age = ages[self._view]
        return ViewVector(
            entity_id, found, values, known, None if math.isnan(age) else age, age > self._ttls[self._view]
        )
