"""A lean ASGI path for ``POST /v1/recommend`` in front of Litestar, as :mod:`service.fast_read` is for the feature
read.

Why it exists: Litestar's own work for a POST with a JSON body (routing, reading and decoding the body, validating
it into the pydantic model, dependency injection, building the response) cost about 100 us of recommend's ~600 us
of server CPU (in process: 624 us through the app against 520 us calling the service directly, 2026-12-05).

What it takes: a ``POST`` to exactly ``/v1/recommend`` (no ``root_path``) with a JSON content type and a body of
at most the service's limit (``NBA_MAX_BODY_BYTES``) that :class:`~service.schemas.RecommendRequest` validates.
What it answers: 200 with the bytes and headers Litestar sends for it (``content-type``, ``content-length``, the
decision's id in ``x-decision-id``), from the same :meth:`DecisionService.recommend` the route calls. Anything else
(another route, a body that fails validation, too large, another content type) goes to Litestar with the body it
sent, replayed, and Litestar answers it as it always has (422 naming the field, 413, 415): errors have one place.
An exception inside the decision itself is not retried by Litestar, since the decision may already have counted
presentations: it propagates, and the server answers 500. The OpenAPI schema is Litestar's route's.

The rule of :mod:`service.fast_read` holds here too: a layer added to the Litestar route (middleware, guards,
hooks, headers, caching...) must be applied here, or this path removed; :class:`FastRecommend` refuses to start in
front of an app whose recommend route has one. API keys come before both (:class:`~service.auth.ApiKeyGate`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.types import Receive, ReceiveMessage, Scope, Send
from pydantic import ValidationError

from service.decisions import DecisionService
from service.fast_read import FastFeatureRead, send_json, unknown_layers
from service.logs import DECISION_HEADER
from service.routes.body import json_body
from service.schemas import RecommendRequest

PATH = "/v1/recommend"
_DECISION = DECISION_HEADER.lower().encode()


class FastRecommend:
    """Recommend for the requests it can answer; the feature read's fast path (then Litestar) for the rest."""

    def __init__(self, feature_read: FastFeatureRead, decisions: DecisionService, *, max_body_bytes: int) -> None:
        app = feature_read.litestar
        unknown = unknown_layers(app, PATH, "POST")
        if unknown:
            raise RuntimeError(
                f"the fast recommend would bypass {', '.join(unknown)}: apply it in service/fast_recommend.py too, "
                "or remove the fast path"
            )
        self.feature_read = feature_read
        """Every request this path does not take: the feature read's fast path, then Litestar."""
        self.litestar = app
        """The application (the OpenAPI schema, the lifespan, every error)."""
        self.answered = 0
        """How many requests this path answered (tests read it to know which did)."""
        self._decisions = decisions
        self._limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._takes(scope):
            await self.feature_read(scope, receive, send)
            return
        read, body = await _read(receive, self._limit)
        try:
            request = RecommendRequest.model_validate_json(body) if body is not None else None
        except ValidationError:
            request = None
        if request is None:
            await self.feature_read(scope, _replay(read, receive), send)
            return
        answer = await self._decisions.recommend(request)
        await send_json(send, json_body(answer), [(_DECISION, answer.decision_id.encode())])
        self.answered += 1
        scope["path_template"] = PATH

    @staticmethod
    def _takes(scope: Any) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH or scope.get("root_path"):
            return False
        for name, value in scope["headers"]:
            if name == b"content-type":
                return bool(value.split(b";")[0].strip().lower() == b"application/json")
        return False


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


def _replay(read: list[ReceiveMessage], receive: Receive) -> Callable[[], Awaitable[ReceiveMessage]]:
    """A ``receive`` that hands over the messages already read, then the rest from ``receive``."""
    pending = list(read)

    async def again() -> ReceiveMessage:
        return pending.pop(0) if pending else await receive()

    return again
