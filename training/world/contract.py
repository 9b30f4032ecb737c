"""Where the world meets the feature contract: checks that it emits what the registry declares, and lookbacks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from features.identity import LINKED, UNLINKED
from features.registry import Registry
from training.world.config import _LABELS


def _check(entity: str, expected: Sequence[str], cols: Mapping[str, np.ndarray], reg: Registry) -> list[str]:
    """Fail loudly if the world drifted from the feature contract; return the contract's column order."""
    if set(cols) != set(expected):
        diff = sorted(set(cols) ^ set(expected))
        raise ValueError(f"{entity} columns differ from the registry: {diff}")
    for name in expected:
        f = reg.entity(entity).feature(name)
        # None is a category feature of events with none in its view's TTL: unknown, not a stray value.
        if f.dtype == "category" and not set(np.asarray(cols[name]).tolist()) - {None} <= set(f.categories or ()):
            raise ValueError(f"{entity} feature {name!r} has values outside the registry's categories")
    return list(expected)


def _derived(
    reg: Registry, entity: str, snapshot: Mapping[str, np.ndarray], day: int | np.ndarray
) -> dict[str, np.ndarray]:
    """The entity's derived features at UTC day(s) ``day``, computed from its snapshot as the feature stores do."""
    return {
        f.name: f.derive.compute(np.asarray(snapshot[f.derive.feature]), day)
        for f in reg.entity(entity).derived_features
        if f.derive is not None
    }


def _check_events(reg: Registry, produced: Mapping[str, Sequence[str]]) -> None:
    """Fail loudly if the events the world emits are not the contract's (types, fields, categories).

    Identity events are the exception: the world's customers have no phone numbers or emails, and no feature
    reads those events, so the world emits none and their columns stay empty.
    """
    declared = {
        name: tuple(spec.fields)
        for name, spec in reg.events.items()
        if spec.entity == "customer" and name not in (LINKED, UNLINKED)
    }
    if {k: set(v) for k, v in declared.items()} != {k: set(v) for k, v in produced.items()}:
        raise ValueError(f"customer events differ from the registry: {declared} vs {dict(produced)}")
    for name, spec in reg.events.items():
        for field_name, field_spec in spec.fields.items():
            if field_spec.dtype == "category" and set(_LABELS[field_name]) != set(field_spec.categories or ()):
                raise ValueError(f"event field {name}.{field_name} has categories the registry does not declare")


_EVERY_MONTH = 1_000_000
"""A lookback longer than any world: every month's events of the type count."""


def _lookback(reg: Registry) -> dict[str, int]:
    """Per event type, how many earlier months can still shape a feature (the longest window or TTL; every
    month for the event types a never-expiring feature reads)."""
    schema = reg.entity("customer")
    horizon: dict[str, float] = {}
    for f in schema.event_features:
        agg = f.aggregation
        assert agg is not None
        days = agg.window_days + 1 if agg.window_days is not None else reg.views[schema.view_of[f.name]].ttl_days
        horizon[agg.event] = max(horizon.get(agg.event, 0.0), math.inf if days is None else float(days))
    return {name: math.ceil(days / 30) + 1 if math.isfinite(days) else _EVERY_MONTH for name, days in horizon.items()}
