"""``create_app(settings)``: the Litestar application behind the fast feature read, its clients opened and closed in
the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.exceptions import ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from features import (
    EventPublisher,
    OfflineStore,
    OfflineStoreError,
    OnlineStore,
    OnlineStoreUnavailable,
    Registry,
    connect,
)
from service import redaction
from service.auth import ApiKeyGate
from service.catalog_source import CatalogSource
from service.customers import CustomerService
from service.decision_log import DecisionLog
from service.decision_records import DecisionRecords
from service.decisions import DecisionService
from service.errors import (
    BadRequest,
    CatalogError,
    CustomerNotFound,
    DecisionNotFound,
    MalformedBody,
    UnsupportedMediaType,
)
from service.fast_decisions import FastDecisions
from service.fast_read import FastFeatureRead
from service.feedback import FeedbackService
from service.keys import KeyFile, KeyRing
from service.logs import litestar_logging
from service.metrics import Metrics, RequestTimer
from service.model_cache import LastKnownGood
from service.model_holder import ModelHolder, watch
from service.openapi import RootModelSchemaPlugin, StrictModelSchemaPlugin
from service.request_body import MEDIA_TYPE, StrictJsonRequest
from service.routes import (
    assign,
    customer_features,
    customer_lookup,
    erase_customer,
    feedback,
    health,
    ingest_events,
    prometheus_metrics,
    ready,
    recommend,
    reload_catalog,
)
from service.schemas import events_request
from service.settings import Settings
from training import ModelRegistry

RETRY_AFTER_S = 5
"""What a 503 tells the client to wait before retrying: a Redis failover usually takes a few seconds."""


_NO_BODY = f"body: missing: send a JSON object (Content-Type: {MEDIA_TYPE})"


def _problem(p: dict[str, object]) -> str:
    """One validation problem as ``field: message``; a route's whole body missing says so."""
    if p.get("source") == "body" and p.get("key") == "data" and p.get("message") == "'data'":
        return _NO_BODY
    return f"{p.get('key') or 'body'}: {p.get('message')}"


def _validation_error(_: Request, exc: ValidationException) -> Response[dict[str, object]]:
    """Litestar answers 400 for an invalid body; we answer 422 and put the field names in the message."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts = [_problem(p) for p in problems if isinstance(p, dict)]
    detail = "; ".join(parts) or str(exc.detail)
    return Response(
        {"status_code": 422, "detail": detail, "errors": problems}, status_code=HTTP_422_UNPROCESSABLE_ENTITY
    )


def _bad_request(_: Request, exc: BadRequest) -> Response[dict[str, object]]:
    return Response(
        {"status_code": 422, "detail": str(exc), "errors": [{"key": exc.field, "message": str(exc)}]},
        status_code=HTTP_422_UNPROCESSABLE_ENTITY,
    )


def _malformed(_: Request, exc: MalformedBody) -> Response[dict[str, object]]:
    return Response({"status_code": 400, "detail": str(exc)}, status_code=HTTP_400_BAD_REQUEST)


def _unsupported_media_type(_: Request, exc: UnsupportedMediaType) -> Response[dict[str, object]]:
    return Response({"status_code": 415, "detail": str(exc)}, status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE)


def _not_found(_: Request, exc: CustomerNotFound | DecisionNotFound) -> Response[dict[str, object]]:
    return Response({"status_code": 404, "detail": str(exc)}, status_code=HTTP_404_NOT_FOUND)


def _catalog_refused(_: Request, exc: CatalogError) -> Response[dict[str, object]]:
    """A catalog reload that failed validation: each problem's file, action and field; the running one stayed."""
    errors = [{"file": exc.file, "action": p.action, "field": p.field, "message": p.message} for p in exc.problems]
    detail = f"catalog not reloaded, the running one stays: {exc}"
    return Response({"status_code": 422, "detail": detail, "errors": errors}, status_code=HTTP_422_UNPROCESSABLE_ENTITY)


def _store_unavailable(_: Request, exc: OnlineStoreUnavailable | OfflineStoreError) -> Response[dict[str, object]]:
    """Only routes that must not degrade (customer lookups, erasure) let this escape; decisions fall back.

    An erasure whose ledger cannot be written (disk full, read-only volume) is unavailable in the same way.
    """
    return Response(
        {"status_code": 503, "detail": str(exc)},
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _too_large(limit: int) -> Callable[[Request, RequestEntityTooLarge], Response[dict[str, object]]]:
    def handler(_: Request, exc: RequestEntityTooLarge) -> Response[dict[str, object]]:
        detail = f"request body larger than the limit of {limit:,} bytes (NBA_MAX_BODY_BYTES)"
        return Response({"status_code": 413, "detail": detail}, status_code=HTTP_413_REQUEST_ENTITY_TOO_LARGE)

    return handler


def create_app(
    settings: Settings, registry: Registry | None = None, *, clock: Callable[[], float] = time.time
) -> RequestTimer[ApiKeyGate[FastDecisions]]:
    """The API for ``settings``; Redis must be reachable at ``settings.redis.url`` (or it serves degraded).

    ``registry`` is the packaged feature contract unless given (the benchmark serves a contract with an extra
    view shaped like its peer's). ``clock`` is what a customer-features read takes as now (a test fixes it to
    compare two answers byte for byte). The Litestar app is the answer's ``app.app.litestar``; in front of it
    :class:`~service.fast_read.FastFeatureRead` answers the plain feature reads and
    :class:`~service.fast_decisions.FastDecisions` the valid recommends and assigns (see why there), in front of them
    :class:`~service.auth.ApiKeyGate` lets through only requests with a key of the route's role, and in front of
    everything :class:`~service.metrics.RequestTimer` times every request (refusals too) for ``/metrics``.
    """
    if settings.redis.url is None:
        raise ValueError("settings.redis.url is unset: start the embedded server first (nba run does)")
    registry = registry if registry is not None else Registry.load()
    client = connect(settings.redis.url, timeout_s=settings.redis.timeout_ms / 1000, cluster=settings.redis.cluster)
    holder = ModelHolder(
        ModelRegistry(settings.mlflow, settings.offline.data_dir),
        registry.version,
        cache=LastKnownGood(settings.offline.data_dir / "last-known-good"),
    )
    metrics = Metrics(lambda: holder.versions, lambda: holder.status)
    keys = KeyRing(KeyFile(settings.auth.resolved_keys_file(settings.offline.data_dir)))
    catalogs = CatalogSource(registry, settings.service.catalog_path, metrics)
    store = OnlineStore(client, registry, namespace=settings.redis.namespace)
    records = DecisionRecords(store, ttl_days=settings.service.decision_ttl_days)
    decisions = DecisionService(
        store=store,
        publisher=EventPublisher(
            client, registry, namespace=settings.redis.namespace, max_len=settings.events.stream_max_len
        ),
        registry=registry,
        catalogs=catalogs,
        holder=holder,
        metrics=metrics,
        top_k=settings.service.top_k,
        records=records,
        log=DecisionLog(
            settings.redis.namespace,
            max_len=settings.service.decision_log_max_len,
            retention_days=settings.service.decision_log_retention_days,
        ),
        exploration={e: settings.service.exploration(e) for e in ("recommend", "assign")},
    )
    feedbacks = FeedbackService(records=records, decisions=decisions, registry=registry, clock=time.time)
    offline = OfflineStore(settings.offline.world_dir, registry)
    customers = CustomerService(store=decisions.store, registry=registry, erasures=offline.erasures, clock=clock)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        redaction.install()
        # The service's own loggers (the access log among them) follow its log level however it is served: nba run
        # configures them through uvicorn, but a bench or an ASGI server of the user's own may not.
        level = logging.getLevelName(settings.service.log_level.upper())
        if isinstance(level, int):
            logging.getLogger("nba").setLevel(level)
        holder.load()
        # What start-up made (MLflow, LightGBM, scikit-learn, the models: ~370,000 objects) lives as long as the
        # process. Left to the collector, each full collection walks all of it, 300 ms on a busy 2-core machine,
        # during which every request in flight waits; frozen, a collection walks only what came after.
        gc.freeze()
        # Two watchers off the request path: the catalog file and the models' aliases.
        catalog_poll_s, model_poll_s = settings.service.catalog_poll_s, settings.service.model_poll_s
        watchers = []
        if catalog_poll_s > 0:
            watchers.append(asyncio.create_task(catalogs.watch(catalog_poll_s)))
        if model_poll_s > 0:
            watchers.append(asyncio.create_task(watch(holder, model_poll_s)))
        try:
            yield
        finally:
            for watcher in watchers:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await decisions.drain()
            await decisions.store.aclose()
            await client.aclose()

    handlers: ExceptionHandlersMap = {
        ValidationException: _validation_error,
        BadRequest: _bad_request,
        MalformedBody: _malformed,
        UnsupportedMediaType: _unsupported_media_type,
        CustomerNotFound: _not_found,
        DecisionNotFound: _not_found,
        CatalogError: _catalog_refused,
        OnlineStoreUnavailable: _store_unavailable,
        OfflineStoreError: _store_unavailable,
        RequestEntityTooLarge: _too_large(settings.service.max_body_bytes),
    }
    app = Litestar(
        route_handlers=[
            health,
            ready,
            prometheus_metrics,
            recommend,
            assign,
            ingest_events,
            customer_features,
            customer_lookup,
            erase_customer,
            feedback,
            reload_catalog,
        ],
        dependencies={
            "decisions": Provide(lambda: decisions, sync_to_thread=False),
            "feedback": Provide(lambda: feedbacks, sync_to_thread=False),
            "catalogs": Provide(lambda: catalogs, sync_to_thread=False),
            "customers": Provide(lambda: customers, sync_to_thread=False),
            "metrics": Provide(lambda: metrics, sync_to_thread=False),
        },
        exception_handlers=handlers,
        # POST /v1/events validates with this contract's event types (the name its handler's annotation uses).
        signature_namespace=events_request(registry),
        request_max_body_size=settings.service.max_body_bytes,
        request_class=StrictJsonRequest,
        logging_config=litestar_logging(h for h in handlers if isinstance(h, type)),
        lifespan=[lifespan],
        plugins=[RootModelSchemaPlugin(), StrictModelSchemaPlugin()],
        openapi_config=OpenAPIConfig(
            title="nba-copilot",
            version="0.1.0",
            description="Next-best actions for the agent desktop and predictive routing for the routing engine. "
            "Every route but /health, /ready and this schema needs an API key of its role (nba keys create), sent "
            "as `Authorization: Bearer <key>` or `X-API-Key: <key>`: desktop for recommend and the customer "
            "reads, router for assign, events for /v1/events, metrics for /metrics, admin for all of them and "
            "the erasure.",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="An nba API key."),
                    "apiKey": SecurityScheme(
                        type="apiKey", name="X-API-Key", security_scheme_in="header", description="An nba API key."
                    ),
                }
            ),
            security=[{"bearer": []}, {"apiKey": []}],
        ),
    )
    fast = FastDecisions(FastFeatureRead(app, customers), decisions, max_body_bytes=settings.service.max_body_bytes)
    gate = ApiKeyGate(fast, app, keys, rate_limit=settings.auth.rate_limit)
    return RequestTimer(gate, metrics)
