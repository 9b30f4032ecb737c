"""A consent change takes effect on the next request: nothing between the store and the ranking caches it.

Consent is the snapshot feature ``consent_marketing`` today. The test withdraws it through the store's public
write path (what a CRM sync or a consent event handler calls), then asks for actions again at once.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis.asyncio as aioredis

from features import OfflineStore, OnlineStore, Registry
from service.catalog import Catalog


def _set_consent(redis_url: str, registry: Registry, customer_id: str, consent: bool) -> None:
    async def write() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = OnlineStore(client, registry, namespace="nba")
            await store.write(
                "customer", [{"customer_id": customer_id, "consent_marketing": consent}], observed_at=[time.time()]
            )
        finally:
            await client.aclose()

    asyncio.run(write())


def _offered(http: httpx.Client, customer_id: str, channel: str) -> set[str]:
    response = http.post("/v1/recommend", json={"customer_id": customer_id, "channel": channel, "top_k": 50})
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] is False
    assert body["cold_start"] is False
    return {a["action_id"] for a in body["actions"]}


@pytest.mark.parametrize("channel", ["voice", "chat", "email"])
def test_withdrawn_consent_stops_consent_actions_on_the_next_request(
    http: httpx.Client, redis_url: str, registry: Registry, offline: OfflineStore, channel: str
) -> None:
    consenting = [r["customer_id"] for r in offline.latest("customer").to_pylist() if r["consent_marketing"]]
    customer_id = consenting[0]
    catalog = Catalog.load(registry)
    needs_consent = {a.id for a in catalog.actions if a.requires_consent and channel in a.channels}
    assert needs_consent
    _set_consent(redis_url, registry, customer_id, True)  # a fresh profile, whatever the snapshot's age
    assert _offered(http, customer_id, channel) & needs_consent, "a consenting customer should be offered some"

    _set_consent(redis_url, registry, customer_id, False)
    after = _offered(http, customer_id, channel)
    assert not after & needs_consent
    assert "no_action" in after

    _set_consent(redis_url, registry, customer_id, True)  # and given again, it counts again at once
    assert _offered(http, customer_id, channel) & needs_consent
