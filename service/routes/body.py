"""Response bodies of the decision routes, serialized once by pydantic's own (Rust) serializer.

A route that returns a pydantic model has Litestar turn it into Python dicts (``model_dump``) and encode those with
msgspec; handing Litestar the bytes skips the dicts. The OpenAPI schema is unchanged: the routes still declare
``Response[TheModel]``.
"""

from __future__ import annotations

from pydantic import BaseModel


def json_body(model: BaseModel) -> bytes:
    """``model`` as JSON bytes, as Litestar would have encoded it."""
    return model.__pydantic_serializer__.to_json(model)
