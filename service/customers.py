"""A customer's online state as data: read it back to debug a decision, or erase it on request.

Unlike recommend and assign, these never degrade: a debugging read that silently answered with defaults
would mislead whoever is debugging, and an erasure must not report success it did not achieve. So
:class:`~features.OnlineStoreUnavailable` propagates and the app answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio

from features import ErasureLedger, Feature, FeatureView, OnlineStore, Registry
from features.identity import Identifier
from service.errors import BadRequest, CustomerNotFound
from service.schemas import CustomerFeaturesResponse, ErasureResponse, FeatureValueOut, ViewFreshnessOut

REDACTED = "<redacted>"


class CustomerService:
    """Reads one customer's online state, and erases the customer online and offline."""

    def __init__(self, *, store: OnlineStore, registry: Registry, erasures: ErasureLedger) -> None:
        self.store = store
        self.registry = registry
        self.erasures = erasures
        self._schema = schema = registry.entity("customer")
        # What each answer lists, resolved once: all views (None) or one.
        everything = [(i, f, schema.view_of[f.name]) for i, f in enumerate(schema.features)]
        self._features: dict[str | None, list[tuple[int, Feature, str]]] = {None: everything}
        self._views: dict[str | None, list[FeatureView]] = {None: list(schema.views)}
        for v in schema.views:
            self._features[v.name] = [entry for entry in everything if entry[2] == v.name]
            self._views[v.name] = [v]

    async def features(self, customer: str | Identifier, view: str | None = None) -> CustomerFeaturesResponse:
        """The customer's feature values in contract order, with each view's age; 404 when unknown.

        Values are what the models see, decoded: a stale view's features show their defaults, exactly as
        a decision would score them. PII features are redacted whatever their value. ``view`` narrows the
        answer to one feature view (an unknown name is a 422 naming ``view``). ``customer`` is our id or an
        identifier, resolved in the read's own round trip; one nobody holds is a 404 like an unknown id.
        """
        if view is not None and view not in self._schema.view_by_name:
            known = ", ".join(v.name for v in self._schema.views)
            raise BadRequest("view", f"{view!r} is not a customer feature view (one of: {known})")
        vector, _ = await self.store.read(customer)
        if not vector.found:
            raise CustomerNotFound(vector.entity_id)
        known = vector.known.tolist()
        values = vector.values.tolist()
        features = [
            FeatureValueOut(f.name, view_name, REDACTED if f.pii else _human(f, values[i]), not known[i])
            for i, f, view_name in self._features[view]
        ]
        views = [
            ViewFreshnessOut(
                v.name,
                vector.view_age_s[v.name],
                v.name in vector.stale_views,
                None if v.ttl_days is None else v.ttl_seconds,
            )
            for v in self._views[view]
        ]
        return CustomerFeaturesResponse(vector.entity_id, vector.found, features, views, self.registry.version)

    async def erase(self, customer_id: str) -> ErasureResponse:
        """Erase the customer (right to erasure); ``erased`` is False when the online store held nothing.

        The erasure ledger first, then the online state: once the ledger holds the id the offline store
        leaves the customer out of every frame and materialization, so nothing can write them back to Redis
        after the delete. If Redis then fails the client gets 503 and retries; the ledger entry is idempotent.
        """
        await asyncio.to_thread(self.erasures.record, "customer", customer_id)
        erased = await self.store.erase("customer", customer_id)
        return ErasureResponse(customer_id=customer_id, erased=erased)


def _human(feature: Feature, value: float) -> bool | int | float | str | None:
    """The value a person reads: category name, bool, whole number for an int feature, float, or None."""
    human = feature.decode(value)
    if feature.dtype == "int" and isinstance(human, float):
        return int(human)
    return human
