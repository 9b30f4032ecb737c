"""A customer's online state as data: read it back to debug a decision, or erase it on request.

Unlike recommend and assign, these never degrade: a debugging read that silently answered with defaults
would mislead whoever is debugging, and an erasure must not report success it did not achieve. So
:class:`~features.OnlineStoreUnavailable` propagates and the app answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio

from features import EntityVector, ErasureLedger, Feature, OnlineStore, Registry
from service.errors import CustomerNotFound
from service.schemas import CustomerFeaturesResponse, ErasureResponse, FeatureValueOut, ViewFreshnessOut

REDACTED = "<redacted>"


class CustomerService:
    """Reads one customer's online state, and erases the customer online and offline."""

    def __init__(self, *, store: OnlineStore, registry: Registry, erasures: ErasureLedger) -> None:
        self.store = store
        self.registry = registry
        self.erasures = erasures
        self._schema = registry.entity("customer")

    async def features(self, customer_id: str) -> CustomerFeaturesResponse:
        """The customer's feature values in contract order, with each view's age; 404 when unknown.

        Values are what the models see, decoded: a stale view's features show their defaults, exactly as
        a decision would score them. PII features are redacted whatever their value.
        """
        vector, _ = await self.store.read(customer_id)
        if not vector.found:
            raise CustomerNotFound(customer_id)
        defaulted = set(vector.defaulted)
        features = [
            FeatureValueOut(
                name=f.name,
                view=self._schema.view_of[f.name],
                value=REDACTED if f.pii else _human(f, vector, i),
                defaulted=f.name in defaulted,
            )
            for i, f in enumerate(self._schema.features)
        ]
        views = [
            ViewFreshnessOut(
                name=v.name,
                age_seconds=vector.view_age_s[v.name],
                stale=v.name in vector.stale_views,
                ttl_seconds=v.ttl_seconds,
            )
            for v in self._schema.views
        ]
        return CustomerFeaturesResponse(
            customer_id=customer_id,
            found=vector.found,
            features=features,
            views=views,
            feature_contract=self.registry.version,
        )

    async def erase(self, customer_id: str) -> ErasureResponse:
        """Erase the customer (right to erasure); ``erased`` is False when the online store held nothing.

        The erasure ledger first, then the online state: once the ledger holds the id the offline store
        leaves the customer out of every frame and materialization, so nothing can write them back to Redis
        after the delete. If Redis then fails the client gets 503 and retries; the ledger entry is idempotent.
        """
        await asyncio.to_thread(self.erasures.record, "customer", customer_id)
        erased = await self.store.erase("customer", customer_id)
        return ErasureResponse(customer_id=customer_id, erased=erased)


def _human(feature: Feature, vector: EntityVector, index: int) -> bool | int | float | str | None:
    """The value a person reads: category name, bool, whole number for an int feature, float, or None."""
    value = feature.decode(float(vector.values[index]))
    if feature.dtype == "int" and isinstance(value, float):
        return int(value)
    return value
