"""One access record per request, through HTTP: route template, status, key name and the decision's id."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from litestar import Litestar, Request, Response, get
from litestar.logging.config import LoggingConfig
from litestar.testing import TestClient

from features import OnlineStoreUnavailable
from service import create_app
from service.errors import CustomerNotFound, MalformedBody
from service.keys import Role
from service.logs import (
    ACCESS_LOGGER,
    DECISION_HEADER,
    JsonFormatter,
    TextFormatter,
    UncaughtLogger,
    litestar_logging,
    log_config,
)
from tests.conftest import Served


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access() -> Iterator[_Keep]:
    logger = logging.getLogger(ACCESS_LOGGER)
    keep, level = _Keep(), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        yield keep
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)


def test_each_request_is_one_record_with_its_decision_id_and_no_path(api: Served, access: _Keep) -> None:
    with api.client(Role.DESKTOP) as client:
        answer = client.post("/v1/recommend", json={"customer_id": "C000042", "channel": "voice"})
        client.get("/v1/customers/C000042/features", headers={"Authorization": "Bearer nba_wrong"})
    decision = answer.json()["decision_id"]
    assert answer.headers[DECISION_HEADER] == decision
    recommend, refused = access.records[-2:]
    fields = ("method", "route", "status", "key", "decision_id")
    assert {f: recommend.__dict__[f] for f in fields} == {
        "method": "POST",
        "route": "/v1/recommend",
        "status": 200,
        "key": "test-desktop",
        "decision_id": decision,
    }
    assert recommend.duration_ms > 0  # type: ignore[attr-defined]
    assert (refused.route, refused.status, refused.key) == (  # type: ignore[attr-defined]
        "/v1/customers/{customer_id}/features",
        401,
        None,
    )
    line = json.loads(JsonFormatter().format(recommend))
    assert line["logger"] == ACCESS_LOGGER
    assert line["message"] == "POST /v1/recommend 200"
    assert (line["decision_id"], line["key"], line["level"]) == (decision, "test-desktop", "info")
    text = TextFormatter(fmt="%(levelprefix)s %(message)s", use_colors=False).format(recommend)
    assert text.endswith(f"POST /v1/recommend 200 key=test-desktop decision_id={decision}")
    assert "C000042" not in JsonFormatter().format(refused)


def test_the_access_log_follows_the_services_log_level_however_it_is_served(api: Served) -> None:
    """The session's API is served by a bare uvicorn.Config (no log_config) at log level warning: no access record,
    as under nba run (a bench serving the app this way once logged every request at INFO, a fifth of its time)."""
    keep, logger = _Keep(), logging.getLogger(ACCESS_LOGGER)
    assert logger.level == logging.NOTSET  # it takes the service's level from the "nba" logger
    logger.addHandler(keep)
    try:
        with api.client(Role.DESKTOP) as client:
            assert client.get("/health").status_code == 200
    finally:
        logger.removeHandler(keep)
    assert api.settings.service.log_level == "warning"
    assert logging.getLogger("nba").level == logging.WARNING
    assert keep.records == []


def test_a_500_is_logged_with_its_traceback_and_the_routes_template_not_its_path(api: Served) -> None:
    """Litestar logged an unhandled exception only in debug mode (the deep-JSON 500s left no trace), and names the
    path, which may hold a customer id. The service's app logs every 500, by the route's template, and nothing of
    the exceptions its handlers answer (a 422's traceback holds the input it refused)."""
    assert api.settings.service.log_level == "warning"  # as the benchmarks run: errors still logged

    @get("/v1/customers/{customer_id:str}/boom")
    async def boom(customer_id: str, n: int) -> None:
        raise RuntimeError("a bug") if n else CustomerNotFound(customer_id)

    def not_found(_: Request, exc: CustomerNotFound) -> Response[str]:
        return Response(str(exc), status_code=404)

    app = Litestar(
        [boom], exception_handlers={CustomerNotFound: not_found}, logging_config=litestar_logging([CustomerNotFound])
    )
    keep, root = _Keep(), logging.getLogger()
    root.addHandler(keep)
    try:
        with TestClient(app) as client:
            assert client.get("/v1/customers/C000042/boom?n=x").status_code == 400  # a validation failure
            assert client.get("/v1/customers/C000042/boom?n=0").status_code == 404  # a handled error
            assert client.get("/v1/customers/C000042/boom?n=1").status_code == 500
    finally:
        root.removeHandler(keep)
    (record,) = [r for r in keep.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == "uncaught exception answering GET /v1/customers/{customer_id}/boom"
    assert record.exc_info is not None
    assert "RuntimeError: a bug" in JsonFormatter().format(record)
    assert "C000042" not in JsonFormatter().format(record)
    served = create_app(api.settings).app.app.litestar
    assert isinstance(served.logging_config, LoggingConfig)
    assert (served.logging_config.log_exceptions, served.logging_config.configure_root_logger) == ("always", False)
    log = served.logging_config.exception_logging_handler
    assert isinstance(log, UncaughtLogger)
    assert {CustomerNotFound, MalformedBody, OnlineStoreUnavailable} <= set(log.handled)  # the app's handlers'


def test_the_servers_log_config_puts_every_logger_in_its_format_at_its_level() -> None:
    """Litestar wrote the service's own modules' records (a catalog reload) as text at INFO, whatever
    NBA_LOG_LEVEL and NBA_LOG_FORMAT said; the root logger is now the server's."""
    config = log_config("json", "warning")
    assert config["root"] == {"handlers": ["default"], "level": "WARNING"}
    assert config["formatters"]["default"] == {"()": "service.logs.JsonFormatter"}
