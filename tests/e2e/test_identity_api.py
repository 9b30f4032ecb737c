"""Identity end to end: an event links a phone number to a customer; a contact arriving with it finds them."""

from __future__ import annotations

import httpx
import redis

CUSTOMER = "C000042"


def _link(http: httpx.Client, event_id: str, kind: str, identifier: str, *, linked: bool = True) -> httpx.Response:
    event = {
        "type": "identifier_linked" if linked else "identifier_unlinked",
        "event_id": event_id,
        "customer_id": CUSTOMER,
        "identifier_kind": kind,
        "identifier": identifier,
    }
    return http.post("/v1/events", json={"events": [event]})


def _lookup(http: httpx.Client, kind: str, identifier: str, **extra: object) -> httpx.Response:
    return http.post("/v1/customers/lookup", json={"identifier_kind": kind, "identifier": identifier, **extra})


def test_a_linked_phone_number_finds_its_customer_whatever_its_spelling(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    assert _link(http, "id-1", "phone", "+1 (202) 555-0143").json()["applied"] == 1
    assert _link(http, "id-2", "email", "Ana.Lima@Example.COM").json()["applied"] == 1
    by_id = http.get(f"/v1/customers/{CUSTOMER}/features").json()
    for kind, spelling in [("phone", "+12025550143"), ("phone", "+1 202 555 0143"), ("email", "ana.lima@example.com")]:
        found = _lookup(http, kind, spelling)
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["customer_id"] == CUSTOMER
        assert [f["value"] for f in body["features"]] == [f["value"] for f in by_id["features"]]
    narrowed = _lookup(http, "phone", "+12025550143", view="customer_profile").json()
    assert {f["view"] for f in narrowed["features"]} == {"customer_profile"}
    assert redis_client.get("nba:id:{phone:+12025550143}") == CUSTOMER.encode()


def test_an_unknown_identifier_is_404_never_a_neighbour(http: httpx.Client) -> None:
    assert _link(http, "id-3", "phone", "+12025550143").status_code == 200
    missing = _lookup(http, "phone", "+12025550144")
    assert missing.status_code == 404
    assert "+12025550144" not in missing.text


def test_unlinking_forgets_it_and_a_retried_link_does_not_bring_it_back(http: httpx.Client) -> None:
    assert _link(http, "id-4", "account", "acc-991").json()["applied"] == 1
    assert _lookup(http, "account", "ACC-991").status_code == 200
    assert _link(http, "id-5", "account", "ACC-991", linked=False).json()["applied"] == 1
    assert _lookup(http, "account", "acc-991").status_code == 404
    retried = _link(http, "id-4", "account", "acc-991").json()
    assert retried["duplicates"] == 1
    assert _lookup(http, "account", "acc-991").status_code == 404


def test_an_identifier_that_cannot_be_normalised_is_422_naming_it_and_stores_nothing(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    bad_event = _link(http, "id-6", "phone", "555-0143")
    assert bad_event.status_code == 422
    assert "identifier: phone: not a phone number (give it with its country code" in bad_event.json()["detail"]
    assert "555-0143" not in bad_event.json()["detail"]
    assert redis_client.keys("nba:id:*") == []
    bad_lookup = _lookup(http, "phone", "555-0143")
    assert bad_lookup.status_code == 422
    assert "identifier" in bad_lookup.json()["detail"]
    assert _lookup(http, "fax", "123").status_code == 422


def _recommend(http: httpx.Client, **who: object) -> httpx.Response:
    return http.post("/v1/recommend", json={**who, "channel": "voice"})


def test_recommend_takes_the_identifier_a_contact_arrives_with(http: httpx.Client) -> None:
    """The desktop may send the caller's number instead of our id: the answer is the linked customer's, recorded
    under them (feedback finds it); a number linked to nobody is an unknown customer, never a neighbour."""
    assert _link(http, "id-r1", "phone", "+1 (202) 555-0177").json()["applied"] == 1
    by_id = _recommend(http, customer_id=CUSTOMER).json()
    by_phone = _recommend(http, identifier={"identifier_kind": "phone", "identifier": "+1 202 555 0177"}).json()
    assert by_phone["customer_id"] == CUSTOMER
    assert by_phone["cold_start"] is False
    assert by_phone["degraded"] is False
    assert by_phone["customer"] == by_id["customer"]  # the same customer's churn risk, value and sentiment
    answer = {
        "decision_id": by_phone["decision_id"],
        "action_id": by_phone["actions"][0]["action_id"],
        "outcome": "ignored",
    }
    assert http.post("/v1/feedback", json=answer).status_code == 200

    nobody = _recommend(http, identifier={"identifier_kind": "phone", "identifier": "+12025550178"})
    assert nobody.status_code == 200, nobody.text
    body = nobody.json()
    assert (body["customer_id"], body["cold_start"], body["degraded"]) == (None, True, False)
    assert body["actions"]  # the cold-start ranking
    assert "+12025550178" not in nobody.text
    forgotten = {"decision_id": body["decision_id"], "action_id": body["actions"][0]["action_id"], "outcome": "ignored"}
    assert http.post("/v1/feedback", json=forgotten).status_code == 404  # nobody to attribute it to: not kept


def test_recommend_wants_exactly_one_way_to_say_who(http: httpx.Client) -> None:
    phone = {"identifier_kind": "phone", "identifier": "+12025550177"}
    for who in ({}, {"customer_id": CUSTOMER, "identifier": phone}):
        refused = _recommend(http, **who)
        assert refused.status_code == 422
        assert "give exactly one of customer_id or identifier" in refused.text
    bad = _recommend(http, identifier={"identifier_kind": "phone", "identifier": "not a number"})
    assert bad.status_code == 422
    assert "identifier" in bad.text
