"""Errors raised by the service.

ServiceError
├── CatalogError       the action catalog (YAML) is invalid; names the file, action and field
├── KeyFileError       the API keys file is unreadable or invalid, or a key command cannot do as asked
├── BadRequest         a request that validated but cannot be served as asked (names the field)
├── MalformedBody      a request body that is not JSON, not UTF-8, too deeply nested or with a key twice (400)
├── UnsupportedMediaType  a request body sent with a Content-Type other than JSON (415)
├── ModelsUnavailable  no loaded model bundle (the documented fallback applies)
├── CustomerNotFound   the online store holds nothing for a customer a read-only route asked about (404)
└── DecisionNotFound   feedback names a decision the service does not remember (unknown or expired, 404)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogProblem:
    """One thing wrong with a catalog: the action it is in (None: outside any action), the field, what."""

    action: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"actions[{self.action}].{self.field}" if self.action is not None else self.field
        return f"{where}: {self.message}"


class ServiceError(Exception):
    """Base class of every error the service raises."""


class CatalogError(ServiceError):
    """The action catalog failed validation: each problem names its action and field, the message the file too."""

    def __init__(self, problems: list[CatalogProblem], file: str = "") -> None:
        self.problems = problems
        self.file = file
        text = "; ".join(str(p) for p in problems)
        super().__init__(f"{file}: {text}" if file else text)


class KeyFileError(ServiceError):
    """The API keys file cannot be read or changed as asked; names the file and the field or key."""


class BadRequest(ServiceError):
    """A request the service cannot serve as asked; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class MalformedBody(ServiceError):
    """A request body the service will not decode (see :mod:`service.request_body`); the message says why."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"body: {problem}")


class UnsupportedMediaType(ServiceError):
    """A request body sent with a ``Content-Type`` other than JSON."""


class ModelsUnavailable(ServiceError):
    """No model bundle is loaded; recommend and assign fall back to rules."""


class CustomerNotFound(ServiceError):
    """The online store holds nothing for this customer; decisions treat that as a cold start, lookups as 404."""

    def __init__(self, customer_id: str, *, field: str = "customer_id") -> None:
        # The message names the field, not its value: a customer id may be an email or a phone number, and
        # error messages end up in logs. ``field`` is what the request named the customer by (an identifier).
        what = "no such customer" if field == "customer_id" else "no customer holds it"
        super().__init__(f"{field}: {what} in the online store")
        self.customer_id = customer_id


class DecisionNotFound(ServiceError):
    """No decision with this id is remembered: never made, or older than the records are kept."""

    def __init__(self, decision_id: str, ttl_days: float) -> None:
        super().__init__(
            f"decision_id: no decision {decision_id!r} is remembered (unknown, or older than the {ttl_days:g} days "
            "decisions are kept)"
        )
        self.decision_id = decision_id
