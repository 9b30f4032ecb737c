"""``POST /v1/feedback``: what came of a decision (the customer's answer to an action and whether they stayed, or the
contact's end)."""

from __future__ import annotations

from typing import Annotated

from litestar import post
from litestar.openapi.spec import Example
from litestar.params import Body

from service.decision_records import RETENTION_HORIZON_DAYS
from service.feedback import FeedbackService
from service.openapi import KEYED, WITH_BODY, error_responses
from service.schemas import FeedbackRequest, FeedbackResponse

ACCEPTED = Example(
    summary="An action accepted",
    value={"decision_id": "e385a2d3b0be434d943534fb416ed84f", "action_id": "plan_upgrade", "outcome": "accepted"},
)
RETAINED = Example(
    summary="The customer still a customer at the end of the churn horizon",
    value={"decision_id": "e385a2d3b0be434d943534fb416ed84f", "retained": True},
)
RESOLVED = Example(
    summary="A routed contact resolved, with its CSAT",
    value={"decision_id": "0f4c2b8e6a9d4f0e8b7c6d5e4f3a2b1c", "resolved": True, "csat": 4, "agent_id": "A0033"},
)


@post(
    "/v1/feedback",
    operation_id="feedback",
    summary="Record what came of a decision",
    description="For a recommend decision: `action_id` (one the decision returned) and `outcome` (accepted, "
    "declined, ignored), and/or `retained`: whether the customer was still a customer at the end of the churn "
    f"horizon, {RETENTION_HORIZON_DAYS} days after the decision, posted once it has ended (the shadow report's "
    "reward). An offer's answer becomes offer_presented / offer_accepted / offer_declined events in the customer's "
    "state; a decline or acceptance starts the action's cool-down or suppression (its contact policy). "
    "For an assign decision: `resolved` and/or `csat` (a CSAT becomes a survey_answered event), and optionally the "
    "`agent_id` who took the contact. Each answer is kept with the decision and counts once: a repeat comes back "
    "in `duplicates` and changes nothing. 404 naming the decision_id when it is unknown or expired; 422 naming the "
    "field for an answer that does not fit the decision; 503 with Retry-After when Redis does not answer.",
    status_code=200,
    tags=["decisions"],
    responses=error_responses(*KEYED, *WITH_BODY, 404, 503),
)
async def feedback(
    data: Annotated[FeedbackRequest, Body(examples=[ACCEPTED, RETAINED, RESOLVED])], feedback: FeedbackService
) -> FeedbackResponse:
    """Record ``data`` against its decision."""
    return await feedback.record(data)
