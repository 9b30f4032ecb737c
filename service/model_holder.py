"""Holds the champion bundles the service scores with; loads them, and versions promoted later, off the request path.

Following Ray Serve's ``reconfigure``: a new set is loaded fully and checked (feature contract version, the
inputs the service gives it) before one reference is swapped, so a request sees either the old models or the new
ones, never half. A request never loads a model and never waits on MLflow.

:meth:`ModelHolder.load` runs once at start; :meth:`ModelHolder.refresh` then runs every ``NBA_MODEL_POLL_S``
seconds in a worker thread (``create_app``'s lifespan): it asks the registry which version each alias names (one
cheap call per model) and loads only a version that changed. So ``nba models promote`` and ``rollback`` reach a
running service within a poll, without a restart and without a failed request.

What can go wrong, and what then holds:

- MLflow unreachable at start: each model is served from its last-known-good copy on disk
  (:mod:`service.model_cache`), said in ``/health``, ``/ready``, the log and ``nba_model_last_known_good``; the
  next poll that reaches MLflow takes the aliased versions again.
- A promoted version that cannot be loaded (its artifact missing or corrupt) or fails the checks: the version in
  force stays, the failure is logged, counted (``nba_model_load_failures_total``) and named in ``/health``. A
  version that failed its checks is not tried again until the alias moves; one whose download failed is retried.
- MLflow unreachable later: the versions in force stay; ``nba_model_registry_up`` drops to 0.
- An alias removed: the version in force stays, and ``/health`` says so.

The resolution model is held apart from churn and propensity: routing without it falls back to the
agents' measured resolution rates (and says so), so its absence must not take the other two down, nor theirs it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from service.errors import ModelsUnavailable
from service.model_cache import LastKnownGood
from training import CHAMPION, NO_ACTION, ModelBundle, ModelKind, ModelNotFound, ModelRegistry, RegistryUnavailable

log = logging.getLogger("nba.models")

Source = Literal["registry", "last_known_good"]
KINDS: tuple[ModelKind, ...] = ("churn", "propensity", "resolution")


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


@dataclass(frozen=True)
class _Loaded:
    bundle: ModelBundle
    version: str
    source: Source


@dataclass(frozen=True)
class ModelStatus:
    """Where the models in force came from and what went wrong lately, for ``/health`` and ``/metrics``."""

    sources: dict[str, Source]
    """Registered name → where its bundle in force was loaded from."""
    problems: dict[str, str]
    """Registered name → why the version its alias names is not the one in force (cleared once it is)."""
    registry_up: bool | None
    """Whether the last look at the registry reached it (None before the first)."""
    load_failures: dict[str, int] = field(default_factory=dict)
    swaps: dict[str, int] = field(default_factory=dict)


class ModelHolder:
    """The current :class:`Models`, or why there are none."""

    def __init__(
        self,
        registry: ModelRegistry,
        contract_version: str,
        *,
        alias: str = CHAMPION,
        cache: LastKnownGood | None = None,
    ) -> None:
        self._registry = registry
        self._contract_version = contract_version
        self._alias = alias
        self._cache = cache
        self._models: Models | None = None
        self.error: str | None = "models not loaded yet"
        self._resolution: ResolutionModel | None = None
        self.resolution_error: str | None = "resolution model not loaded yet"
        self._loaded: dict[ModelKind, _Loaded] = {}
        self._problems: dict[str, str] = {}
        self._reasons: dict[str, str] = {}
        self._refused: set[tuple[str, str]] = set()
        self._reported: set[tuple[str, str]] = set()
        self._registry_up: bool | None = None
        self._failures: Counter[str] = Counter()
        self._swaps: Counter[str] = Counter()
        self._lock = threading.Lock()

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

    @property
    def status(self) -> ModelStatus:
        """Where the models in force came from, and what went wrong since."""
        in_force = self.versions
        loaded = dict(self._loaded)
        return ModelStatus(
            sources={
                self._registry.model_name(kind): item.source
                for kind, item in loaded.items()
                if self._registry.model_name(kind) in in_force
            },
            problems=dict(self._problems),
            registry_up=self._registry_up,
            load_failures=dict(self._failures),
            swaps=dict(self._swaps),
        )

    def load(self) -> None:
        """Load the aliased bundles at start, from the last-known-good copies when MLflow cannot be reached."""
        self.refresh()

    def refresh(self) -> bool:
        """Look up each alias; load, check and swap in any version that changed. True when anything was swapped.

        Never raises: what fails is logged, counted and kept in :attr:`status` (and :attr:`error` while no
        models are in force), and the models in force stay.
        """
        with self._lock:
            wanted: dict[ModelKind, str | None] = {}
            missing: dict[ModelKind, str] = {}
            for kind in KINDS:
                try:
                    wanted[kind] = self._registry.version_for(kind, self._alias)
                except ModelNotFound as exc:
                    wanted[kind] = None
                    missing[kind] = f"cannot load the {self._alias} {_what(kind)}: {exc}"
                except RegistryUnavailable as exc:
                    return self._registry_down(exc)
            if self._registry_up is False:
                log.warning("the model registry answers again: %s", self._registry.tracking_uri)
            self._registry_up = True
            fresh: dict[ModelKind, _Loaded] = {}
            for kind in KINDS:
                name = self._registry.model_name(kind)
                version = wanted[kind]
                current = self._loaded.get(kind)
                if version is None:
                    if current is not None:
                        self._problems[name] = f"{missing[kind]}; version {current.version} stays in force"
                    continue
                if current is not None and current.version == version:
                    if current.source != "registry":
                        log.warning("%s: version %s in force is the one %s names", name, version, self._alias)
                        fresh[kind] = _Loaded(current.bundle, version, "registry")
                    self._problems.pop(name, None)
                    continue
                loaded = self._fetch(kind, version)
                if loaded is None and current is None:
                    loaded = self._from_cache(kind)
                if loaded is not None:
                    fresh[kind] = loaded
            return self._apply(fresh, missing)

    def _registry_down(self, exc: RegistryUnavailable) -> bool:
        """MLflow did not answer: keep what is in force, or start from the last-known-good copies."""
        if self._registry_up is not False:
            then = "the models in force stay" if self._loaded else "looking for last-known-good copies"
            log.error("the model registry cannot be reached (%s); %s", exc, then)
        self._registry_up = False
        fresh = {}
        for kind in KINDS:
            if kind not in self._loaded and (cached := self._from_cache(kind)) is not None:
                fresh[kind] = cached
        reason = f"cannot load the {self._alias} models: {exc}"
        return self._apply(fresh, {kind: reason for kind in KINDS if kind not in self._loaded and kind not in fresh})

    def _fetch(self, kind: ModelKind, version: str) -> _Loaded | None:
        """Version ``version`` of ``kind`` from the registry, checked; None (and the failure reported) otherwise."""
        name = self._registry.model_name(kind)
        if (name, version) in self._refused:
            return None
        try:
            bundle, _, _ = self._registry.load_version(name, version=version)
        except RegistryUnavailable as exc:  # the download failed: tried again at the next poll
            self._failed(name, version, f"cannot download it: {exc}", retry=True)
            return None
        except Exception as exc:  # a corrupt artifact: unpickling raises whatever the bytes make it raise
            self._failed(name, version, f"its artifact cannot be loaded: {type(exc).__name__}: {exc}", retry=False)
            return None
        problem = self._check(kind, bundle, version)
        if problem is not None:
            self._failed(name, version, problem, retry=False)
            return None
        if self._cache is not None:
            try:
                self._cache.save(name, version, bundle)
            except OSError as exc:
                log.warning("%s v%s: cannot keep a last-known-good copy: %s", name, version, exc)
        return _Loaded(bundle, version, "registry")

    def _from_cache(self, kind: ModelKind) -> _Loaded | None:
        """The last-known-good copy of ``kind``, checked, or None."""
        if self._cache is None:
            return None
        name = self._registry.model_name(kind)
        try:
            cached = self._cache.load(name)
        except Exception as exc:
            log.error("%s: the last-known-good copy cannot be loaded: %s: %s", name, type(exc).__name__, exc)
            return None
        if cached is None:
            return None
        problem = self._check(kind, cached.bundle, cached.version)
        if problem is not None:
            log.error("%s: the last-known-good copy (version %s) is refused: %s", name, cached.version, problem)
            return None
        log.warning(
            "%s: serving version %s from the last-known-good copy saved %s (%s)",
            name,
            cached.version,
            cached.saved_at,
            self._cache.root / name,
        )
        return _Loaded(cached.bundle, cached.version, "last_known_good")

    def _check(self, kind: ModelKind, bundle: ModelBundle, version: str) -> str | None:
        """Why ``bundle`` cannot serve as the ``kind`` model, or None."""
        name = self._registry.model_name(kind)
        if bundle.kind != kind:
            return f"{name} v{version} is a {bundle.kind} bundle, not a {kind} one"
        if bundle.contract_version != self._contract_version:
            return (
                f"{_what(kind)} was trained on feature contract {bundle.contract_version}, "
                f"the service runs {self._contract_version}: retrain it"
            )
        if kind == "churn" and NO_ACTION not in bundle.actions:
            return (
                f"{name} v{version} does not take the action as an input, so it cannot say what an offer does to "
                "churn: retrain it (nba train churn)"
            )
        if kind == "resolution" and (bundle.handle_time is None or not bundle.contact_fields):
            return f"{name} v{version} is not a resolution bundle"
        return None

    def _failed(self, name: str, version: str, problem: str, *, retry: bool) -> None:
        """Report that ``version`` of ``name`` cannot be put in force: counted and logged once per version."""
        if (name, version) not in self._reported:
            self._reported.add((name, version))
            self._failures[name] += 1
            log.error("%s v%s was not put in force: %s", name, version, problem)
        if not retry:
            self._refused.add((name, version))
        self._reasons[name] = problem
        self._problems[name] = f"version {version} was not put in force: {problem}"

    def _apply(self, fresh: dict[ModelKind, _Loaded], missing: dict[ModelKind, str]) -> bool:
        """Swap in what ``fresh`` holds, one reference per held object; set the errors for what is missing."""
        for kind, item in fresh.items():
            before = self._loaded.get(kind)
            self._loaded[kind] = item
            name = self._registry.model_name(kind)
            if before is None or before.version != item.version:
                self._swaps[name] += 1
                if before is not None:
                    log.warning("%s: version %s in force (was %s)", name, item.version, before.version)
            if item.source == "registry":
                self._problems.pop(name, None)
        churn, propensity = self._loaded.get("churn"), self._loaded.get("propensity")
        if {"churn", "propensity"} & fresh.keys() and churn is not None and propensity is not None:
            self._models = Models(
                churn.bundle,
                propensity.bundle,
                {
                    self._registry.model_name("churn"): churn.version,
                    self._registry.model_name("propensity"): propensity.version,
                },
            )
            self.error = None
        if self._models is None:
            self.error = self._why_not(("churn", "propensity"), missing)
        if "resolution" in fresh:
            resolution = fresh["resolution"]
            name = self._registry.model_name("resolution")
            self._resolution = ResolutionModel(resolution.bundle, name, resolution.version)
            self.resolution_error = None
        elif self._resolution is None:
            self.resolution_error = self._why_not(("resolution",), missing)
        return bool(fresh)

    def _why_not(self, kinds: tuple[ModelKind, ...], missing: dict[ModelKind, str]) -> str:
        """Why ``kinds`` are not all in force: the registry's answer, or the failure to load or check them."""
        for kind in kinds:
            if kind in self._loaded:
                continue
            if kind in missing:
                return missing[kind]
            name = self._registry.model_name(kind)
            if name in self._reasons:
                return self._reasons[name]
        return "models not loaded"


def _what(kind: ModelKind) -> str:
    return "resolution model" if kind == "resolution" else f"{kind} model"


async def watch(holder: ModelHolder, every_s: float) -> None:
    """Every ``every_s`` seconds, :meth:`ModelHolder.refresh` in a worker thread (MLflow's client blocks), forever.

    Off the request path: the event loop only waits on the thread's result, and a refresh that finds nothing new
    costs one registry call per model. Cancelled by the app's lifespan at shutdown.
    """
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(holder.refresh)
        except Exception:  # refresh never raises by design; should it, the watch must not die with it
            log.exception("looking for promoted models failed")
