"""The action catalog: what may be recommended, to whom, on which channel, and what it is worth.

Loaded from YAML and validated against the feature contract at load (an eligibility rule over a feature
the contract does not declare fails then, naming the action and the field), and compiled to positions
in the customer vector so eligibility costs a few float comparisons per request.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features import EntitySchema, Registry
from service.errors import CatalogError

Channel = Literal["voice", "chat", "email", "sms", "web"]
NO_ACTION = "no_action"


class Rule(BaseModel):
    """A condition on one customer feature; every given bound must hold, a missing value fails it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    min: float | None = None
    max: float | None = None
    in_: tuple[str, ...] | None = Field(default=None, alias="in")


class Action(BaseModel):
    """One next-best action as the business defines it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    script: str
    group: Literal["service", "retention", "sales", "none"]
    channels: tuple[Channel, ...] = Field(min_length=1)
    value: float = Field(ge=0)
    cost: float = Field(ge=0)
    lever: float = Field(default=1.0, gt=0)
    prior_accept: float = Field(gt=0, le=1)
    requires_consent: bool = False
    eligibility: dict[str, Rule] = Field(default_factory=dict)


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: tuple[Action, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> _CatalogFile:
        ids = [a.id for a in self.actions]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate action id(s): {', '.join(duplicates)}")
        if NO_ACTION not in ids:
            raise ValueError(f"the catalog must contain {NO_ACTION!r}: doing nothing is always a candidate")
        return self


class _Check:
    """A rule compiled against the customer vector's layout."""

    def __init__(self, index: int, rule: Rule, codes: frozenset[float] | None) -> None:
        self.index, self.rule, self.codes = index, rule, codes

    def holds(self, x: np.ndarray) -> bool:
        v = float(x[self.index])
        if math.isnan(v):
            return False
        if self.codes is not None and v not in self.codes:
            return False
        if self.rule.min is not None and v < self.rule.min:
            return False
        return not (self.rule.max is not None and v > self.rule.max)


class Catalog:
    """The validated catalog with eligibility compiled for one feature layout."""

    def __init__(self, actions: tuple[Action, ...], customer: EntitySchema) -> None:
        self.actions = actions
        self.by_id = {a.id: a for a in actions}
        self._consent = customer.index["consent_marketing"]
        self._checks: dict[str, list[_Check]] = {}
        for action in actions:
            checks = []
            for name, rule in action.eligibility.items():
                if name not in customer.index:
                    raise CatalogError(f"action {action.id!r}: eligibility names unknown feature {name!r}")
                feature = customer.feature(name)
                codes = None
                if rule.in_ is not None:
                    codes = frozenset(feature.encode(v) for v in rule.in_)
                    if any(math.isnan(c) for c in codes):
                        raise CatalogError(
                            f"action {action.id!r}: eligibility.{name}.in has a value outside {feature.categories}"
                        )
                checks.append(_Check(customer.index[name], rule, codes))
            self._checks[action.id] = checks

    @classmethod
    def load(cls, registry: Registry, path: Path | None = None) -> Catalog:
        """Load and validate the catalog at ``path`` (the packaged ``catalog.yaml`` by default)."""
        source = path if path is not None else resources.files("service").joinpath("catalog.yaml")
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8"))
            parsed = _CatalogFile.model_validate(data)
        except (OSError, yaml.YAMLError) as exc:
            raise CatalogError(f"{source}: cannot read the catalog: {exc}") from exc
        except ValidationError as exc:
            problems = "; ".join(f"{_where(data, err['loc'])}: {err['msg']}" for err in exc.errors())
            raise CatalogError(f"{source}: {problems}") from exc
        try:
            return cls(parsed.actions, registry.entity("customer"))
        except CatalogError as exc:
            raise CatalogError(f"{source}: {exc}") from exc

    def eligible(self, x: np.ndarray, channel: str) -> list[Action]:
        """Actions this customer may be offered on this channel (consent and rules checked)."""
        consent = x[self._consent] == 1.0
        return [
            a
            for a in self.actions
            if channel in a.channels
            and (consent or not a.requires_consent)
            and all(c.holds(x) for c in self._checks[a.id])
        ]


def _where(data: object, loc: tuple[int | str, ...]) -> str:
    """A validation location with the action's id in place of its list index."""
    parts = []
    for i, part in enumerate(loc):
        if i == 1 and loc[0] == "actions" and isinstance(part, int) and isinstance(data, dict):
            actions = data.get("actions") or []
            action_id = actions[part].get("id") if part < len(actions) and isinstance(actions[part], dict) else None
            parts.append(f"[{action_id or part}]")
        else:
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts) or "(top)"
