"""Consent per purpose comes from the consent platform's events and takes effect on the next request.

The customer's consents are the newest ``consent_changed`` event of each purpose (a view that never expires):
the test withdraws and grants marketing consent through ``POST /v1/events``, as the platform would, and asks
for actions again at once; nothing between the store and the ranking may cache the old answer.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import httpx
import pytest

from features import OfflineStore, Registry
from service.catalog import Catalog

_ids = itertools.count()


def _change(http: httpx.Client, customer_id: str, purpose: str, granted: bool) -> None:
    event = {
        "type": "consent_changed",
        "event_id": f"consent-test-{next(_ids)}",
        "customer_id": customer_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "purpose": purpose,
        "granted": granted,
    }
    response = http.post("/v1/events", json={"events": [event]})
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 1


def _offered(http: httpx.Client, customer_id: str, channel: str) -> set[str]:
    response = http.post("/v1/recommend", json={"customer_id": customer_id, "channel": channel, "top_k": 50})
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] is False
    assert body["cold_start"] is False
    return {a["action_id"] for a in body["actions"]}


def _consents(http: httpx.Client, customer_id: str) -> dict[str, object]:
    body = http.get(f"/v1/customers/{customer_id}/features", params={"view": "customer_consent"}).json()
    return {f["name"]: f["value"] for f in body["features"]}


@pytest.mark.parametrize("channel", ["voice", "chat", "email"])
def test_withdrawn_consent_stops_consent_actions_on_the_next_request(
    http: httpx.Client, registry: Registry, offline: OfflineStore, channel: str
) -> None:
    catalog = Catalog.load(registry)
    needs_consent = {a.id for a in catalog.actions if a.requires_consent and channel in a.channels}
    assert needs_consent
    # A customer whom some consent action's other rules admit on this channel, once they consent.
    ids = offline.latest("customer").column("customer_id").to_pylist()[:200]
    x = offline.matrix("customer", offline.as_of("customer", ids))
    x[:, registry.entity("customer").index["consent_marketing"]] = 1.0
    customer_id = next(
        c for c, row in zip(ids, x, strict=True) if {a.id for a in catalog.eligible(row, channel)} & needs_consent
    )
    _change(http, customer_id, "marketing", True)
    assert _consents(http, customer_id)["consent_marketing"] is True
    assert _offered(http, customer_id, channel) & needs_consent, "a consenting customer should be offered some"

    _change(http, customer_id, "marketing", False)
    assert _consents(http, customer_id)["consent_marketing"] is False
    after = _offered(http, customer_id, channel)
    assert not after & needs_consent
    assert "no_action" in after

    _change(http, customer_id, "marketing", True)  # and given again, it counts again at once
    assert _offered(http, customer_id, channel) & needs_consent


def test_a_consent_change_touches_only_its_purpose(http: httpx.Client, offline: OfflineStore) -> None:
    customer_id = offline.latest("customer").column("customer_id")[11].as_py()
    _change(http, customer_id, "marketing", True)
    _change(http, customer_id, "sms", True)
    _change(http, customer_id, "sms", False)
    consents = _consents(http, customer_id)
    assert consents["consent_marketing"] is True
    assert consents["consent_sms"] is False


def test_consent_given_long_ago_still_counts(http: httpx.Client, offline: OfflineStore) -> None:
    """A consent view never expires, so a grant older than every window (a backfill) is applied, not refused."""
    customer_id = offline.latest("customer").column("customer_id")[13].as_py()
    old = {
        "type": "consent_changed",
        "event_id": f"consent-test-{next(_ids)}",
        "customer_id": customer_id,
        "occurred_at": "2019-03-01T09:00:00+00:00",
        "purpose": "phone",
        "granted": True,
    }
    response = http.post("/v1/events", json={"events": [old]})
    assert response.status_code == 200
    assert response.json()["results"][0]["status"] == "applied"
    _change(http, customer_id, "phone", False)
    late = {**old, "event_id": f"consent-test-{next(_ids)}"}  # an older grant arrives late
    assert http.post("/v1/events", json={"events": [late]}).json()["results"][0]["status"] == "applied"
    assert _consents(http, customer_id)["consent_phone"] is False, "an older event never replaces a newer one"
