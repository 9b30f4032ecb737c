"""``POST /v1/recommend``: next-best actions for the agent desktop."""

from __future__ import annotations

from litestar import Response, post

from service.decisions import DecisionService
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
)
async def recommend(data: RecommendRequest, decisions: DecisionService) -> Response[RecommendResponse]:
    """Ranked actions for ``data.customer_id``."""
    return Response(json_body(await decisions.recommend(data)))  # type: ignore[arg-type]
