"""API keys through HTTP: every route against every role, revocation, rate limits, body size limits.

One service of the module's own (its own world folder, so the erasure's ledger lands there), on the session's
Redis and MLflow store, accepting the session's keys (one per role, ``tests/conftest.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from litestar import Litestar, get

from service.auth import OPEN, ROUTE_ROLES, route_roles
from service.keys import KeyFile, Role
from service.routes import health
from tests.conftest import Served, own_world, serve, session_keys, settings_for

CUSTOMER = "CAUTH00001"
"""A customer the module makes through events alone (no snapshot): enough for the customer reads to answer 200."""
PHONE = "+12025550199"


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, world: Path, data_dir: Path, redis_url: str, champions: dict[str, str]
) -> Iterator[Served]:
    own = tmp_path_factory.mktemp("auth") / "data"
    own_world(own, world)
    settings = settings_for(own, redis_url)
    shared = f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"
    settings = settings.model_copy(update={"mlflow": settings.mlflow.model_copy(update={"tracking_uri": shared})})
    with serve(settings) as served, served.client(Role.EVENTS) as events:
        made = [
            {"type": "sentiment", "event_id": f"auth-{uuid.uuid4().hex}", "customer_id": CUSTOMER, "score": 0.5},
            {
                "type": "identifier_linked",
                "event_id": f"auth-{uuid.uuid4().hex}",
                "customer_id": CUSTOMER,
                "identifier_kind": "phone",
                "identifier": PHONE,
            },
        ]
        answer = events.post("/v1/events", json={"events": made})
        assert answer.json()["applied"] == 2, answer.text
        yield served


@dataclass(frozen=True)
class Call:
    """One request a route answers 2xx to, given the right key."""

    method: str
    path: str
    body: Callable[[str], object] | None = None
    """The body, given the service's URL (feedback needs a decision made first)."""


def _feedback(url: str) -> dict[str, object]:
    """Feedback on a decision just made (an admin's recommend): the first action it returned, ignored."""
    made = httpx.post(
        url + "/v1/recommend",
        json={"customer_id": CUSTOMER, "channel": "voice"},
        headers=session_keys().headers(Role.ADMIN),
        timeout=10,
    ).json()
    return {"decision_id": made["decision_id"], "action_id": made["actions"][0]["action_id"], "outcome": "ignored"}


CALLS: dict[str, Call] = {
    "health": Call("GET", "/health"),
    "ready": Call("GET", "/ready"),
    "metrics": Call("GET", "/metrics"),
    "recommend": Call("POST", "/v1/recommend", lambda _: {"customer_id": CUSTOMER, "channel": "voice"}),
    "feedback": Call("POST", "/v1/feedback", _feedback),
    "customer_features": Call("GET", f"/v1/customers/{CUSTOMER}/features"),
    "customer_lookup": Call(
        "POST", "/v1/customers/lookup", lambda _: {"identifier_kind": "phone", "identifier": PHONE}
    ),
    "assign": Call(
        "POST",
        "/v1/assign",
        lambda _: {
            "customer_id": CUSTOMER,
            "intent": "billing",
            "channel": "voice",
            "language": "en",
            "agent_ids": ["A0001"],
        },
    ),
    "ingest_events": Call(
        "POST",
        "/v1/events",
        lambda _: {"type": "login", "event_id": f"auth-{uuid.uuid4().hex}", "customer_id": CUSTOMER},
    ),
    "erase_customer": Call("DELETE", "/v1/customers/CAUTH99999"),
    "reload_catalog": Call("POST", "/v1/admin/catalog/reload"),
}
CREDENTIALS = ["none", "unknown", *(r.value for r in Role)]


def test_every_route_is_in_the_table_and_called_here() -> None:
    assert set(CALLS) == set(ROUTE_ROLES)


def _send(url: str, call: Call, headers: dict[str, str]) -> httpx.Response:
    body = call.body(url) if call.body is not None else None
    return httpx.request(call.method, url + call.path, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("operation", list(CALLS))
def test_each_route_answers_each_role_as_the_table_says(guarded: Served, operation: str, credential: str) -> None:
    need = ROUTE_ROLES[operation]
    if credential == "none":
        headers: dict[str, str] = {}
    elif credential == "unknown":
        headers = {"Authorization": "Bearer nba_" + "x" * 43}
    else:
        headers = session_keys().headers(Role(credential))
    response = _send(guarded.url, CALLS[operation], headers)
    if need is OPEN:
        assert response.status_code == 200, response.text
    elif credential in ("none", "unknown"):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith('Bearer realm="nba-copilot"')
        expected = "no API key" if credential == "none" else "unknown or revoked API key"
        assert expected in response.json()["detail"]
    elif credential in (need, Role.ADMIN):
        assert 200 <= response.status_code < 300, response.text
    else:
        assert response.status_code == 403, response.text
        detail = response.json()["detail"]
        assert f"has role {credential}" in detail
        assert f"needs role {need}" in detail
        assert CUSTOMER not in detail  # the route's template, never its path


def test_the_key_may_come_as_x_api_key_but_not_as_two_different_keys(guarded: Served) -> None:
    keys = session_keys().by_role
    call = CALLS["recommend"]
    assert _send(guarded.url, call, {"X-API-Key": keys[Role.DESKTOP]}).status_code == 200
    both = {"X-API-Key": keys[Role.DESKTOP], "Authorization": f"bearer {keys[Role.DESKTOP]}"}
    assert _send(guarded.url, call, both).status_code == 200
    mixed = _send(guarded.url, call, {"X-API-Key": keys[Role.DESKTOP], "Authorization": f"Bearer {keys[Role.ADMIN]}"})
    assert mixed.status_code == 401
    assert "different keys" in mixed.json()["detail"]
    basic = _send(guarded.url, call, {"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401
    assert "Bearer <API key>" in basic.json()["detail"]


def test_an_unknown_path_needs_a_key_before_it_is_a_404(guarded: Served) -> None:
    assert httpx.get(f"{guarded.url}/v1/nothing-here", timeout=10).status_code == 401
    with guarded.client(Role.DESKTOP) as client:
        assert client.get("/v1/nothing-here").status_code == 404
        assert client.get("/v1/recommend").status_code == 405  # a route, another method: any key, then Litestar
    # Litestar's spellings of a path reach the same route, so they need the same role.
    with guarded.client(Role.DESKTOP) as client:
        assert client.delete("/v1/customers/CAUTH99999/").status_code == 403
        assert client.delete("/v1//customers/CAUTH99999").status_code == 403


def test_the_schema_is_open_and_documents_both_ways_to_send_a_key(guarded: Served) -> None:
    schema = httpx.get(f"{guarded.url}/schema/openapi.json", timeout=10)
    assert schema.status_code == 200
    schemes = schema.json()["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"]["name"] == "X-API-Key"


def test_a_revoked_key_is_refused_within_seconds_without_a_restart(guarded: Served) -> None:
    file = KeyFile(session_keys().path)
    name = f"revoke-{uuid.uuid4().hex[:8]}"
    _, key = file.create(Role.DESKTOP, name)
    call = CALLS["recommend"]
    deadline = time.monotonic() + 5
    while _send(guarded.url, call, {"X-API-Key": key}).status_code != 200:  # a new key: taken within a second
        assert time.monotonic() < deadline, "the new key was never accepted"
        time.sleep(0.1)
    file.revoke(name)
    revoked = time.monotonic()
    while (status := _send(guarded.url, call, {"X-API-Key": key}).status_code) == 200:
        assert time.monotonic() - revoked < 3, "the revoked key is still accepted"
        time.sleep(0.1)
    assert status == 401


def test_a_key_over_its_rate_gets_429_with_retry_after(guarded: Served) -> None:
    file = KeyFile(session_keys().path)
    name = f"slow-{uuid.uuid4().hex[:8]}"
    _, key = file.create(Role.DESKTOP, name, rate_limit=1.0)  # a burst of 2, then one a second
    try:
        time.sleep(1.1)  # the service re-reads the file within a second
        statuses = [_send(guarded.url, CALLS["recommend"], {"X-API-Key": key}) for _ in range(4)]
        assert [r.status_code for r in statuses[:2]] == [200, 200]
        limited = statuses[-1]
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "rate limit of 1 requests/s" in limited.json()["detail"]
        # Other keys have buckets of their own.
        assert _send(guarded.url, CALLS["recommend"], session_keys().headers(Role.DESKTOP)).status_code == 200
    finally:
        file.revoke(name)


def test_a_body_over_the_limit_gets_413_naming_it(guarded: Served) -> None:
    limit = guarded.settings.service.max_body_bytes
    events = [{"type": "login", "event_id": f"big-{i}", "customer_id": CUSTOMER} for i in range(20_000)]
    with guarded.client(Role.EVENTS) as client:
        response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 413
    assert f"{limit:,} bytes" in response.json()["detail"]


def test_a_route_without_a_declared_role_stops_the_app_from_starting() -> None:
    @get("/v1/new", operation_id="brand_new")
    async def brand_new() -> None:
        return None

    @get("/v1/admin/reload-something", operation_id="reload_something")
    async def admin_route() -> None:
        return None

    assert route_roles(Litestar([health, admin_route]))[("/v1/admin/reload-something", "GET")] is Role.ADMIN
    with pytest.raises(RuntimeError, match=r"no role is declared for GET /v1/new \(operation_id 'brand_new'\)"):
        route_roles(Litestar([health, brand_new]))
