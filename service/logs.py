"""What the service logs, and how: one line per request, and what happened to its models and keys.

- ``nba.access``: one record per request, written by :class:`~service.metrics.RequestTimer` (the outermost layer,
  so refusals and the fast read are logged too) in place of uvicorn's access log: method, route *template* (never
  the path, which may hold a customer id), status, duration, the API key's name (never the key) and, for a decision,
  its ``decision_id`` (from the ``X-Decision-Id`` header the decision routes answer with), which ties the line to
  the decision log, to feedback and to what the agent saw.
- ``nba.models`` and ``nba.auth``: a promotion put in force or refused, MLflow unreachable, the last-known-good
  copies served, the keys file re-read or invalid.

``NBA_LOG_FORMAT=json`` (the default) writes every record, uvicorn's included, as one JSON object per line
(``ts``, ``level``, ``logger``, ``message`` and the fields above), for a log pipeline to index by
``decision_id``; ``text`` writes uvicorn's usual lines with the fields appended. No record carries PII or a key:
``tests/e2e/test_privacy.py`` reads them all.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from litestar.exceptions import HTTPException
from litestar.logging.config import LoggingConfig
from litestar.types import Scope
from litestar.types.protocols import Logger as LitestarLogger
from uvicorn.logging import DefaultFormatter

LogFormat = Literal["json", "text"]
ACCESS_LOGGER = "nba.access"
FIELDS = ("method", "route", "status", "duration_ms", "key", "decision_id")
"""What an access record carries besides its message, in this order."""
DECISION_HEADER = "X-Decision-Id"
"""The response header recommend and assign answer with: their ``decision_id``, for the access log (and clients)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and the access fields it has."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                out[field] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(DefaultFormatter):
    """uvicorn's lines (``INFO:     message``), with the key and the decision of an access record appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [f"{f}={record.__dict__[f]}" for f in ("key", "decision_id") if record.__dict__.get(f) is not None]
        return f"{line} {' '.join(extra)}" if extra else line


class UncaughtLogger:
    """Litestar's record of an exception no handler answers (a 500), its traceback attached, naming the route by its
    template, never the path, which may hold a customer id (Litestar's own names the path).

    Litestar calls it for every exception, those its handlers answer too (a 422's carries the rejected input, a
    customer id among it): those are not logged, as they never were."""

    def __init__(self, handled: tuple[type[BaseException], ...]) -> None:
        self.handled = handled

    def __call__(self, logger: LitestarLogger, scope: Scope, _: list[str]) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, self.handled) or (isinstance(exc, HTTPException) and exc.status_code < 500):
            return
        route = scope.get("path_template") or "unmatched"
        logger.exception("uncaught exception answering %s %s", scope.get("method", scope["type"]), route)


def litestar_logging(handled: Iterable[type[BaseException]]) -> LoggingConfig:
    """How the Litestar app logs: through the root logger, which the server's config owns (:func:`log_config` under
    nba run), and every exception none of the ``handled`` kinds answers, by :class:`UncaughtLogger`.

    Litestar's default configured the root logger itself (its own text lines, at INFO, whatever NBA_LOG_LEVEL and
    NBA_LOG_FORMAT said) and logged an unhandled exception only in debug mode, so a 500 left no trace.
    """
    return LoggingConfig(
        configure_root_logger=False,
        log_exceptions="always",
        exception_logging_handler=UncaughtLogger(tuple(handled)),
        loggers={"litestar": {"level": "INFO", "handlers": [], "propagate": True}},
    )


def log_config(fmt: LogFormat, level: str) -> dict[str, Any]:
    """uvicorn's ``log_config`` for ``fmt``: its own loggers and ours (``nba.*``) on stderr, at ``level``."""
    formatter: dict[str, Any] = (
        {"()": "service.logs.JsonFormatter"}
        if fmt == "json"
        else {"()": "service.logs.TextFormatter", "fmt": "%(levelprefix)s %(message)s", "use_colors": None}
    )
    handler = {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter, "access": formatter},
        "handlers": {"default": handler, "access": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "nba": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
        # Every other logger (the service's modules, Litestar's, the libraries') at the level asked, in the same
        # format (Litestar leaves the root logger alone: litestar_logging).
        "root": {"handlers": ["default"], "level": level.upper()},
    }
