"""The feature contract: entities, feature views and their features, declared once in YAML.

Everything that touches a feature (the training frame, the Redis reader, materialization, the reasons
shown to agents) derives from a :class:`Registry`, so a feature's name, type, default and meaning live in
one place. The registry is resolved once at load: per-entity feature order, category codes and the
contract's version hash are computed here and never again on the request path.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from features.errors import RegistryError, UnknownFeatureError

DType = Literal["float", "int", "bool", "category"]
DAY_SECONDS = 86_400
"""Windows, TTLs and ``days_since`` all count whole days of this many seconds (UTC, no leap seconds)."""
ENTITY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"
"""What an entity id may look like wherever one comes in (the API, the CLI): an email or a phone number fits."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entity(_Strict):
    """A thing features describe (a customer, an agent), keyed by ``join_key``."""

    join_key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    pii: bool = False
    """True when the id itself identifies a person (an id may be an email or a phone number): never logged."""


AggregationKind = Literal["count", "sum", "mean", "last", "days_since"]


class Aggregation(_Strict):
    """How an event-sourced feature is computed from its entity's events, identically offline and online.

    A window of N days holds the events of the N UTC days ending on the day of the read (or of the label),
    that happened no later than that moment; ``where`` narrows any aggregation to the events whose fields hold
    the given values (``last`` of ``consent_changed`` where ``purpose`` is ``marketing``: the newest marketing
    consent, whatever other purposes changed since). ``last`` is the newest event's field (ties broken by event
    id), nothing when that event lacks the field; ``days_since`` counts whole days since the newest event. Both
    return nothing once the newest event is older than the view's TTL.
    """

    kind: AggregationKind
    event: str
    field: str | None = None
    where: dict[str, bool | str] = Field(default_factory=dict)
    window_days: int | None = Field(default=None, ge=1, le=366)

    @model_validator(mode="after")
    def _shape(self) -> Aggregation:
        windowed = self.kind in ("count", "sum", "mean")
        if windowed and self.window_days is None:
            raise ValueError(f"aggregation {self.kind!r} needs window_days")
        if not windowed and self.window_days is not None:
            raise ValueError(f"aggregation {self.kind!r} takes no window_days")
        needs_field = self.kind in ("sum", "mean", "last")
        if needs_field and self.field is None:
            raise ValueError(f"aggregation {self.kind!r} needs a field")
        if not needs_field and self.field is not None:
            raise ValueError(f"aggregation {self.kind!r} takes no field")
        return self

    @property
    def series(self) -> str:
        """The running total this aggregation reads: features that count the same thing share one."""
        where = ",".join(f"{k}={v}" for k, v in sorted(self.where.items()))
        measure = "n" if self.kind == "count" else f"s.{self.field}"
        return f"{measure}|{self.event}|{where}"

    @property
    def count_series(self) -> str:
        """For ``mean``: the series counting the events that carry the field."""
        where = ",".join(f"{k}={v}" for k, v in sorted(self.where.items()))
        return f"n.{self.field}|{self.event}|{where}"


DerivationKind = Literal["days_until"]


class Derivation(_Strict):
    """How a feature is computed at read time from a stored snapshot feature of the same entity.

    ``days_until`` is the stored epoch day number (a date, as whole UTC days since 1970-01-01) less the day of
    the read online, or of the label offline: a snapshot then says when something happens and the count of days
    to it never goes stale as the snapshot ages. The derived value is missing when its source is (missing, or
    its view past its TTL) and is never stored.
    """

    kind: DerivationKind
    feature: str

    def compute(self, source: np.ndarray, day: np.ndarray | float) -> np.ndarray:
        """The derived values from the source's encoded values at the UTC day number(s) ``day`` (NaN stays NaN).

        The offline join computes the same difference in SQL (``OfflineStore.point_in_time``).
        """
        out: np.ndarray = source - day
        return out


EventDType = Literal["float", "int", "bool", "category", "str"]


class EventField(_Strict):
    """One field of an event's payload."""

    dtype: EventDType
    categories: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    required: bool = True

    @model_validator(mode="after")
    def _check(self) -> EventField:
        if (self.dtype == "category") != (self.categories is not None):
            raise ValueError("'categories' is required for dtype 'category' and only for it")
        if (self.min is not None or self.max is not None) and self.dtype not in ("float", "int"):
            raise ValueError("'min' and 'max' apply only to numbers")
        return self


class EventType(_Strict):
    """A kind of event producers send about one entity."""

    entity: str
    description: str
    fields: dict[str, EventField] = Field(default_factory=dict)


class Feature(_Strict):
    """One model input: its type, the value used when it is missing, and how to say it to an agent."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    dtype: DType
    description: str
    reason: str
    reason_negative: str | None = None
    default: float | int | bool | str | None = None
    categories: tuple[str, ...] | None = None
    min: float | None = None
    """The smallest valid value of a number; the quality check counts values below it as out of range."""
    max: float | None = None
    """The largest valid value of a number; the quality check counts values above it as out of range."""
    pii: bool = False
    aggregation: Aggregation | None = None
    """Set for features of an ``events`` view: how the value is computed from events."""
    derive: Derivation | None = None
    """Set for a feature computed at read time from a stored snapshot feature (see :class:`Derivation`)."""
    model_input: bool = True
    """False for a value kept for reading and deriving but never shown to a model: an absolute date, say,
    whose meaning shifts with the calendar, so a model that split on it would not carry over to later days."""

    @field_validator("aggregation", "derive", mode="wrap")
    @classmethod
    def _name_the_feature(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Aggregation | Derivation | None:
        """Say which feature a malformed aggregation or derivation belongs to, as every other contract error does."""
        try:
            parsed: Aggregation | Derivation | None = handler(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) + ': ' if err['loc'] else ''}"
                f"{err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors()
            )
            raise ValueError(f"feature {info.data.get('name')!r}: {problems}") from exc
        return parsed

    @model_validator(mode="after")
    def _check_categories(self) -> Feature:
        fits = {
            "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "bool": lambda v: isinstance(v, bool),
            "category": lambda v: isinstance(v, str),
        }[self.dtype]
        if self.default is not None and not fits(self.default):
            raise ValueError(f"feature {self.name!r}: default {self.default!r} is not a {self.dtype}")
        if self.dtype == "category":
            if not self.categories:
                raise ValueError(f"feature {self.name!r}: dtype 'category' needs a non-empty 'categories' list")
            if self.default is not None and self.default not in self.categories:
                raise ValueError(f"feature {self.name!r}: default {self.default!r} is not one of its categories")
        elif self.categories is not None:
            raise ValueError(f"feature {self.name!r}: 'categories' is only for dtype 'category'")
        self._check_range()
        return self

    def _check_range(self) -> None:
        """``min``/``max`` bound numbers only, in order, and a declared default lies within them."""
        if self.min is None and self.max is None:
            return
        if self.dtype not in ("float", "int"):
            raise ValueError(f"feature {self.name!r}: 'min' and 'max' apply only to dtype float or int")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min:g} is above max {self.max:g}")
        if isinstance(self.default, int | float) and not self.in_range(float(self.default)):
            raise ValueError(f"feature {self.name!r}: default {self.default!r} is outside [min, max]")

    def in_range(self, value: float) -> bool:
        """Whether an encoded number respects ``min``/``max`` (an unbounded side always does)."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def encode(self, raw: str | float | int | bool | None, *, apply_default: bool = True) -> float:
        """Turn one stored value into the float the models see (NaN for missing).

        Categories become their index in ``categories`` (LightGBM's native categorical input); an
        unknown category is treated as missing rather than guessed. :meth:`encode_column` is the same
        rule over a whole column, and a property test holds the two together. ``apply_default=False``
        keeps a missing value NaN: the online store stores it so and applies the default when it reads.
        """
        if raw is None or raw == "":
            raw = self.default if apply_default else None
            if raw is None:
                return math.nan
        if self.dtype == "category":
            assert self.categories is not None
            try:
                return float(self.categories.index(str(raw)))
            except ValueError:
                return math.nan
        if self.dtype == "bool":
            if isinstance(raw, str):
                return 1.0 if raw.lower() in ("1", "true", "yes") else 0.0
            return 1.0 if raw else 0.0
        return float(raw)

    def encode_column(self, column: pa.Array | pa.ChunkedArray, *, apply_default: bool = True) -> np.ndarray:
        """:meth:`encode` over a typed column (as the offline store holds it), without a Python loop."""
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
        if apply_default and self.default is not None:
            column = pc.fill_null(column, pa.scalar(self.default, type=column.type))
        if self.dtype == "category":
            assert self.categories is not None
            column = pc.index_in(column.cast(pa.string()), value_set=pa.array(self.categories))
        out: np.ndarray = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return out

    def decode(self, value: float) -> str | float | bool | None:
        """The human value of an encoded float (category name, bool), for reasons and summaries."""
        if math.isnan(value):
            return None
        if self.dtype == "category":
            assert self.categories is not None
            return self.categories[int(value)]
        if self.dtype == "bool":
            return bool(value)
        return value

    def phrase(self, value: float) -> str:
        """The plain phrase an agent reads for this feature at ``value``."""
        human = self.decode(value)
        if human is None:
            return f"{self.description} unknown"
        if self.reason_negative is not None and isinstance(human, float) and human < 0:
            return self.reason_negative.format(value=-human)
        return self.reason.format(value=human)


class FeatureView(_Strict):
    """Features of one entity that come from one source and share a freshness budget."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    entity: str
    ttl_days: float | None = Field(gt=0)
    """How long values stay fresh; ``null`` (events views only) for values that hold until an event changes
    them, such as a consent, which stands until the customer withdraws it however long ago it was given."""
    owner: str
    description: str
    source: Literal["snapshot", "events"] = "snapshot"
    """Where values come from: a snapshot table (batch) or the entity's events (live)."""
    features: tuple[Feature, ...] = Field(min_length=1)

    @property
    def ttl_seconds(self) -> float:
        """The freshness budget in seconds, as every age is compared (infinite for a view that never expires)."""
        return math.inf if self.ttl_days is None else self.ttl_days * DAY_SECONDS

    @model_validator(mode="after")
    def _aggregations_match_source(self) -> FeatureView:
        if self.ttl_days is None and self.source != "events":
            raise ValueError("ttl_days: a snapshot view needs a TTL (only an events view may never expire)")
        for feature in self.features:
            if self.source == "events" and feature.aggregation is None:
                raise ValueError(f"feature {feature.name!r}: an events view needs an aggregation on each feature")
            if self.source == "snapshot" and feature.aggregation is not None:
                raise ValueError(f"feature {feature.name!r}: aggregation is only for views with source: events")
            if self.source == "events" and feature.derive is not None:
                raise ValueError(f"feature {feature.name!r}: derive is only for views with source: snapshot")
        return self


class _Contract(_Strict):
    entities: dict[str, Entity]
    events: dict[str, EventType] = Field(default_factory=dict)
    intent_skills: dict[str, str] = Field(default_factory=dict)
    views: tuple[FeatureView, ...]

    @field_validator("views")
    @classmethod
    def _unique_names(cls, views: tuple[FeatureView, ...]) -> tuple[FeatureView, ...]:
        seen: dict[str, str] = {}
        for view in views:
            for feature in view.features:
                if feature.name in seen:
                    raise ValueError(
                        f"feature {feature.name!r} is declared in views {seen[feature.name]!r} and {view.name!r}"
                    )
                seen[feature.name] = view.name
        return views

    @model_validator(mode="after")
    def _known_entities(self) -> _Contract:
        for name, event in self.events.items():
            if event.entity not in self.entities:
                raise ValueError(f"event {name!r}: unknown entity {event.entity!r}")
        columns: dict[str, str] = {}
        for name, event in self.events.items():
            for field_name, spec in event.fields.items():
                if field_name in _EVENT_ENVELOPE:
                    raise ValueError(f"event {name!r}: field {field_name!r} is reserved")
                if columns.setdefault(field_name, spec.dtype) != spec.dtype:
                    raise ValueError(
                        f"event {name!r}: field {field_name!r} is a {spec.dtype} here but a {columns[field_name]} "
                        "in another event; one name, one type"
                    )
        for view in self.views:
            if view.entity not in self.entities:
                raise ValueError(f"view {view.name!r}: unknown entity {view.entity!r}")
            for feature in view.features:
                if feature.aggregation is not None:
                    self._check_aggregation(view, feature, feature.aggregation)
                if feature.derive is not None:
                    self._check_derivation(view, feature, feature.derive)
        self._check_intent_skills()
        return self

    def _check_intent_skills(self) -> None:
        """Every skill an intent needs is one the agents hold: ``skill_<s>`` and ``proficiency_<s>`` features."""
        agent_features = {f.name for v in self.views if v.entity == "agent" for f in v.features}
        intents = {c for e in self.events.values() if "intent" in e.fields for c in e.fields["intent"].categories or ()}
        if self.intent_skills and intents - set(self.intent_skills):
            raise ValueError(
                f"intent_skills: no skill for the intents {', '.join(sorted(intents - set(self.intent_skills)))}"
            )
        for intent, skill in self.intent_skills.items():
            missing = [n for n in (f"skill_{skill}", f"proficiency_{skill}") if n not in agent_features]
            if missing:
                raise ValueError(
                    f"intent_skills.{intent}: skill {skill!r} needs the agent features {', '.join(missing)}"
                )

    def _check_derivation(self, view: FeatureView, feature: Feature, derive: Derivation) -> None:
        """The source is a stored int snapshot feature of the view's entity and the result an int."""
        where = f"feature {feature.name!r}"
        found = [(v, f) for v in self.views for f in v.features if f.name == derive.feature]
        if not found:
            raise ValueError(f"{where}: derived from unknown feature {derive.feature!r}")
        source_view, source = found[0]
        if source_view.entity != view.entity:
            raise ValueError(
                f"{where}: derived from {derive.feature!r} of entity {source_view.entity!r}, not {view.entity!r}"
            )
        if source_view.source != "snapshot" or source.derive is not None:
            raise ValueError(f"{where}: derived from {derive.feature!r}, which is not a stored snapshot feature")
        if source.dtype != "int" or feature.dtype != "int":
            raise ValueError(
                f"{where}: {derive.kind} reads an int day number as an int, not {source.dtype} as {feature.dtype}"
            )

    def _check_aggregation(self, view: FeatureView, feature: Feature, agg: Aggregation) -> None:
        where = f"feature {feature.name!r}"
        event = self.events.get(agg.event)
        if event is None:
            raise ValueError(f"{where}: aggregation over unknown event {agg.event!r}")
        if event.entity != view.entity:
            raise ValueError(f"{where}: event {agg.event!r} is about {event.entity!r}, the view about {view.entity!r}")
        if agg.field is not None:
            spec = event.fields.get(agg.field)
            if spec is None:
                raise ValueError(f"{where}: event {agg.event!r} has no field {agg.field!r}")
            if agg.kind in ("sum", "mean") and spec.dtype not in ("float", "int"):
                raise ValueError(f"{where}: {agg.kind} needs a number, {agg.event}.{agg.field} is a {spec.dtype}")
        allowed = _RESULT_DTYPES[agg.kind] if agg.kind != "last" else _LAST_DTYPES[event.fields[str(agg.field)].dtype]
        if feature.dtype not in allowed:
            raise ValueError(
                f"{where}: {agg.kind} of {agg.event!r} is read as {' or '.join(allowed)}, not {feature.dtype}"
            )
        for key, value in agg.where.items():
            spec = event.fields.get(key)
            if spec is None or spec.dtype not in ("bool", "category"):
                raise ValueError(f"{where}: 'where' may test only bool or category fields of {agg.event!r}: {key!r}")
            if spec.dtype == "bool" and not isinstance(value, bool):
                raise ValueError(f"{where}: 'where.{key}' must be true or false")
            if spec.dtype == "category" and value not in (spec.categories or ()):
                raise ValueError(f"{where}: 'where.{key}' must be one of {spec.categories}")


_EVENT_ENVELOPE = ("event_id", "type", "occurred_at", "customer_id", "agent_id")
# The feature dtypes an aggregation's value can be encoded as: counts and day counts are whole numbers, a mean
# is a fraction, and a `last` keeps its field's kind (a category or free text as a category of the feature).
_RESULT_DTYPES: dict[AggregationKind, tuple[DType, ...]] = {
    "count": ("int",),
    "days_since": ("int",),
    "sum": ("float", "int"),
    "mean": ("float",),
}
_LAST_DTYPES: dict[EventDType, tuple[DType, ...]] = {
    "float": ("float",),
    "int": ("int", "float"),
    "bool": ("bool",),
    "category": ("category",),
    "str": ("category",),
}


class EntitySchema:
    """The resolved layout of one entity: its views and features in the fixed order models use."""

    def __init__(self, name: str, entity: Entity, views: tuple[FeatureView, ...]) -> None:
        self.name = name
        self.join_key = entity.join_key
        self.pii = entity.pii
        self.views = views
        self.features: tuple[Feature, ...] = tuple(f for v in views for f in v.features)
        self.names: tuple[str, ...] = tuple(f.name for f in self.features)
        self.view_of: dict[str, str] = {f.name: v.name for v in views for f in v.features}
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self.snapshot_features: tuple[Feature, ...] = tuple(
            f for v in views if v.source == "snapshot" for f in v.features if f.derive is None
        )
        """The snapshot features that are stored (the snapshot table's columns, the packed value's slots)."""
        self.snapshot_names: tuple[str, ...] = tuple(f.name for f in self.snapshot_features)
        self.derived_features: tuple[Feature, ...] = tuple(f for f in self.features if f.derive is not None)
        """Features computed at read time from a stored snapshot feature, never stored."""
        self.event_features: tuple[Feature, ...] = tuple(f for v in views if v.source == "events" for f in v.features)
        self.view_by_name: dict[str, FeatureView] = {v.name: v for v in views}
        self.view_names: tuple[str, ...] = tuple(v.name for v in views)
        self.view_ttls: tuple[float, ...] = tuple(v.ttl_seconds for v in views)
        """Each view's freshness budget in seconds, in view order: resolved once, every read compares them."""
        self.model_features: tuple[Feature, ...] = tuple(f for f in self.features if f.model_input)
        """The features models see, in contract order (every feature but those with ``model_input: false``)."""
        self.model_names: tuple[str, ...] = tuple(f.name for f in self.model_features)
        self.model_at: np.ndarray = np.array([self.index[n] for n in self.model_names], dtype=np.intp)
        """Where each model input sits in the contract vector: ``x[model_at]`` is a model's row."""

    def view_for(self, feature: Feature) -> FeatureView:
        """The view that declares ``feature``."""
        return self.view_by_name[self.view_of[feature.name]]

    @property
    def event_horizon_days(self) -> int:
        """How far back an event can still change a feature: the longest window, or the TTL of a ``last`` or
        ``days_since``. Older events are refused online and left out of the offline join, except those of the
        :attr:`timeless_events`."""
        spans = [
            span
            for f in self.event_features
            if f.aggregation
            for span in [f.aggregation.window_days or self.view_for(f).ttl_days]
            if span is not None
        ]
        return math.ceil(max(spans, default=0))

    @cached_property
    def timeless_events(self) -> frozenset[str]:
        """Event types a never-expiring feature reads (the newest consent change of a purpose): no horizon
        applies to them, so one given years ago still counts, online, offline and when materialized."""
        return frozenset(
            f.aggregation.event
            for f in self.event_features
            if f.aggregation and f.aggregation.window_days is None and self.view_for(f).ttl_days is None
        )

    def feature(self, name: str) -> Feature:
        """The declared feature called ``name``."""
        try:
            return self.features[self.index[name]]
        except KeyError as exc:
            raise UnknownFeatureError(f"entity {self.name!r} has no feature {name!r}") from exc

    def model_matrix(self, table: pa.Table) -> np.ndarray:
        """The model input for ``table``'s rows, which hold the features by name as the offline store types them."""
        return np.column_stack([f.encode_column(table.column(f.name)) for f in self.model_features])

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of categorical features among the model inputs, for LightGBM's ``categorical_feature``."""
        return [i for i, f in enumerate(self.model_features) if f.dtype == "category"]


class Registry:
    """The loaded, validated feature contract."""

    def __init__(self, contract: _Contract) -> None:
        self._contract = contract
        self.entities: dict[str, EntitySchema] = {
            name: EntitySchema(name, entity, tuple(v for v in contract.views if v.entity == name))
            for name, entity in contract.entities.items()
        }
        self.views: dict[str, FeatureView] = {v.name: v for v in contract.views}
        self.events: dict[str, EventType] = dict(contract.events)
        self.intent_skills: dict[str, str] = dict(contract.intent_skills)
        """The routing rule: the agent skill each contact intent needs."""

    def event_columns(self, entity: str) -> dict[str, EventDType]:
        """The payload columns of ``entity``'s events table: every declared field, each with its one type."""
        columns: dict[str, EventDType] = {}
        for event in self.events.values():
            if event.entity == entity:
                columns.update({name: spec.dtype for name, spec in event.fields.items()})
        return columns

    @classmethod
    def load(cls, path: Path | None = None) -> Registry:
        """Load and validate the contract at ``path`` (the packaged ``registry.yaml`` by default)."""
        source = path if path is not None else resources.files("features").joinpath("registry.yaml")
        label = str(source)
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RegistryError(f"{label}: cannot read the feature contract: {exc}") from exc
        try:
            return cls(_Contract.model_validate(data))
        except ValidationError as exc:
            problems = "; ".join(f"{_where(data, err['loc'])}: {err['msg']}" for err in exc.errors())
            raise RegistryError(f"{label}: {problems}") from exc

    def entity(self, name: str) -> EntitySchema:
        """The resolved schema of entity ``name``."""
        try:
            return self.entities[name]
        except KeyError as exc:
            raise UnknownFeatureError(f"no entity {name!r} in the feature contract") from exc

    @cached_property
    def version(self) -> str:
        """A short hash of what shapes the model input (names, order, types, categories, defaults).

        Models record it and the service refuses a mismatch; wording of descriptions and reasons is
        left out so that rephrasing a reason does not orphan every registered model.
        """
        shape = [
            (
                name,
                [
                    (
                        f.name,
                        f.dtype,
                        f.categories,
                        f.default,
                        f.aggregation and f.aggregation.model_dump(mode="json"),
                        f.derive and f.derive.model_dump(mode="json"),
                        f.model_input,
                    )
                    for f in schema.features
                ],
                [(v.name, v.source, v.ttl_days) for v in schema.views],
            )
            for name, schema in sorted(self.entities.items())
        ]
        canonical = json.dumps(shape, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _where(data: object, loc: tuple[int | str, ...]) -> str:
    """A validation error's location in the contract, each list item named by its ``name`` where it has one:
    ``views[customer_usage].features[logins_7d].dtype``, not ``views.4.features.0.dtype``, which says nothing to
    the person reading it and shifts whenever a view or feature is added above (the catalog names its actions so)."""
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node):
            node = node[step]
            name = node.get("name") if isinstance(node, dict) else None
            label = f"[{name if isinstance(name, str) else step}]"
            parts[-1:] = [(parts[-1] if parts else "") + label]
            continue
        parts.append(str(step))
        node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts) or "(top)"
