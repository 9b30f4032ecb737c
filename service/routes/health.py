"""``GET /health`` (the process is alive), ``GET /ready`` (it can give full answers), ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from features import OnlineStoreUnavailable
from service.decisions import DecisionService
from service.metrics import CONTENT_TYPE, Metrics
from service.openapi import KEYED, error_responses
from service.schemas import Health, Readiness


@get(
    "/health",
    operation_id="health",
    summary="Liveness, and the models in force",
    description="Always 200 while the process serves. Also says which model versions are in force, whether they "
    "came from MLflow or from the last-known-good copy on disk, whether MLflow answered the last poll, why a "
    "promoted version is not in force (if so), and why a changed catalog file was refused (if so).",
    tags=["operations"],
)
async def health(decisions: DecisionService) -> Health:
    """Always ok while the process serves."""
    holder = decisions.holder
    status = holder.status
    registry = {True: "reachable", False: "unreachable", None: "not asked yet"}[status.registry_up]
    return Health(
        status="ok",
        model_versions=holder.versions,
        models_from=status.sources,
        model_registry=registry,  # type: ignore[arg-type]
        model_problems=status.problems,
        catalog_problem=None if (refused := decisions.catalogs.last_error) is None else str(refused),
    )


@get(
    "/ready",
    operation_id="ready",
    summary="Readiness: Redis answers and models are loaded",
    description="200 when both hold, 503 with the reason otherwise.",
    tags=["operations"],
    responses={
        503: ResponseSpec(
            data_container=Readiness,
            description="Redis does not answer or no models are loaded: the same body, with the reason.",
            generate_examples=False,
        )
    },
)
async def ready(decisions: DecisionService) -> Response[Readiness]:
    """Check Redis and the model holder."""
    try:
        await decisions.store.ping()
        redis = "ok"
    except OnlineStoreUnavailable as exc:
        redis = str(exc)
    holder = decisions.holder
    body = Readiness(
        ready=redis == "ok" and holder.loaded,
        redis=redis,
        models="ok" if holder.loaded else holder.error or "not loaded",
        resolution_model=holder.resolution_error or "ok",
        model_versions=holder.versions,
        feature_contract=decisions.registry.version,
    )
    return Response(body, status_code=200 if body.ready else 503)


@get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    description="Request latency per route template, decisions per action, fallbacks per dependency, the models "
    "in force and the age of the customer views decisions read, in Prometheus' text format.",
    media_type=CONTENT_TYPE,
    tags=["operations"],
    responses=error_responses(*KEYED),
)
async def prometheus_metrics(metrics: Metrics) -> Response[bytes]:
    """This process's metrics."""
    return Response(metrics.exposition(), media_type=CONTENT_TYPE)
