"""``POST /v1/recommend``: next-best actions for the agent desktop."""

from __future__ import annotations

from litestar import Response, post
from litestar.datastructures import ResponseHeader

from service.decisions import DecisionService
from service.logs import DECISION_HEADER
from service.openapi import KEYED, WITH_BODY, error_responses
from service.routes.body import json_body
from service.schemas import RecommendRequest, RecommendResponse


@post(
    "/v1/recommend",
    operation_id="recommend",
    summary="Rank next-best actions for a customer in a live contact",
    description="Scores every eligible action with the champion models on the customer's live features "
    "(one Redis round trip) and returns them best first, with reasons. Never fails on a missing dependency: "
    "`degraded` says when a fallback answered.",
    status_code=200,
    tags=["decisions"],
    responses=error_responses(*KEYED, *WITH_BODY),
    response_headers=[
        ResponseHeader(name=DECISION_HEADER, description="The answer's decision_id.", documentation_only=True)
    ],
)
async def recommend(data: RecommendRequest, decisions: DecisionService) -> Response[RecommendResponse]:
    """Ranked actions for ``data.customer_id``."""
    answer = await decisions.recommend(data)
    return Response(json_body(answer), headers={DECISION_HEADER: answer.decision_id})  # type: ignore[arg-type]
