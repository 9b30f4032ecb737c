"""Event schemas, generated from the contract's event catalogue, so producers are validated against it.

Each event type in ``registry.yaml`` becomes a pydantic model (the envelope ``event_id``, ``type``,
``occurred_at`` and the entity's id, plus its declared fields with their types and bounds). A POSTed body is
one event on its own or an ``EventBatch`` of any mix of them, told apart by ``type``. A wrong field fails
validation with its path (``sentiment.score`` for one event, ``events.3.sentiment.score`` in a batch) and
nothing of the body is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    RootModel,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from features.event_state import Event
from features.identity import LINKED, UNLINKED, IdentifierError, normalize
from features.registry import EventField, Registry

MAX_BATCH = 1_000
CLOCK_SKEW = timedelta(minutes=5)
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(pattern=_ID, description="Unique per event: a retried event is counted once.")
    occurred_at: AwareDatetime | None = Field(
        default=None,
        description="When it happened, with a time zone; not in the future. Omitted: when the service received "
        "it, which is right for a producer that sends as things happen and wrong for a backfill.",
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError("is in the future")
        return value


class _IdentityEnvelope(_Envelope):
    """An identity event: its identifier is normalised (E.164, lower-cased email...) or refused, naming it."""

    @model_validator(mode="wrap")
    @classmethod
    def _normalise(cls, data: Any, handler: ModelWrapValidatorHandler[_IdentityEnvelope]) -> _IdentityEnvelope:
        event = handler(data)
        kind, raw = getattr(event, "identifier_kind"), getattr(event, "identifier")  # noqa: B009 - generated fields
        try:
            normalised = normalize(kind, raw).value
        except IdentifierError as exc:
            raise PydanticCustomError("identifier", "identifier: {problem}", {"problem": str(exc)}) from exc
        return event.model_copy(update={"identifier": normalised})


def _annotation(spec: EventField) -> Any:
    if spec.dtype == "category":
        base: Any = Literal[tuple(spec.categories or ())]
    else:
        base = {"float": float, "int": int, "bool": bool, "str": str}[spec.dtype]
    constraints: dict[str, Any] = {}
    if spec.min is not None:
        constraints["ge"] = spec.min
    if spec.max is not None:
        constraints["le"] = spec.max
    if spec.dtype == "str":
        constraints["max_length"] = 128
    annotation = Annotated[base, Field(**constraints)] if constraints else base
    return (annotation, ...) if spec.required else (annotation | None, None)


def event_models(registry: Registry) -> dict[str, type[BaseModel]]:
    """One model per event type of the contract."""
    models: dict[str, type[BaseModel]] = {}
    for name, event in registry.events.items():
        key = registry.entity(event.entity).join_key
        fields: dict[str, Any] = {
            "type": (Literal[name], Field(description=event.description)),
            key: (str, Field(pattern=_ID)),
        }
        fields.update({f: _annotation(spec) for f, spec in event.fields.items()})
        base = _IdentityEnvelope if name in (LINKED, UNLINKED) else _Envelope
        models[name] = create_model(f"{name.title().replace('_', '')}Event", __base__=base, **fields)
    return models


def _any_event(registry: Registry) -> Any:
    """One event of any declared type, told apart by ``type`` (so an error names the type's own field)."""
    union: Any = Union[tuple(event_models(registry).values())]  # noqa: UP007 - built at run time
    return Annotated[union, Field(discriminator="type")]


def batch_model(registry: Registry) -> type[BaseModel]:
    """``{"events": [...]}``: 1 to :data:`MAX_BATCH` events of any declared type."""
    item: Any = _any_event(registry)
    return create_model(
        "EventBatch",
        __config__=ConfigDict(extra="forbid"),
        events=(list[item], Field(min_length=1, max_length=MAX_BATCH)),
    )


def event_adapter(registry: Registry) -> TypeAdapter[BaseModel]:
    """Validates one event on its own (a stream entry, a POSTed event), with the same models as a POSTed batch."""
    return TypeAdapter(_any_event(registry))


class EventsBody(RootModel[Any]):
    """A POSTed body: one event, or ``{"events": [...]}``. Either way :attr:`events` is the list to apply.

    :func:`body_model` makes the contract's own: its ``root`` is the batch or one event, so the schema shows both.
    """

    @property
    def events(self) -> list[BaseModel]:
        """The events of the body, in the order sent: one, or the batch's."""
        if isinstance(self.root, _Envelope):
            return [self.root]
        return list(self.root.events)


def body_model(registry: Registry) -> type[EventsBody]:
    """One event of any declared type, or a batch of them (:func:`batch_model`).

    A JSON object with an ``events`` key is a batch, any other object one event. Each shape is validated on its
    own, so an error names the field as that shape has it (``sentiment.score``, ``events.3.sentiment.score``),
    not a mix of both shapes' complaints as a plain union would.
    """
    batch = batch_model(registry)
    item: Any = _any_event(registry)
    shapes: Any = Union[batch, item]  # noqa: UP007 - built at run time
    one = event_adapter(registry)

    def one_or_many(cls: type[EventsBody], data: Any, _: ModelWrapValidatorHandler[EventsBody]) -> EventsBody:
        if not isinstance(data, dict):
            raise PydanticCustomError("events_body", 'a body is one event or {"events": [...]}, each a JSON object')
        return cls.model_construct(batch.model_validate(data) if "events" in data else one.validate_python(data))

    model: type[EventsBody] = create_model(
        "EventsRequest",
        __base__=EventsBody,
        __doc__='One event, or a batch `{"events": [...]}` of 1 to 1,000; the answer has the same shape either way.',
        # pydantic's stub types __validators__ as bare callables; the decorated validator is what it accepts
        __validators__={"one_or_many": model_validator(mode="wrap")(one_or_many)},  # type: ignore[dict-item]
        root=(shapes, ...),
    )
    return model


def validation_message(exc: ValidationError) -> str:
    """Every problem of ``exc`` as ``path.to.field: message``, joined: the field comes first, as in a 422."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in exc.errors())


def to_event(model: BaseModel, registry: Registry, *, received_at: float | None = None) -> tuple[str, Event]:
    """The entity kind and the store's :class:`Event` for one validated event model.

    An event without ``occurred_at`` happened when it was received: ``received_at`` (epoch seconds; a stream
    entry's id carries when it was added), else now.
    """
    data = model.model_dump()
    event_type = data.pop("type")
    entity = registry.events[event_type].entity
    entity_id = data.pop(registry.entity(entity).join_key)
    event_id = data.pop("event_id")
    stated = data.pop("occurred_at")
    if stated is not None:
        occurred_at = stated.timestamp()
    else:
        occurred_at = received_at if received_at is not None else datetime.now(UTC).timestamp()
    return entity, Event(event_id=event_id, entity_id=entity_id, type=event_type, occurred_at=occurred_at, fields=data)


def to_payload(entity: str, event: Event, registry: Registry) -> dict[str, object]:
    """The contract's JSON form of a stored event, ``occurred_at`` stated: what a producer would have sent.

    The inverse of :func:`to_event`, so an event the service applied can be handed on (to the stream, and so
    to the offline store) with the very time the online state placed it at.
    """
    return {
        "type": event.type,
        "event_id": event.event_id,
        registry.entity(entity).join_key: event.entity_id,
        "occurred_at": datetime.fromtimestamp(event.occurred_at, UTC).isoformat(),
        **{name: value for name, value in event.fields.items() if value is not None},
    }
