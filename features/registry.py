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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.errors import RegistryError, UnknownFeatureError

DType = Literal["float", "int", "bool", "category"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entity(_Strict):
    """A thing features describe (a customer, an agent), keyed by ``join_key``."""

    join_key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str


class Feature(_Strict):
    """One model input: its type, the value used when it is missing, and how to say it to an agent."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    dtype: DType
    description: str
    reason: str
    reason_negative: str | None = None
    default: float | int | bool | str | None = None
    categories: tuple[str, ...] | None = None
    pii: bool = False

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
        return self

    def encode(self, raw: str | float | int | bool | None) -> float:
        """Turn one stored value into the float the models see (NaN for missing).

        Categories become their index in ``categories`` (LightGBM's native categorical input); an
        unknown category is treated as missing rather than guessed. :meth:`encode_column` is the same
        rule over a whole column, and a property test holds the two together.
        """
        if raw is None or raw == "":
            raw = self.default
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

    def encode_column(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """:meth:`encode` over a typed column (as the offline store holds it), without a Python loop."""
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
        if self.default is not None:
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
    ttl_days: float = Field(gt=0)
    owner: str
    description: str
    features: tuple[Feature, ...] = Field(min_length=1)


class _Contract(_Strict):
    entities: dict[str, Entity]
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
        for view in self.views:
            if view.entity not in self.entities:
                raise ValueError(f"view {view.name!r}: unknown entity {view.entity!r}")
        return self


class EntitySchema:
    """The resolved layout of one entity: its views and features in the fixed order models use."""

    def __init__(self, name: str, entity: Entity, views: tuple[FeatureView, ...]) -> None:
        self.name = name
        self.join_key = entity.join_key
        self.views = views
        self.features: tuple[Feature, ...] = tuple(f for v in views for f in v.features)
        self.names: tuple[str, ...] = tuple(f.name for f in self.features)
        self.view_of: dict[str, str] = {f.name: v.name for v in views for f in v.features}
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}

    def feature(self, name: str) -> Feature:
        """The declared feature called ``name``."""
        try:
            return self.features[self.index[name]]
        except KeyError as exc:
            raise UnknownFeatureError(f"entity {self.name!r} has no feature {name!r}") from exc

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of categorical features, for LightGBM's ``categorical_feature``."""
        return [i for i, f in enumerate(self.features) if f.dtype == "category"]


class Registry:
    """The loaded, validated feature contract."""

    def __init__(self, contract: _Contract) -> None:
        self._contract = contract
        self.entities: dict[str, EntitySchema] = {
            name: EntitySchema(name, entity, tuple(v for v in contract.views if v.entity == name))
            for name, entity in contract.entities.items()
        }
        self.views: dict[str, FeatureView] = {v.name: v for v in contract.views}

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
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
            )
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
            (name, [(f.name, f.dtype, f.categories, f.default) for f in schema.features])
            for name, schema in sorted(self.entities.items())
        ]
        canonical = json.dumps(shape, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]
