"""The fast feature read (``service/fast_read.py``) answers exactly as the Litestar route would, over HTTP.

Two apps on the same Redis and the same fixed clock: ``create_app`` (the fast path in front of Litestar) and its
Litestar app alone. Each request goes to both; status, headers (but the date) and body bytes must be equal, and the
fast path's own count says whether it answered or left the request to Litestar.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import redis
from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from features import Registry
from features.packed import TAG_BYTES, PackedLayout
from service import Settings, create_app
from service.auth import ApiKeyGate
from service.fast_decisions import FastDecisions
from service.fast_read import FastFeatureRead, unknown_layers
from service.metrics import RequestTimer
from service.routes import customer_features
from tests.conftest import free_port, serve, settings_for

CUSTOMER = "C000042"
DAY = 86_400.0


@dataclass(frozen=True)
class Pair:
    """The fast app and the Litestar app alone, served side by side on the same clock."""

    fast: httpx.Client
    plain: httpx.Client
    app: FastFeatureRead
    decisions: FastDecisions

    def same(self, method: str, path: str) -> httpx.Response:
        """``method path`` on both; asserts the answers are equal and returns the fast app's."""
        fast, plain = self.fast.request(method, path), self.plain.request(method, path)
        assert (fast.status_code, fast.content) == (plain.status_code, plain.content), f"{method} {path}"
        assert _headers(fast) == _headers(plain), f"{method} {path}"
        return fast


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.multi_items() if k != "date"]


@contextmanager
def _pair(settings: Settings) -> Iterator[Pair]:
    now = time.time()
    fast: list[RequestTimer[ApiKeyGate[FastDecisions]]] = []

    def build_fast(s: Settings) -> ASGIApp:
        fast.append(create_app(s, clock=lambda: now))
        return fast[0]

    def build_plain(s: Settings) -> ASGIApp:
        return create_app(s, clock=lambda: now).app.app.litestar

    with ExitStack() as stack:
        a = stack.enter_context(serve(settings, build_fast))
        b = stack.enter_context(serve(settings, build_plain))
        yield Pair(
            stack.enter_context(a.client()),
            stack.enter_context(b.client()),
            fast[0].app.app.feature_read,
            fast[0].app.app,
        )


@pytest.fixture(scope="module")
def served_pair(data_dir: Path, redis_url: str, champions: dict[str, str]) -> Iterator[Pair]:
    with _pair(settings_for(data_dir, redis_url)) as pair:
        yield pair


@pytest.fixture
def pair(served_pair: Pair, materialized: None) -> Pair:
    """Both apps, with the test world materialized in a fresh Redis."""
    return served_pair


def _views(registry: Registry) -> list[str]:
    return ["", *(f"?view={v.name}" for v in registry.entity("customer").views)]


def _only_events(redis_client: redis.Redis) -> str:
    """A customer whose snapshot is gone: found through their event state alone."""
    redis_client.delete(f"nba:customer:{{{CUSTOMER}}}")
    return CUSTOMER


def _stale_profile(redis_client: redis.Redis, registry: Registry) -> str:
    """A customer whose profile was observed 100 days ago, past its TTL."""
    first, _ = PackedLayout(registry.entity("customer")).segments["customer_profile"]
    redis_client.setrange(
        f"nba:customer:{{{CUSTOMER}}}", TAG_BYTES + 8 * first, struct.pack("<d", time.time() - 100 * DAY)
    )
    return CUSTOMER


@pytest.mark.parametrize("kind", ["fresh", "only-events", "stale-view"])
def test_the_fast_path_answers_every_view_byte_for_byte_as_litestar(
    pair: Pair, redis_client: redis.Redis, registry: Registry, kind: str
) -> None:
    customers = {
        "fresh": lambda: ["C000042", "C000001", "C000100"],
        "only-events": lambda: [_only_events(redis_client)],
        "stale-view": lambda: [_stale_profile(redis_client, registry)],
    }[kind]()
    before = pair.app.answered
    requests = [f"/v1/customers/{c}/features{q}" for c in customers for q in _views(registry)]
    for path in requests:
        response = pair.same("GET", path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "application/json"
    assert pair.app.answered - before == len(requests), "the fast path should have answered every one"
    if kind == "only-events":
        profile = pair.fast.get(f"/v1/customers/{CUSTOMER}/features?view=customer_profile").json()
        assert profile["found"] is True
        assert profile["views"][0]["age_seconds"] is None
    if kind == "stale-view":
        assert pair.fast.get(f"/v1/customers/{CUSTOMER}/features?view=customer_profile").json()["views"][0]["stale"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", f"/v1/customers/{CUSTOMER}/features?view=nope", 422),
        ("GET", f"/v1/customers/{CUSTOMER}/features?view=", 422),
        ("GET", "/v1/customers/C0 42;DROP/features", 422),
        ("GET", "/v1/customers/-C000042/features", 422),
        ("GET", f"/v1/customers/{'C' * 65}/features", 422),
        ("GET", "/v1/customers/C00004%/features", 422),
        ("GET", "/v1/customers/C999999/features", 404),
        ("GET", "/v1/customers/C999999/features?view=customer_profile", 404),
        ("GET", f"/v1/customers/{CUSTOMER}/features?view=customer_profile&x=1", 200),
        ("GET", f"/v1/customers/{CUSTOMER}/features?x=1", 200),
        ("GET", f"/v1/customers/{CUSTOMER}/features?view=customer_profile&view=customer_profile", None),
        ("GET", f"/v1/customers/{CUSTOMER}/features?view=customer%5Fprofile", 200),
        ("GET", f"/v1/customers/{CUSTOMER}/features?View=customer_profile", 200),
        ("GET", "/v1/customers/%43000042/features", None),
        ("GET", f"/v1/customers/{CUSTOMER}/features/", None),
        ("GET", f"/v1/customers/{CUSTOMER}/features/x", 404),
        ("HEAD", f"/v1/customers/{CUSTOMER}/features", None),
        ("POST", f"/v1/customers/{CUSTOMER}/features", 405),
        ("DELETE", f"/v1/customers/{CUSTOMER}/features", 405),
        ("GET", "/health", 200),
    ],
    ids=[
        "unknown-view",
        "empty-view",
        "space-and-semicolon",
        "leading-dash",
        "too-long",
        "percent-in-id",
        "unknown-customer",
        "unknown-customer-one-view",
        "extra-parameter",
        "other-parameter",
        "repeated-view",
        "escaped-view",
        "view-in-capitals",
        "escaped-id",
        "trailing-slash",
        "longer-path",
        "head",
        "post",
        "delete",
        "other-route",
    ],
)
def test_what_the_fast_path_does_not_take_litestar_answers(
    pair: Pair, method: str, path: str, status: int | None
) -> None:
    before = pair.app.answered
    response = pair.same(method, path)
    if status is not None:
        assert response.status_code == status, response.text
    assert pair.app.answered == before, "the fast path should have left this to Litestar"


def test_without_redis_the_read_is_litestars_503_with_retry_after(data_dir: Path, champions: dict[str, str]) -> None:
    with _pair(settings_for(data_dir, f"redis://127.0.0.1:{free_port()}")) as pair:
        for query in ("", "?view=customer_profile"):
            response = pair.same("GET", f"/v1/customers/{CUSTOMER}/features{query}")
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "5"
        assert pair.app.answered == 0


def test_the_app_holds_nothing_the_fast_path_would_bypass(data_dir: Path, redis_url: str) -> None:
    """If this fails, something now guards the route in Litestar: apply it in the fast path too, or remove it."""
    app = create_app(settings_for(data_dir, redis_url)).app.app.litestar
    assert unknown_layers(app) == []
    assert app.middleware == []
    assert app.guards == []


class _Stamp(AbstractMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _deny(_: ASGIConnection, __: BaseRouteHandler) -> None:
    return None


@pytest.mark.parametrize(
    ("app", "named"),
    [
        (lambda: Litestar([customer_features], middleware=[_Stamp]), ["Litestar.middleware"]),
        (lambda: Litestar([customer_features], guards=[_deny]), ["Litestar.guards"]),
        (lambda: Litestar([customer_features], response_headers={"x-served-by": "nba"}), ["Litestar.response_headers"]),
        (lambda: Litestar([customer_features], before_send=[lambda _, __: None]), ["Litestar.before_send"]),
        (lambda: Litestar([customer_features], allowed_hosts=["example.com"]), None),
    ],
    ids=["middleware", "guard", "response-header", "before-send", "allowed-hosts"],
)
def test_the_fast_path_refuses_an_app_with_layers_it_does_not_know(app: object, named: list[str] | None) -> None:
    built = app()  # type: ignore[operator]
    found = unknown_layers(built)
    assert found, "the fast path must see what guards the route"
    if named is not None:
        assert found == named
    with pytest.raises(RuntimeError, match="would bypass"):
        FastFeatureRead(built, None)  # type: ignore[arg-type]


def _same_but_the_decision(pair: Pair, path: str, body: dict[str, object]) -> dict[str, object]:
    """POST ``body`` to both apps: 200 from each, equal answers but for the decision's id (each its own, in the
    header too), the same headers; returns the fast app's answer."""
    fast, plain = pair.fast.post(path, json=body), pair.plain.post(path, json=body)
    assert fast.status_code == plain.status_code == 200, fast.text
    answer, other = fast.json(), plain.json()
    assert answer.pop("decision_id") != other.pop("decision_id")
    assert answer == other
    assert fast.headers["x-decision-id"] == fast.json()["decision_id"]
    assert sorted(k for k, _ in _headers(fast)) == sorted(k for k, _ in _headers(plain))
    return answer  # type: ignore[no-any-return]


def test_the_fast_recommend_answers_as_litestar_and_leaves_every_error_to_it(pair: Pair) -> None:
    """Valid recommends are answered by the fast path with Litestar's bytes but the decision's id; a body Litestar
    would refuse (invalid, too large, not JSON, a key twice, nested too deeply, not UTF-8, sent as text) reaches
    Litestar whole and gets its answer."""
    before = pair.decisions.answered
    for customer in ("C000001", "C000002", "C000003"):
        body = {"customer_id": customer, "channel": "voice", "context": {"intent": "cancel"}}
        _same_but_the_decision(pair, "/v1/recommend", body)
    assert pair.decisions.answered - before == 3
    big = {"customer_id": "C000001", "channel": "voice", "context": {"intent": "x" * 2_000_000}}
    for content, headers in (
        (b'{"customer_id": "C000001", "channel": "fax"}', {"content-type": "application/json"}),
        (b'{"channel": "voice"}', {"content-type": "application/json"}),
        (b'{"customer_id": "C000001", "channel": "voice"', {"content-type": "application/json"}),
        (b'{"customer_id": "C000001", "channel": "voice"}', {"content-type": "text/plain"}),
        (json.dumps(big).encode(), {"content-type": "application/json"}),
        (
            b'{"customer_id": "C000001", "customer_id": "C000002", "channel": "voice"}',
            {"content-type": "application/json"},
        ),
        (
            b'{"customer_id": "C000001", "channel": "voice", "context": ' + b'{"a": ' * 300 + b"1" + b"}" * 301,
            {"content-type": "application/json"},
        ),
        (b'{"customer_id": "C\xe9", "channel": "voice"}', {"content-type": "application/json"}),
    ):
        fast = pair.fast.post("/v1/recommend", content=content, headers=headers)
        plain = pair.plain.post("/v1/recommend", content=content, headers=headers)
        assert 400 <= fast.status_code < 500, content[:60]
        assert (fast.status_code, fast.content) == (plain.status_code, plain.content), content[:60]
    assert pair.decisions.answered - before == 3  # each of those went to Litestar


def test_the_fast_assign_answers_as_litestar_and_leaves_every_error_to_it(pair: Pair, world: Path) -> None:
    """Valid assigns too; a request the decision refuses (unknown language, a queue with no agents) reaches Litestar
    and gets its 400 naming the field, as does a body it would refuse."""
    before = pair.decisions.answered
    contact = {"customer_id": "C000001", "intent": "billing", "channel": "voice", "language": "en"}
    every = sorted(set(pq.read_table(world / "agent_snapshots.parquet", columns=["agent_id"])["agent_id"].to_pylist()))
    for agents in (every, every[: len(every) // 2]):
        body = contact | {"agent_ids": agents}
        assert _same_but_the_decision(pair, "/v1/assign", body)["agents"], "the contact has agents to rank"
    assert pair.decisions.answered - before == 2
    for body, field in (
        (contact | {"language": "tlh", "agent_ids": ["A0001"]}, "language"),
        (contact | {"queue": "nobody-serves-this"}, "queue"),
        (contact | {"intent": "weather", "agent_ids": ["A0001"]}, "intent"),
    ):
        fast, plain = pair.fast.post("/v1/assign", json=body), pair.plain.post("/v1/assign", json=body)
        assert fast.status_code == plain.status_code, body
        assert fast.status_code in (400, 422), fast.text
        assert fast.content == plain.content
        assert field in fast.text
    assert pair.decisions.answered - before == 2  # each of those went to Litestar
