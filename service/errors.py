"""Errors raised by the service.

ServiceError
├── CatalogError       the action catalog (YAML) is invalid; names the file, action and field
├── KeyFileError       the API keys file is unreadable or invalid, or a key command cannot do as asked
├── BadRequest         a request that validated but cannot be served as asked (names the field)
├── ModelsUnavailable  no loaded model bundle (the documented fallback applies)
└── CustomerNotFound   the online store holds nothing for a customer a read-only route asked about (404)
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class of every error the service raises."""


class CatalogError(ServiceError):
    """The action catalog failed validation."""


class KeyFileError(ServiceError):
    """The API keys file cannot be read or changed as asked; names the file and the field or key."""


class BadRequest(ServiceError):
    """A request the service cannot serve as asked; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ModelsUnavailable(ServiceError):
    """No model bundle is loaded; recommend and assign fall back to rules."""


class CustomerNotFound(ServiceError):
    """The online store holds nothing for this customer; decisions treat that as a cold start, lookups as 404."""

    def __init__(self, customer_id: str) -> None:
        # The message names the field, not its value: a customer id may be an email or a phone number, and
        # error messages end up in logs.
        super().__init__("customer_id: no such customer in the online store")
        self.customer_id = customer_id
