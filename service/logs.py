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
from datetime import UTC, datetime
from typing import Any, Literal

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
    }
