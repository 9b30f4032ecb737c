"""Keep customer ids out of the server's access log.

The contract flags the customer id as PII (an id may be an email or a phone number), and two routes carry it
in their path (``/v1/customers/{customer_id}...``), which uvicorn's access log writes on every request. The
other routes take it in the body, which nothing logs, and error messages name fields, never values. So one
filter on the access logger, rewriting that path segment to ``{customer_id}``, is all it takes; the route
template is as useful to whoever reads the log as the id was.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
_CUSTOMER_PATH = re.compile(r"(/v1/customers/)[^/?#\s]+")


def redact(text: str) -> str:
    """``text`` with every customer id in a ``/v1/customers/...`` path replaced by ``{customer_id}``."""
    return _CUSTOMER_PATH.sub(r"\1{customer_id}", text)


class RedactCustomerIds(logging.Filter):
    """Rewrites a record's message and string arguments before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; never drops the record."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install(logger_name: str = ACCESS_LOGGER) -> None:
    """Attach the filter to ``logger_name`` once.

    Called when the app starts, after the server configured its logging (uvicorn's set-up would otherwise be
    free to replace the logger's configuration after us).
    """
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactCustomerIds) for f in logger.filters):
        logger.addFilter(RedactCustomerIds())
