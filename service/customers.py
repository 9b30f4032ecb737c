"""A customer's online state as data: read it back to debug a decision, or erase it on request.

Unlike recommend and assign, these never degrade: a debugging read that silently answered with defaults
would mislead whoever is debugging, and an erasure must not report success it did not achieve. So
:class:`~features.OnlineStoreUnavailable` propagates and the app answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from features import EntitySchema, ErasureLedger, Feature, FeatureView, OnlineStore, Registry
from features.identity import Identifier
from service.errors import BadRequest, CustomerNotFound
from service.schemas import CustomerFeaturesResponse, ErasureResponse, FeatureValueOut, ViewFreshnessOut

REDACTED = "<redacted>"

Human = bool | int | float | str | None
"""A feature's value as a person reads it (see :func:`_humanizer`)."""


@dataclass(frozen=True)
class _Answer:
    """What one answer lists (all views, or one), resolved once: a read then only picks and converts."""

    positions: np.ndarray
    """The listed features' positions in the vector, in contract order."""
    features: list[tuple[str, str, Callable[[float], Human]]]
    """Each listed feature's name, view and how its value reads."""
    views: list[FeatureView]
    events: bool
    """Whether the answer lists event features, so the read must bring the event state."""
    snapshot: bool
    """Whether the answer is one snapshot view, which the store decodes alone (:meth:`OnlineStore.read_view`)."""


class CustomerService:
    """Reads one customer's online state, and erases the customer online and offline."""

    def __init__(
        self,
        *,
        store: OnlineStore,
        registry: Registry,
        erasures: ErasureLedger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._clock = clock
        self.registry = registry
        self.erasures = erasures
        self._schema = schema = registry.entity("customer")
        self._answers: dict[str | None, _Answer] = {None: _answer(schema, list(schema.features), list(schema.views))}
        for v in schema.views:
            listed = [f for f in schema.features if schema.view_of[f.name] == v.name]
            self._answers[v.name] = _answer(schema, listed, [v])

    async def features(self, customer: str | Identifier, view: str | None = None) -> CustomerFeaturesResponse:
        """The customer's feature values in contract order, with each view's age; 404 when unknown.

        Values are what the models see, decoded: a stale view's features show their defaults, exactly as
        a decision would score them. PII features are redacted whatever their value. ``view`` narrows the
        answer to one feature view (an unknown name is a 422 naming ``view``). ``customer`` is our id or an
        identifier, resolved in the read's own round trip; one nobody holds is a 404 like an unknown id.
        """
        if view is not None and view not in self._schema.view_by_name:
            names = ", ".join(v.name for v in self._schema.views)
            raise BadRequest("view", f"{view!r} is not a customer feature view (one of: {names})")
        answer = self._answers[view]
        now = self._clock()
        ages: Mapping[str, float | None]
        if answer.snapshot:
            # One snapshot view: decoded alone, a few microseconds instead of the whole vector's numpy work.
            one = await self.store.read_view(customer, answer.views[0].name, now=now)
            entity_id, found, values, known = one.entity_id, one.found, one.values, one.known
            ages, stale = {answer.views[0].name: one.age_s}, {answer.views[0].name} if one.stale else set()
        else:
            vector, _ = await self.store.read(customer, now=now, events=answer.events)
            entity_id, found, ages, stale = vector.entity_id, vector.found, vector.view_age_s, set(vector.stale_views)
            values, known = vector.values[answer.positions].tolist(), vector.known[answer.positions].tolist()
        if not found:
            raise CustomerNotFound(entity_id, field="identifier" if isinstance(customer, Identifier) else "customer_id")
        features = [
            FeatureValueOut(name, view_name, human(value), not k)
            for (name, view_name, human), value, k in zip(answer.features, values, known, strict=True)
        ]
        views = [
            ViewFreshnessOut(v.name, ages[v.name], v.name in stale, None if v.ttl_days is None else v.ttl_seconds)
            for v in answer.views
        ]
        return CustomerFeaturesResponse(entity_id, found, features, views, self.registry.version)

    async def erase(self, customer_id: str) -> ErasureResponse:
        """Erase the customer (right to erasure); ``erased`` is False when the online store held nothing.

        The erasure ledger first, then the online state: once the ledger holds the id the offline store
        leaves the customer out of every frame and materialization, so nothing can write them back to Redis
        after the delete. If Redis then fails the client gets 503 and retries; the ledger entry is idempotent.
        """
        await asyncio.to_thread(self.erasures.record, "customer", customer_id)
        erased = await self.store.erase("customer", customer_id)
        return ErasureResponse(customer_id=customer_id, erased=erased)


def _answer(schema: EntitySchema, features: list[Feature], views: list[FeatureView]) -> _Answer:
    positions = np.array([schema.index[f.name] for f in features], dtype=np.intp)
    events = any(v.source == "events" for v in views)
    snapshot = len(views) == 1 and not events
    listed = [(f.name, schema.view_of[f.name], _humanizer(f)) for f in features]
    return _Answer(positions, listed, views, events, snapshot)


def _humanizer(feature: Feature) -> Callable[[float], Human]:
    """How an encoded value of ``feature`` reads: category name, bool, whole number for an int feature, float,
    None when unknown, and ``<redacted>`` whatever the value for a PII feature.

    Chosen once per feature, so a read of forty floats costs forty NaN checks, not forty trips through
    :meth:`Feature.decode`'s dtype tests.
    """
    if feature.pii:
        return _redacted
    if feature.dtype == "float":
        return _float
    if feature.dtype == "int":
        return _int
    return feature.decode


def _redacted(_: float) -> str:
    return REDACTED


def _float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _int(value: float) -> int | None:
    return None if math.isnan(value) else int(value)
