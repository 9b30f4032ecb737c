"""Bad input over HTTP: each is a 4xx whose body names the problem, on every route that reads a body.

Oversized, too deeply nested, not JSON, not UTF-8, a key twice, sent as another media type, empty; unknown
customers and decisions; candidate lists over their cap. Recommend and assign are answered by a fast path in
front of Litestar (``service/fast_decisions.py``) when it can; these go through HTTP to the whole app, so the
fast path's choice to leave each of them to Litestar is tested too (its count of answers does not move).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from features import OfflineStore, Registry
from service import Settings, create_app
from service.fast_decisions import FastDecisions
from service.metrics import RequestTimer
from tests.conftest import materialize_world, own_world_settings, serve, session_keys

CUSTOMER = "C000042"
BODIES: dict[str, dict[str, object]] = {
    "/v1/recommend": {"customer_id": CUSTOMER, "channel": "voice"},
    "/v1/assign": {
        "customer_id": CUSTOMER,
        "intent": "billing",
        "channel": "voice",
        "language": "en",
        "queue": "billing",
    },
    "/v1/events": {"type": "login", "event_id": "bad-input-1", "customer_id": CUSTOMER},
    "/v1/feedback": {"decision_id": "0" * 32, "resolved": True},
    "/v1/customers/lookup": {"identifier_kind": "email", "identifier": "nobody@example.com"},
}
"""A body each route takes (feedback and lookup then answer 404: nobody made that decision or holds that email)."""
ROUTES = list(BODIES)
JSON = {"content-type": "application/json"}


class Fuzzed:
    """The served app, and its fast decision path (to count what it answered)."""

    def __init__(self, client: httpx.Client, fast: FastDecisions) -> None:
        self.client = client
        self.fast = fast

    def post(self, path: str, content: bytes, headers: dict[str, str] = JSON) -> httpx.Response:
        """POST raw ``content``; asserts the fast path left it to Litestar unless it answered 200."""
        before = self.fast.answered
        response = self.client.post(path, content=content, headers=headers)
        if response.status_code != 200:
            assert self.fast.answered == before, f"the fast path answered {response.status_code} to {path}"
        return response


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory,
    world: Path,
    data_dir: Path,
    redis_url: str,
    registry: Registry,
    offline: OfflineStore,
    champions: dict[str, str],
) -> Iterator[Fuzzed]:
    """The app over a world of its own, the test world materialized once for the module (nothing here writes what
    another test reads: refusals store nothing)."""
    materialize_world(redis_url, registry, offline)
    built: list[RequestTimer] = []  # type: ignore[type-arg]

    def build(settings: Settings) -> RequestTimer:  # type: ignore[type-arg]
        built.append(create_app(settings))
        return built[0]

    settings = own_world_settings(tmp_path_factory.mktemp("bad-input"), world, data_dir, redis_url)
    with (
        serve(settings, build) as app,
        httpx.Client(base_url=app.url, headers=session_keys().headers(), timeout=10) as c,
    ):
        yield Fuzzed(c, built[0].app.app)


def _body(path: str, **changes: object) -> bytes:
    return json.dumps(BODIES[path] | changes).encode()


@pytest.mark.parametrize("path", ROUTES)
def test_each_routes_good_body_is_answered(api: Fuzzed, path: str) -> None:
    """The bodies the other tests spoil are good ones: recommend and assign answered by the fast path."""
    before = api.fast.answered
    response = api.client.post(path, content=_body(path), headers=JSON)
    expected = 404 if path in ("/v1/feedback", "/v1/customers/lookup") else 200
    assert response.status_code == expected, response.text
    assert api.fast.answered - before == (1 if path in ("/v1/recommend", "/v1/assign") else 0)


@pytest.mark.parametrize("path", ROUTES)
def test_a_body_over_the_limit_is_413_naming_the_limit(api: Fuzzed, path: str) -> None:
    padding = " " * (1_048_576 + 1 - len(_body(path)))  # JSON whitespace: a valid body, one byte too long
    response = api.post(path, _body(path)[:-1] + padding.encode() + b"}")
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == "request body larger than the limit of 1,048,576 bytes (NBA_MAX_BODY_BYTES)"


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("depth", [100_000, 2_000], ids=["100k-arrays", "2k-objects-in-a-field"])
def test_json_nested_too_deeply_is_a_400_not_a_500(api: Fuzzed, path: str, depth: int) -> None:
    """It was a 500: Litestar's decoder raised RecursionError. Deep inside a field or as the whole body."""
    if depth == 100_000:
        body = b"[" * depth + b"]" * depth
    else:
        body = _body(path)[:-1] + b', "deep": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
    response = api.post(path, body)
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "body: JSON nested too deeply to decode"


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", None],
    ids=["text", "form", "xml", "none"],
)
def test_a_body_not_sent_as_json_is_415_naming_json(api: Fuzzed, path: str, content_type: str | None) -> None:
    """Litestar decided on a JSON body sent as text/plain (or as nothing): a client that means something else gets
    told, rather than an answer to a question it did not ask."""
    headers = {"content-type": content_type} if content_type else {}
    response = api.post(path, _body(path), headers=headers)
    assert response.status_code == 415, response.text
    assert "must be sent as application/json" in response.json()["detail"]


def test_a_structured_json_media_type_is_json(api: Fuzzed) -> None:
    response = api.post("/v1/recommend", _body("/v1/recommend"), {"content-type": "application/vnd.nba+json"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ROUTES)
def test_a_body_that_is_not_utf8_is_400_naming_the_byte(api: Fuzzed, path: str) -> None:
    body = _body(path)[:-1] + ', "note": "caf\xe9"}'.encode("latin-1")  # latin-1's é, one byte UTF-8 never has alone
    response = api.post(path, body)
    assert response.status_code == 400, response.text
    at = body.index(b"\xe9")
    assert response.json()["detail"] == f"body: not UTF-8: byte {at} is 0xe9 (JSON must be UTF-8)"


@pytest.mark.parametrize("path", ROUTES)
def test_a_key_twice_is_400_naming_the_key(api: Fuzzed, path: str) -> None:
    """It was the last one's, silently: {"customer_id": A, "customer_id": B} was a decision for B, while a proxy in
    front may read A."""
    first, value = next(iter(BODIES[path].items()))
    body = _body(path)[:-1] + f", {json.dumps(first)}: {json.dumps(value)}}}".encode()
    response = api.post(path, body)
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == f"body: the key {first!r} appears twice in one object: send each key once"


def test_a_key_twice_in_a_nested_object_is_refused_too(api: Fuzzed) -> None:
    body = b'{"customer_id": "C000042", "channel": "voice", "context": {"intent": "cancel", "intent": "sales"}}'
    response = api.post("/v1/recommend", body)
    assert response.status_code == 400
    assert "'intent' appears twice" in response.json()["detail"]


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"", "body: missing: send a JSON object (Content-Type: application/json)"),
        (b'{"customer_id": ', "body: not JSON: Expecting value at line 1 column 17"),
        (b"\xef\xbb\xbf{}", "body: starts with a byte order mark: send UTF-8 without one (RFC 8259 section 8.1)"),
    ],
    ids=["empty", "truncated", "bom"],
)
def test_an_empty_or_broken_body_names_the_problem(api: Fuzzed, path: str, content: bytes, detail: str) -> None:
    response = api.post(path, content)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"] == detail


@pytest.mark.parametrize(
    ("path", "body", "status", "detail"),
    [
        (
            "/v1/customers/lookup",
            {"identifier_kind": "phone", "identifier": "+1 202 555 0100"},
            404,
            "identifier: no customer holds it in the online store",
        ),
        (
            "/v1/feedback",
            {"decision_id": "f" * 32, "action_id": "no_action", "outcome": "declined"},
            404,
            f"decision_id: no decision {'f' * 32!r} is remembered (unknown, or older than the 40 days decisions are "
            "kept)",
        ),
    ],
    ids=["identifier", "decision"],
)
def test_unknown_ids_are_404_naming_the_field(
    api: Fuzzed, path: str, body: dict[str, object], status: int, detail: str
) -> None:
    response = api.post(path, json.dumps(body).encode())
    assert (response.status_code, response.json()["detail"]) == (status, detail)


def test_an_unknown_customer_id_is_404_naming_the_field_not_the_id(api: Fuzzed) -> None:
    response = api.client.get("/v1/customers/NOBODY-42/features")
    assert response.status_code == 404
    assert response.json()["detail"] == "customer_id: no such customer in the online store"


def test_an_unknown_agent_is_excluded_by_name(api: Fuzzed) -> None:
    """Assign answers for the agents it knows and says which candidates it does not."""
    body = _body("/v1/assign", queue=None, agent_ids=["NOBODY-1", "A0001"])
    response = api.client.post("/v1/assign", content=body.replace(b'"queue": null, ', b""), headers=JSON)
    assert response.status_code == 200, response.text
    assert {"agent_id": "NOBODY-1", "reason": "unknown agent"} in response.json()["excluded"]


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        (
            "/v1/assign",
            {
                **{k: v for k, v in BODIES["/v1/assign"].items() if k != "queue"},
                "agent_ids": [f"A{i:05d}" for i in range(10_000)],
            },
            "agent_ids: List should have at most 200 items after validation, not 10000",
        ),
        (
            "/v1/events",
            {"events": [{"type": "login", "event_id": f"many-{i}", "customer_id": CUSTOMER} for i in range(1_001)]},
            "events: List should have at most 1000 items after validation, not 1001",
        ),
    ],
    ids=["agents", "events"],
)
def test_a_list_over_its_cap_is_422_naming_the_field_and_the_cap(
    api: Fuzzed, path: str, body: dict[str, object], detail: str
) -> None:
    response = api.post(path, json.dumps(body).encode())
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == detail
