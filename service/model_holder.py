"""Holds the champion bundles the service scores with; loads them off the request path.

Following Ray Serve's ``reconfigure``: a new set is loaded fully and checked (feature contract version)
before one reference is swapped, so a request sees either the old models or the new ones, never half.
A request never loads a model and never waits on MLflow.

The resolution model is held apart from churn and propensity: routing without it falls back to the
agents' measured resolution rates (and says so), so its absence must not take the other two down, nor theirs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import ModelsUnavailable
from training import CHAMPION, NO_ACTION, ModelBundle, ModelRegistry, RegistryUnavailable


@dataclass(frozen=True)
class Models:
    """The champion bundles in force and their registered versions."""

    churn: ModelBundle
    propensity: ModelBundle
    versions: dict[str, str]


@dataclass(frozen=True)
class ResolutionModel:
    """The resolution bundle in force (P(first-contact resolution), expected handle time) and its version."""

    bundle: ModelBundle
    name: str
    version: str


class ModelHolder:
    """The current :class:`Models`, or why there are none."""

    def __init__(self, registry: ModelRegistry, contract_version: str, *, alias: str = CHAMPION) -> None:
        self._registry = registry
        self._contract_version = contract_version
        self._alias = alias
        self._models: Models | None = None
        self.error: str | None = "models not loaded yet"
        self._resolution: ResolutionModel | None = None
        self.resolution_error: str | None = "resolution model not loaded yet"

    @property
    def models(self) -> Models:
        """The models in force; raises :class:`ModelsUnavailable` when none could be loaded."""
        if self._models is None:
            raise ModelsUnavailable(self.error or "models not loaded")
        return self._models

    @property
    def loaded(self) -> bool:
        """Whether recommend and assign can score with models."""
        return self._models is not None

    @property
    def resolution(self) -> ResolutionModel:
        """The resolution model in force; raises :class:`ModelsUnavailable` when none could be loaded."""
        if self._resolution is None:
            raise ModelsUnavailable(self.resolution_error or "resolution model not loaded")
        return self._resolution

    @property
    def versions(self) -> dict[str, str]:
        """Registered name → version of every model in force."""
        out = dict(self._models.versions) if self._models is not None else {}
        if self._resolution is not None:
            out[self._resolution.name] = self._resolution.version
        return out

    def load(self) -> None:
        """Load the aliased bundles, check them, then swap; on failure keep what was there and say why."""
        self._load_resolution()
        try:
            churn, churn_version = self._registry.load("churn", self._alias)
            propensity, propensity_version = self._registry.load("propensity", self._alias)
        except RegistryUnavailable as exc:
            self.error = f"cannot load the {self._alias} models: {exc}"
            return
        for bundle in (churn, propensity):
            if bundle.contract_version != self._contract_version:
                self.error = (
                    f"{bundle.kind} model was trained on feature contract {bundle.contract_version}, "
                    f"the service runs {self._contract_version}: retrain it"
                )
                return
        if NO_ACTION not in churn.actions:
            self.error = (
                f"{self._registry.model_name('churn')} v{churn_version} does not take the action as an input, so it "
                "cannot say what an offer does to churn: retrain it (nba train churn)"
            )
            return
        self._models = Models(
            churn,
            propensity,
            {
                self._registry.model_name("churn"): churn_version,
                self._registry.model_name("propensity"): propensity_version,
            },
        )
        self.error = None

    def _load_resolution(self) -> None:
        try:
            bundle, version = self._registry.load("resolution", self._alias)
        except RegistryUnavailable as exc:
            self.resolution_error = f"cannot load the {self._alias} resolution model: {exc}"
            return
        if bundle.contract_version != self._contract_version:
            self.resolution_error = (
                f"resolution model was trained on feature contract {bundle.contract_version}, "
                f"the service runs {self._contract_version}: retrain it"
            )
            return
        if bundle.handle_time is None or not bundle.contact_fields:
            self.resolution_error = f"{self._registry.model_name('resolution')} v{version} is not a resolution bundle"
            return
        self._resolution = ResolutionModel(bundle, self._registry.model_name("resolution"), version)
        self.resolution_error = None
