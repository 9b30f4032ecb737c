"""``CustomerService`` honours the contract's PII flag, on a real Redis.

The packaged contract flags no feature as PII (only the customer id), so this test loads a copy that flags
``language`` and drives the service class directly (the app always loads the packaged contract).
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from pathlib import Path

import redis
import redis.asyncio as aioredis

from features import OnlineStore, Registry
from features.erasure import ErasureLedger
from features.packed import PackedLayout
from service.customers import REDACTED, CustomerService
from service.schemas import CustomerFeaturesResponse


def _contract_with_pii(tmp_path: Path) -> Registry:
    text = resources.files("features").joinpath("registry.yaml").read_text(encoding="utf-8")
    flagged = text.replace("{name: language, dtype: category,", "{name: language, pii: true, dtype: category,")
    assert flagged != text
    path = tmp_path / "registry.yaml"
    path.write_text(flagged, encoding="utf-8")
    return Registry.load(path)


def test_pii_features_are_redacted_whatever_their_value(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    registry = _contract_with_pii(tmp_path)
    assert registry.entity("customer").feature("language").pii is True
    row = {"customer_id": "C1", "language": "es", "plan": "premium", "tenure_months": 7}

    async def body() -> CustomerFeaturesResponse:
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = OnlineStore(client, registry, namespace="pii")
            await store.write("customer", [row], observed_at=[time.time()])
            erasures = ErasureLedger(tmp_path / "erasures.parquet")
            return await CustomerService(store=store, registry=registry, erasures=erasures).features("C1")
        finally:
            await client.aclose()

    out = asyncio.run(body())
    values = {f.name: f.value for f in out.features}
    assert values["language"] == REDACTED
    assert values["plan"] == "premium"
    assert values["tenure_months"] == 7
    # Redacted in the answer, not in the store.
    layout = PackedLayout(registry.entity("customer"))
    slots = layout.unpack([redis_client.get("pii:customer:{C1}")])[0][0]  # type: ignore[list-item]
    language = [f.name for f in layout.features].index("language")
    assert slots[layout.value_slots[language]] == registry.entity("customer").feature("language").encode("es")
