"""``POST /v1/events``: live events from telephony, chat, billing, CRM and the web change a customer's state."""

from __future__ import annotations

from litestar import post

from service.decisions import DecisionService
from service.schemas import EventBatch, EventsResponse


@post(
    "/v1/events",
    operation_id="ingest_events",
    summary="Apply a batch of events to the online state",
    description="1 to 1,000 events of the contract's types. The whole batch is validated first: one bad field "
    "answers 422 naming it (`events.3.sentiment.score`) and nothing is stored. Each event is applied at once "
    "and exactly once (by `event_id`), placed by `occurred_at` so late events land in the right window. "
    "Redis unavailable: 503 with Retry-After; retrying is safe.",
    status_code=200,
    tags=["events"],
)
async def ingest_events(data: EventBatch, decisions: DecisionService) -> EventsResponse:  # type: ignore[valid-type]
    """Apply ``data.events``."""
    return await decisions.ingest(data.events)  # type: ignore[attr-defined]
