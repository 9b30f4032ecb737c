"""What the OpenAPI page shows that Litestar would not derive right by itself: a ``RootModel`` body, and the errors.

Litestar documents a pydantic model by its fields, so a ``RootModel`` (``POST /v1/events``: one event or a batch)
would appear as an object with a ``root`` property no client sends. :class:`RootModelSchemaPlugin`, registered
before Litestar's own, documents such a model as the value it wraps.

Litestar also drops what pydantic's fields say beyond their type: ``Field(pattern=...)`` (every id), a list's
``max_length`` (``agent_ids``' 200: it put it on the wrapper as a string's maxLength), and ``extra="forbid"`` (every
request body refuses unknown keys). :class:`StrictModelSchemaPlugin` copies them from pydantic's own JSON schema, so
the page states what validation checks, and schemathesis' valid examples are valid.

Litestar documents a 400 for a route with a body or parameters and nothing else, while the service answers 401,
403 and 429 on every keyed route, 422 for a field that fails validation, 413 and 415 for a body too large or not
JSON, 404 and 503 where a route says so. Each route declares its own with :func:`error_responses`, so a client (and
schemathesis, ``tests/e2e/test_schema_fuzz.py``) reads every status it can get.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Reference, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.plugins.pydantic import PydanticSchemaPlugin
from litestar.typing import FieldDefinition
from pydantic import BaseModel, RootModel

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator


class RootModelSchemaPlugin(OpenAPISchemaPlugin):
    """Documents a pydantic ``RootModel`` as its ``root``'s type, with the model's docstring as description."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return isinstance(value, type) and issubclass(value, RootModel)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        model: type[RootModel[Any]] = field_definition.annotation
        wrapped = schema_creator.for_field_definition(
            FieldDefinition.from_annotation(model.model_fields["root"].annotation)
        )
        schema = wrapped if isinstance(wrapped, Schema) else Schema(all_of=[wrapped])  # a lone model: a $ref
        schema.title, schema.description = model.__name__, model.__doc__
        return schema


_ONTO = {
    "pattern": "pattern",
    "maxItems": "max_items",
    "minItems": "min_items",
    "maxLength": "max_length",
    "minLength": "min_length",
}
"""pydantic's JSON schema keyword → Litestar's Schema attribute, for the constraints Litestar drops."""


class StrictModelSchemaPlugin(PydanticSchemaPlugin):
    """Litestar's schema of a pydantic model, with pydantic's field constraints and ``additionalProperties``."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return isinstance(value, type) and issubclass(value, BaseModel) and not issubclass(value, RootModel)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        made = super().to_openapi_schema(field_definition, schema_creator)
        model: type[BaseModel] = field_definition.annotation
        schema = schema_creator.schema_registry.from_reference(made).schema if isinstance(made, Reference) else made
        if model.model_config.get("extra") == "forbid":
            schema.additional_properties = False
        own = model.model_json_schema(mode="validation").get("properties", {})
        for name, prop in (schema.properties or {}).items():
            if isinstance(prop, Schema) and name in own:
                _constrain(prop, own[name])
        return made


def _constrain(prop: Schema, own: dict[str, Any]) -> None:
    """Put pydantic's constraints of one field (``own``) on Litestar's schema of it (``prop``): on the schema
    itself, or on the branch of the same type when the field is optional (pydantic's anyOf, Litestar's oneOf)."""
    branches = [b for b in own.get("anyOf", []) if isinstance(b, dict) and b.get("type") != "null"]
    if prop.one_of:
        for attr in _ONTO.values():
            setattr(prop, attr, None)  # Litestar put a list's length on the wrapper
        for branch in prop.one_of:
            twin = [b for b in branches if isinstance(branch, Schema) and b.get("type") == branch.type]
            if twin and isinstance(branch, Schema):
                _copy(branch, twin[0])
    else:
        _copy(prop, own)


def _copy(onto: Schema, own: dict[str, Any]) -> None:
    for key in _ONTO:
        if key in own:
            setattr(onto, _ONTO[key], own[key])


class ErrorItem(msgspec.Struct, frozen=True):
    """One problem of a 422: the field it is in and what is wrong (a catalog's problems name file and action)."""

    message: str
    key: str | None = None
    source: str | None = None
    file: str | None = None
    action: str | None = None
    field: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error answer: its status and what is wrong, naming the field or the limit, never a customer's value."""

    status_code: int
    detail: str
    errors: Annotated[
        list[ErrorItem] | None, msgspec.Meta(description="422: each problem with the field it is in.")
    ] = None


ERRORS: dict[int, str] = {
    400: "The body is not JSON, not UTF-8, nested too deeply, or has a key twice; `detail` says which.",
    401: "No API key, a malformed Authorization header, or a key the keys file does not hold (WWW-Authenticate).",
    403: "The API key's role may not call this route; `detail` names both roles.",
    404: "The customer or decision named is unknown.",
    413: "The body is larger than NBA_MAX_BODY_BYTES; `detail` names the limit.",
    415: "The body was not sent as application/json.",
    422: "A field failed validation; `detail` names it (and `errors` lists each problem with its field).",
    429: "The API key is over its rate limit; Retry-After says when to retry.",
    503: "Redis does not answer: retry after Retry-After (safe to retry).",
}
"""What each error status means, wherever a route answers it (``ErrorBody`` is every one's shape)."""
KEYED = (401, 403, 429)
"""What every route that needs an API key may answer (:class:`service.auth.ApiKeyGate`)."""
WITH_BODY = (400, 413, 415, 422)
"""What every route that reads a JSON body may answer (:mod:`service.request_body`, ``NBA_MAX_BODY_BYTES``)."""


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The route's error answers for its OpenAPI page, each documented with :class:`ErrorBody`.

    Litestar documents a 400 for every route that takes a body or parameters, with its own exception's shape; the
    service answers its validation failures 422 (and 400 only for a body it cannot decode), so routes declare
    theirs here, which replaces Litestar's."""
    return {
        status: ResponseSpec(data_container=ErrorBody, description=ERRORS[status], generate_examples=False)
        for status in statuses
    }
