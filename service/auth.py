"""Who may call which route: API keys with roles, rate limits per key, checked in front of every fast path.

:class:`ApiKeyGate` is an ASGI layer between the request timer and everything that answers requests (the fast
feature read, the Litestar app, and any fast path added there later), so no route can be reached around it. For
each request it asks Litestar's own router which route handler the path and method resolve to (the same call
Litestar makes next, cached by Litestar), looks up the role that handler needs in :data:`ROUTE_ROLES`, and then:

- an open route (``/health``, ``/ready``, the OpenAPI schema and its pages) goes through untouched;
- no key, or a key the keys file does not hold: ``401`` with ``WWW-Authenticate: Bearer``;
- a key whose role is not the route's (nor ``admin``): ``403`` naming both roles;
- a key over its rate: ``429`` with ``Retry-After``;
- anything else goes on, with the key in ``scope["auth"]``.

A path no route takes, or a method the route lacks, still needs a valid key (then Litestar answers 404 or 405):
nobody learns which routes exist without one. Error bodies have the shape of the service's others
(``{"status_code", "detail"}``) and name the route by its template, never the path (which may hold a customer id).

The key travels as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (both may be sent if they agree).

Routes are mapped to roles by ``operation_id`` in :data:`ROUTE_ROLES`, in this one place, so the policy can be read
(and tested, ``tests/e2e/test_auth.py``) as a whole. Routes under ``/v1/admin/`` need ``admin`` unless listed. A
route the table does not cover stops the app from starting, naming it: a new route is never open by omission.

What it costs per request: a routing-cache lookup, a scan of the headers, a SHA-256 of the key, a dict lookup and
the token bucket's arithmetic; ``bench.auth`` measures it in process (README, Security).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Generic, TypeVar, cast

import msgspec
from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, HTTPScope, Receive, Scope, Send
from litestar.utils import normalize_path

from service.keys import ApiKey, KeyRing, Role

App = TypeVar("App", bound=ASGIApp)


class Access(Enum):
    """What a route needs when it is not a role."""

    OPEN = "open"
    """Anyone may call it, without a key."""
    ANY_KEY = "any valid key"
    """Some valid key, whatever its role: a request Litestar answers 404 or 405, or an automatic OPTIONS."""


OPEN = Access.OPEN
ANY_KEY = Access.ANY_KEY
Need = Role | Access

ROUTE_ROLES: Mapping[str, Need] = {
    "health": OPEN,  # liveness for the orchestrator: says "ok", the model versions and where they came from
    "ready": OPEN,  # readiness for the load balancer: Redis and models up or not, versions, the feature contract
    "metrics": Role.METRICS,  # traffic and the decision mix are business figures: Prometheus sends a bearer token
    "recommend": Role.DESKTOP,
    "feedback": Role.DESKTOP,  # the desktop role: recommend's answers and a contact's end both come back here
    "customer_features": Role.DESKTOP,
    "customer_lookup": Role.DESKTOP,
    "assign": Role.ROUTER,
    "ingest_events": Role.EVENTS,
    "erase_customer": Role.ADMIN,
    "reload_catalog": Role.ADMIN,
}
"""The role each route needs, by ``operation_id``; ``admin`` may call every route."""
ADMIN_PREFIX = "/v1/admin/"
"""Routes under it need ``admin`` when :data:`ROUTE_ROLES` does not name them."""
BURST_SECONDS = 2.0
"""A key may send this many seconds' worth of its rate at once before it is held to the rate."""
REALM = b'Bearer realm="nba-copilot"'


def route_roles(app: Litestar, table: Mapping[str, Need] = ROUTE_ROLES) -> dict[tuple[str, str], Need]:
    """``(path template, method)`` → what it needs, for every route of ``app``; raises naming an uncovered route."""
    docs = app.openapi_config.path if app.openapi_config and app.openapi_config.path else "/schema"
    out: dict[tuple[str, str], Need] = {}
    uncovered = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            uncovered.append(f"{route.path} ({type(route).__name__})")
            continue
        for method, (handler, _) in route.route_handler_map.items():
            operation = handler.operation_id if isinstance(handler.operation_id, str) else None
            need: Need
            if operation is not None and operation in table:
                need = table[operation]
            elif method == "OPTIONS":
                need = ANY_KEY  # Litestar's automatic answer listing the route's methods
            elif route.path_format == docs or route.path_format.startswith(docs + "/"):
                need = OPEN  # the OpenAPI schema and its pages: the manual, no data
            elif route.path_format.startswith(ADMIN_PREFIX):
                need = Role.ADMIN
            else:
                uncovered.append(f"{method} {route.path_format} (operation_id {operation!r})")
                continue
            out[(route.path_format, method)] = need
    if uncovered:
        raise RuntimeError(
            f"no role is declared for {', '.join(uncovered)}: add its operation_id to ROUTE_ROLES in service/auth.py"
        )
    return out


class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` held."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * BURST_SECONDS)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token: 0 when there was one, else the seconds until there is."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class ApiKeyGate(Generic[App]):
    """The ASGI layer that lets a request through to ``app`` only with a key of the route's role (see module)."""

    def __init__(
        self,
        app: App,
        litestar: Litestar,
        keys: KeyRing,
        *,
        rate_limit: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.keys = keys
        self.rate_limit = rate_limit
        """Requests per second a key may make when its own entry sets none; 0: no limit."""
        self._clock = clock
        self._route = litestar.asgi_router.handle_routing
        roles = route_roles(litestar)
        self._needs: dict[int, Need] = {}
        for route in litestar.routes:
            if isinstance(route, HTTPRoute):
                for method, (handler, _) in route.route_handler_map.items():
                    self._needs[id(handler)] = roles[(route.path_format, method)]
        self._buckets: dict[str, _Bucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = cast(HTTPScope, scope)["method"]
        # The path exactly as Litestar's router will see it (its root_path split and normalisation), so both
        # resolve the same handler: a difference would let a key of one role reach another role's route.
        path: str = scope["path"]
        if root_path := scope.get("root_path", ""):
            path = path.split(root_path, maxsplit=1)[-1]
        if path.endswith("/") or "//" in path or not path.startswith("/"):
            path = normalize_path(path)  # else normalize_path(path) == path, without its regex
        template = None
        try:
            _, handler, _, _, template = self._route(path=path, method=method)
            need = self._needs[id(handler)]
        except HTTPException:  # Litestar will answer 404 or 405
            need = ANY_KEY
        if need is OPEN:
            await self.app(scope, receive, send)
            return
        presented, problem = _presented_key(scope["headers"])
        if presented is None:
            await self._refuse(scope, send, template, 401, problem, (b"www-authenticate", REALM))
            return
        now = self._clock()
        key = self.keys.lookup(presented, now)
        if key is None:
            challenge = REALM + b', error="invalid_token"'
            detail = "unknown or revoked API key"
            await self._refuse(scope, send, template, 401, detail, (b"www-authenticate", challenge))
            return
        if isinstance(need, Role) and not key.allows(need):
            detail = f"API key {key.name!r} has role {key.role.value}; {method} {template} needs role {need} (or admin)"
            await self._refuse(scope, send, template, 403, detail)
            return
        wait = self._limited(key, now)
        if wait:
            retry = max(1, math.ceil(wait))
            rate = key.rate_limit or self.rate_limit
            detail = f"API key {key.name!r} is over its rate limit of {rate:g} requests/s: retry after {retry} s"
            await self._refuse(scope, send, template, 429, detail, (b"retry-after", str(retry).encode()))
            return
        scope["auth"] = key
        await self.app(scope, receive, send)

    def _limited(self, key: ApiKey, now: float) -> float:
        """0 when ``key`` may go on, else the seconds until it may."""
        rate = key.rate_limit or self.rate_limit
        if not rate:
            return 0.0
        bucket = self._buckets.get(key.name)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[key.name] = _Bucket(rate, now)
        return bucket.take(now)

    @staticmethod
    async def _refuse(
        scope: Scope, send: Send, template: str | None, status: int, detail: str, *headers: tuple[bytes, bytes]
    ) -> None:
        if template is not None:
            scope["path_template"] = template  # the request timer labels the refusal by its route
        body = msgspec.json.encode({"status_code": status, "detail": detail})
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
        await send(start)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
        await send(end)


def _presented_key(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str]:
    """The key a request carries, or None and why not."""
    bearer = header = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() != b"bearer" or not credentials.strip():
                return None, "the Authorization header must be 'Bearer <API key>'"
            bearer = credentials.strip()
        elif name == b"x-api-key":
            header = value.strip()
    if bearer is not None and header is not None and bearer != header:
        return None, "Authorization and X-API-Key carry different keys: send one"
    presented = bearer if bearer is not None else header
    if not presented:
        return None, "no API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    return presented.decode("latin-1"), ""
