"""Lean ASGI paths for ``POST /v1/recommend`` and ``POST /v1/assign`` in front of Litestar, as :mod:`service.fast_read`
is for the feature read.

Why they exist: Litestar's own work for a POST with a JSON body (routing, reading and decoding the body, validating
it into the pydantic model, dependency injection, building the response) cost about 100 us of recommend's ~600 us
of server CPU (in process: 624 us through the app against 520 us calling the service directly, 2026-12-05), and a
fifth of assign's (py-spy under wrk, assign with 100 candidates: 79% of the samples in Litestar's route, 59% in
the decision itself; 2026-12-05).

What a path takes: a ``POST`` to exactly its route (no ``root_path``) with a JSON content type and a body of at
most the service's limit (``NBA_MAX_BODY_BYTES``) that the route's request model validates and the service's JSON
rules take (:mod:`service.request_body`: each key once, which pydantic's parser does not check). What it answers: 200
with the bytes and headers Litestar sends for it (``content-type``, ``content-length``, the decision's id in
``x-decision-id``), from the same :class:`~service.decisions.DecisionService` method the route calls. Anything
else (another route, a body that fails validation or those rules, too large, another content type) goes to
Litestar with the body it sent, replayed, and Litestar answers it as it always has (400 or 422 naming the problem,
413, 415): errors have one place.
So does a request the decision refuses as :class:`~service.errors.BadRequest` (assign's unknown language or empty
queue): the service raises it before it reads or writes anything, so Litestar's second call refuses it the same way.
Any other exception inside the decision is not retried by Litestar, since the decision may already have counted
presentations: it propagates, and the server answers 500. The OpenAPI schema is Litestar's routes'.

The rule of :mod:`service.fast_read` holds here too: a layer added to a Litestar route (middleware, guards,
hooks, headers, caching...) must be applied here, or this path removed; :class:`FastDecisions` refuses to start in
front of an app whose routes have one. API keys come before both (:class:`~service.auth.ApiKeyGate`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar.types import Receive, ReceiveMessage, Scope, Send
from pydantic import ValidationError

from service import request_body
from service.decisions import DecisionService
from service.errors import BadRequest, MalformedBody
from service.fast_read import FastFeatureRead, send_json, unknown_layers
from service.logs import DECISION_HEADER
from service.routes.body import json_body
from service.schemas import AssignRequest, AssignResponse, RecommendRequest, RecommendResponse

_DECISION = DECISION_HEADER.lower().encode()


@dataclass(frozen=True)
class _Route:
    """One decision route: its path, its request model, and the service's method that answers it."""

    path: str
    validate: Callable[[bytes], RecommendRequest | AssignRequest]
    decide: Callable[[Any], Awaitable[RecommendResponse | AssignResponse]]


class FastDecisions:
    """Recommend and assign for the requests they can answer; the feature read's fast path (then Litestar) for the
    rest."""

    def __init__(self, feature_read: FastFeatureRead, decisions: DecisionService, *, max_body_bytes: int) -> None:
        app = feature_read.litestar
        routes = [
            _Route("/v1/recommend", RecommendRequest.model_validate_json, decisions.recommend),
            _Route("/v1/assign", AssignRequest.model_validate_json, decisions.assign),
        ]
        for route in routes:
            unknown = unknown_layers(app, route.path, "POST")
            if unknown:
                raise RuntimeError(
                    f"the fast path of {route.path} would bypass {', '.join(unknown)}: apply it in "
                    "service/fast_decisions.py too, or remove the fast path"
                )
        self.feature_read = feature_read
        """Every request this path does not take: the feature read's fast path, then Litestar."""
        self.litestar = app
        """The application (the OpenAPI schema, the lifespan, every error)."""
        self.answered = 0
        """How many requests these paths answered (tests read it to know which did)."""
        self._routes = {route.path: route for route in routes}
        self._limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope)
        if route is None:
            await self.feature_read(scope, receive, send)
            return
        read, body = await _read(receive, self._limit)
        try:
            request = route.validate(body) if body is not None else None
        except ValidationError:
            request = None
        if request is not None and not _strict(body):  # type: ignore[arg-type]
            request = None  # a key twice: pydantic kept the last, Litestar refuses it (service/request_body.py)
        answer = None
        if request is not None:
            try:
                answer = await route.decide(request)
            except BadRequest:
                answer = None
        if answer is None:
            await self.feature_read(scope, _replay(read, receive), send)
            return
        await send_json(send, json_body(answer), [(_DECISION, answer.decision_id.encode())])
        self.answered += 1
        scope["path_template"] = route.path

    def _route(self, scope: Any) -> _Route | None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return None
        route = self._routes.get(scope["path"])
        if route is None:
            return None
        for name, value in scope["headers"]:
            if name == b"content-type":
                return route if value.split(b";")[0].strip().lower() == b"application/json" else None
        return None


async def _read(receive: Receive, limit: int) -> tuple[list[ReceiveMessage], bytes | None]:
    """The request's messages as read, and its body (None when it went past ``limit`` or the client left)."""
    read: list[ReceiveMessage] = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return read, None
        size += len(message.get("body", b""))
        if size > limit:
            return read, None
        if not message.get("more_body", False):
            return read, b"".join(m.get("body", b"") for m in read)  # type: ignore[misc]


def _strict(body: bytes) -> bool:
    """Whether ``body`` passes the service's JSON rules (:func:`service.request_body.decode`), which pydantic's parser
    does not all apply: it keeps the last of two equal keys."""
    try:
        request_body.decode(body)
    except MalformedBody:
        return False
    return True


def _replay(read: list[ReceiveMessage], receive: Receive) -> Callable[[], Awaitable[ReceiveMessage]]:
    """A ``receive`` that hands over the messages already read, then the rest from ``receive``."""
    pending = list(read)

    async def again() -> ReceiveMessage:
        return pending.pop(0) if pending else await receive()

    return again
