"""What the OpenAPI page shows for bodies Litestar's pydantic plugin would document wrongly.

Litestar documents a pydantic model by its fields, so a ``RootModel`` (``POST /v1/events``: one event or a batch)
would appear as an object with a ``root`` property no client sends. This plugin, registered before Litestar's
own, documents such a model as the value it wraps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.openapi.spec import Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition
from pydantic import RootModel

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
