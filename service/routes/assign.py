"""``POST /v1/assign``: ranked agents for the routing engine."""

from __future__ import annotations

from litestar import Response, post
from litestar.datastructures import ResponseHeader

from service.decisions import DecisionService
from service.logs import DECISION_HEADER
from service.openapi import KEYED, WITH_BODY, error_responses
from service.routes.body import json_body
from service.schemas import AssignRequest, AssignResponse


@post(
    "/v1/assign",
    operation_id="assign",
    summary="Rank candidate agents for a contact",
    description="Applies hard constraints (availability, capacity, language, skill) and ranks the eligible "
    "agents by the resolution model's P(first-contact resolution), each with its expected handle time; "
    "excluded candidates come back with the reason. Without the resolution model the agents' measured rates "
    "rank them and the answer says so (ranked_by, degraded).",
    status_code=200,
    tags=["decisions"],
    responses=error_responses(*KEYED, *WITH_BODY),
    response_headers=[
        ResponseHeader(name=DECISION_HEADER, description="The answer's decision_id.", documentation_only=True)
    ],
)
async def assign(data: AssignRequest, decisions: DecisionService) -> Response[AssignResponse]:
    """Ranked agents for the contact in ``data``."""
    answer = await decisions.assign(data)
    return Response(json_body(answer), headers={DECISION_HEADER: answer.decision_id})  # type: ignore[arg-type]
