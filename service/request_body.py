"""What a request body must be before any route reads it: JSON, sent as such, in UTF-8, each key once, not nested
without end.

Why the service is stricter than the JSON decoders it uses: Litestar decodes bodies with msgspec and accepts them
whatever their ``Content-Type`` (a ``text/plain`` body was decided on); msgspec raises ``RecursionError`` on a
body nested a thousand levels deep, which Litestar answered with a 500; and msgspec, pydantic and the stdlib all
keep the last of two equal keys, so ``{"customer_id": "A", "customer_id": "B"}`` was a decision for B, while a
proxy or a log pipeline in front of the service may read A (the JSON interoperability trap, RFC 8259 section 4:
names "SHOULD be unique"). Here each is a 4xx that names the problem:

- a body whose ``Content-Type`` is not ``application/json`` (or ``application/*+json``): 415;
- bytes that are not UTF-8 (RFC 8259 section 8.1), not JSON, nested too deeply to decode, or an object with a key
  twice: 400, the detail starting with ``body:``.

:class:`StrictJsonRequest` applies it to every route Litestar answers, and the fast paths in front of Litestar
(:mod:`service.fast_decisions`) answer only bodies :func:`decode` takes, leaving the rest to Litestar, so the rule
and its messages live here once.

What it costs, the stdlib's C decoder with a hook per object (in process, best of 7, two rounds, load average 7
from other jobs, 2026-12-05): 2.5-3.1 us for a recommend body (pydantic's validation of it: 2.9-3.8 us), 7 us for an
assign with 100 agents, on the fast path where it runs beside the validation; on Litestar's routes, in place of
msgspec, 1.4 ms for a batch of 1,000 events against msgspec's 0.27 ms, about 1 us more per event.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request

from service.errors import MalformedBody, UnsupportedMediaType

MEDIA_TYPE = "application/json"
_KEY_SHOWN = 64
"""At most this many characters of a duplicate key are quoted back."""


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's pairs as a dict, refusing a key that comes twice."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_once)


def is_json(media_type: str) -> bool:
    """Whether ``media_type`` (without its parameters) names JSON."""
    media_type = media_type.strip().lower()
    return media_type == MEDIA_TYPE or (media_type.startswith("application/") and media_type.endswith("+json"))


def decode(body: bytes) -> Any:
    """``body`` as JSON, or :class:`~service.errors.MalformedBody` naming what is wrong with it (see the module)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"not UTF-8: byte {exc.start} is 0x{body[exc.start]:02x} (JSON must be UTF-8)") from exc
    if text.startswith("\ufeff"):
        raise MalformedBody("starts with a byte order mark: send UTF-8 without one (RFC 8259 section 8.1)")
    try:
        return _DECODER.decode(text)
    except _DuplicateKey as exc:
        key = exc.key if len(exc.key) <= _KEY_SHOWN else exc.key[:_KEY_SHOWN] + "..."
        raise MalformedBody(f"the key {key!r} appears twice in one object: send each key once") from exc
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise MalformedBody("JSON nested too deeply to decode") from exc


class StrictJsonRequest(Request[Any, Any, Any]):
    """Litestar's request, whose JSON body must pass :func:`decode` and be sent as JSON (see the module)."""

    async def json(self) -> Any:
        """The body as JSON; raises :class:`~service.errors.UnsupportedMediaType` or :class:`MalformedBody`."""
        media_type, _ = self.content_type
        if not is_json(media_type):
            sent = f"Content-Type {media_type!r}" if media_type else "no Content-Type"
            raise UnsupportedMediaType(f"the body is JSON and must be sent as {MEDIA_TYPE}, not with {sent}")
        return decode(await self.body())
