"""Response bodies of the decision routes, serialized once by the model's own serializer.

A route that returns a pydantic model has Litestar turn it into Python dicts (``model_dump``) and encode those with
msgspec; handing Litestar the bytes skips the dicts. A msgspec Struct (the assign answer) is encoded directly. The
OpenAPI schema is unchanged: the routes still declare ``Response[TheModel]``.
"""

from __future__ import annotations

import msgspec
from pydantic import BaseModel

_ENCODER = msgspec.json.Encoder()


def json_body(answer: BaseModel | msgspec.Struct) -> bytes:
    """``answer`` as JSON bytes, as Litestar would have encoded it."""
    if isinstance(answer, msgspec.Struct):
        return _ENCODER.encode(answer)
    return answer.__pydantic_serializer__.to_json(answer)
