"""A lean ASGI path for the one hot read, ``GET /v1/customers/{customer_id}/features[?view=V]``, in front of Litestar.

Why it exists: measured on one uvicorn worker at 16 connections (wrk, 2-core machine, 2026-12-04), a raw ASGI app
returning a fixed 40-feature JSON served 46k req/s, a Litestar route with this route's signature (a path
parameter with a pattern, a query parameter, one dependency) returning 40 msgspec Structs 15k req/s, and ours
7.9k req/s against Feast's 1.05k (7.5x; the issue asks 15x with p99 <= 3 ms). Litestar's own per-request work
(~45 us: routing, parameter parsing and validation, dependency injection, response building) was about half of
ours. This path does the same read for exactly the requests it can answer as Litestar would, and hands every
other request to the Litestar app unchanged.

What it takes: an HTTP ``GET`` whose path is exactly ``/v1/customers/{id}/features`` with an id matching
:data:`~service.schemas.CUSTOMER_ID_PATTERN` and no percent-escape anywhere in it, and whose query string is
empty or exactly ``view=<a customer view's name>``. What it answers: 200 with the bytes and headers Litestar
sends for that request (``content-type: application/json``, ``content-length``), built by the same
:meth:`CustomerService.features` the route calls. Anything else (another path or method, a malformed id, an
unknown view, other query parameters, an unknown customer, Redis unavailable, any exception) goes to Litestar,
which answers it as it always has and is the one place every error is answered; an answer the fast path could
not give costs that request a second read (a Redis that does not answer costs two timeouts before the 503).
Litestar stays the one documented route: the OpenAPI schema does not know this path exists.

The rule: anything added to the Litestar app that applies to this route (middleware, guards, auth, rate limits,
request hooks, response headers or cookies, caching, CORS, compression: issue 9) must be applied here too, or this
path removed. :class:`FastFeatureRead` refuses to start in front of an app whose layers hold any of them (see
:func:`unknown_layers`), and ``tests/service/test_fast_read.py`` holds that refusal. API keys, roles and rate
limits are not such a layer: :class:`~service.auth.ApiKeyGate` stands in front of this path and Litestar alike, so
a request reaches either only with a key of the route's role.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from service.customers import CustomerService
from service.schemas import CUSTOMER_ID_PATTERN

ROUTE = "/v1/customers/{customer_id:str}/features"
"""The Litestar route this path stands in front of."""
PATH_TEMPLATE = ROUTE.replace(":str", "")
"""The route as Litestar names it in ``scope["path_template"]`` (what request metrics are labelled by)."""

_PREFIX = "/v1/customers/"
_SUFFIX = "/features"
_CONTENT_TYPE = (b"content-type", b"application/json")

_HANDLER_LAYER_ATTRS = (
    "middleware",
    "guards",
    "before_request",
    "after_request",
    "after_response",
    "response_headers",
    "response_cookies",
)
_APP_ATTRS = ("before_send", "cors_config", "allowed_hosts", "csrf_config", "compression_config")


def unknown_layers(app: Litestar, path: str = PATH_TEMPLATE, method: Literal["GET", "POST"] = "GET") -> list[str]:
    """What ``app`` applies to the route at ``path`` (:data:`ROUTE`'s by default) for ``method`` beyond what a fast
    path was written for (nothing): their names.

    Every layer that owns the route handler (app, routers, the handler itself) is asked for middleware, guards,
    request and response hooks, extra headers and cookies (a header declared for the documentation only is not
    sent by Litestar, so it does not count); the app for its ASGI-level wrappers (``before_send``, CORS, allowed
    hosts, CSRF, compression) and the OpenTelemetry plugin; the handler for response caching.
    """
    (route,) = [r for r in app.routes if isinstance(r, HTTPRoute) and r.path_format == path]
    handler, _ = route.route_handler_map[method]

    def applied(layer: object, attr: str) -> bool:
        value = getattr(layer, attr, None)
        if attr == "response_headers" and value:
            return any(not getattr(h, "documentation_only", False) for h in value)
        return bool(value)

    found = [
        f"{type(layer).__name__}.{attr}"
        for layer in handler.ownership_layers
        for attr in _HANDLER_LAYER_ATTRS
        if applied(layer, attr)
    ]
    found += [f"Litestar.{attr}" for attr in _APP_ATTRS if getattr(app, attr, None)]
    found += [f"plugin {type(p).__name__}" for p in app.plugins if "OpenTelemetry" in type(p).__name__]
    if handler.cache:
        found.append("handler.cache")
    return found


async def send_json(send: Send, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A 200 with the JSON ``body`` and ``headers`` besides its type and length, as Litestar sends it."""
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 200,
        "headers": [_CONTENT_TYPE, (b"content-length", str(len(body)).encode()), *headers],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


class FastFeatureRead:
    """The ASGI app ``create_app`` returns: the feature read for the requests it can answer, Litestar for the rest."""

    def __init__(self, app: Litestar, customers: CustomerService) -> None:
        unknown = unknown_layers(app)
        if unknown:
            raise RuntimeError(
                f"the fast feature read would bypass {', '.join(unknown)}: apply it in service/fast_read.py too, "
                "or remove the fast path"
            )
        self.litestar = app
        """The application: every request this path does not answer, the lifespan, the OpenAPI schema."""
        self.answered = 0
        """How many requests this path answered (Litestar answered the rest): tests read it to know which did."""
        self._customers = customers
        self._id = re.compile(CUSTOMER_ID_PATTERN)
        self._views: dict[bytes, str | None] = {b"": None}
        self._views.update({f"view={v.name}".encode(): v.name for v in customers.registry.entity("customer").views})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the read when the request is one this path takes and the answer is a 200; else Litestar."""
        if scope["type"] == "http":
            body = await self._answer(scope)
            if body is not None:
                await send_json(send, body)
                self.answered += 1
                scope["path_template"] = PATH_TEMPLATE
                return
        await self.litestar(scope, receive, send)

    async def _answer(self, scope: Any) -> bytes | None:
        """The 200 body for a request this path takes, or None to leave the request to Litestar."""
        if scope["method"] != "GET":
            return None
        path: str = scope["path"]
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)) or scope.get("root_path"):
            return None
        raw: bytes | None = scope.get("raw_path")
        if raw is None or b"%" in raw:
            return None  # escapes are Litestar's to decode
        query: bytes = scope["query_string"]
        if query not in self._views:
            return None
        customer_id = path[len(_PREFIX) : -len(_SUFFIX)]
        if self._id.fullmatch(customer_id) is None:
            return None
        try:
            answer = await self._customers.features(customer_id, self._views[query])
        except Exception:
            return None  # every failure is Litestar's to answer, from its own read
        return msgspec.json.encode(answer)
