"""``POST /v1/events``: live events from telephony, chat, billing, CRM and the web change a customer's state."""

from __future__ import annotations

from typing import Annotated

from litestar import post
from litestar.openapi.spec import Example
from litestar.params import Body

from service.decisions import DecisionService
from service.openapi import KEYED, WITH_BODY, error_responses
from service.schemas import EventsRequest, EventsResponse

# Without ``occurred_at`` an event happened when received: the examples stay valid (never too_old) whenever tried.
ONE_EVENT = Example(
    summary="One event",
    value={"type": "sentiment", "event_id": "ev-1", "customer_id": "C000042", "score": -0.7},
)
A_BATCH = Example(
    summary="A batch",
    value={
        "events": [
            {"type": "login", "event_id": "ev-2", "customer_id": "C000042"},
            {"type": "payment_failed", "event_id": "ev-3", "customer_id": "C000042", "amount": 49.9},
        ]
    },
)


@post(
    "/v1/events",
    operation_id="ingest_events",
    summary="Apply one event or a batch of events to the online state",
    description='One event, or `{"events": [...]}` of 1 to 1,000, of the contract\'s types. The answer has the '
    "same shape either way (counts, and a status per event in the order sent), so a producer reads one answer "
    "whatever it sends. The whole body is validated first: one bad field answers 422 naming it "
    "(`sentiment.score` for one event, `events.3.sentiment.score` in a batch) and nothing is stored. Each event is "
    "applied at once and exactly once (by `event_id`), placed by `occurred_at` so late events land in the right "
    "window. Redis unavailable: 503 with Retry-After; retrying is safe.",
    status_code=200,
    tags=["events"],
    responses=error_responses(*KEYED, *WITH_BODY, 503),
)
async def ingest_events(
    data: Annotated[EventsRequest, Body(examples=[ONE_EVENT, A_BATCH])], decisions: DecisionService
) -> EventsResponse:
    """Apply ``data.events``: the one event, or the batch's.

    ``EventsRequest`` is resolved when the app is made: ``create_app`` binds the name to its contract's body model.
    """
    return await decisions.ingest(data.events)
