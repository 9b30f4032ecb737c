"""Every MLflow call the project makes, so the rest speaks of bundles and aliases, not of MLflow's API.

Runs are logged and versions registered through an explicit ``MlflowClient`` (no process-global tracking
URI), and MLflow's exceptions are translated into ours in one place.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from training.bundle import ModelBundle, ModelKind
from training.errors import ModelNotFound, RegistryUnavailable
from training.settings import MlflowSettings

CHAMPION = "champion"
CHALLENGER = "challenger"
CHAMPION_HISTORY_TAG = "nba.champion_history"
"""Registered-model tag: a JSON list of the versions that held ``champion`` before, oldest first.

Every move of the champion made through this module (promote, ``set_alias``, registering with the alias)
appends the version it replaces; a rollback takes the last one off and does not add the version it leaves,
so rolling back twice goes two steps back rather than flipping between two versions."""
_HISTORY_KEPT = 50  # a tag value holds a few thousand characters; older champions are not worth a rollback


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered model version as the CLI lists it."""

    name: str
    version: str
    aliases: tuple[str, ...]
    metrics: Mapping[str, float]
    run_id: str | None


@dataclass(frozen=True)
class ChampionMove:
    """What a promotion or rollback did: ``champion`` of ``name`` now points at ``version``, was ``previous``."""

    name: str
    version: str
    previous: str | None
    challenger_cleared: bool = False


@contextmanager
def _map_errors(what: str) -> Iterator[None]:
    try:
        yield
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ModelNotFound(f"{what}: {exc.message}") from exc
        raise RegistryUnavailable(f"{what}: {exc.message}") from exc
    except OSError as exc:
        raise RegistryUnavailable(f"{what}: {exc}") from exc


class ModelRegistry:
    """Logs training runs, registers bundles and resolves aliases in one MLflow store."""

    def __init__(self, settings: MlflowSettings, data_dir: Path) -> None:
        self.tracking_uri = settings.resolved_uri(data_dir)
        self._settings = settings
        self._artifacts = (data_dir / "artifacts").resolve()
        with _map_errors(f"MLflow store {self.tracking_uri}"):
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def model_name(self, kind: ModelKind) -> str:
        """The registered model's name for a kind of model."""
        return f"{self._settings.model_prefix}-{kind}"

    def _experiment_id(self) -> str:
        with _map_errors(f"experiment {self._settings.experiment!r}"):
            found = self._client.get_experiment_by_name(self._settings.experiment)
            if found is not None:
                return str(found.experiment_id)
            location = None if self._settings.tracking_uri else self._artifacts.as_uri()
            return str(self._client.create_experiment(self._settings.experiment, artifact_location=location))

    def log_and_register(
        self,
        bundle: ModelBundle,
        *,
        params: Mapping[str, object],
        tags: Mapping[str, str],
        aliases: tuple[str, ...] = (CHALLENGER,),
        report: Path | None = None,
        name: str | None = None,
    ) -> str:
        """Log one training run with the bundle as its artifact, register it, point ``aliases`` at it.

        ``report`` is a folder of files (plots, tables) logged beside the bundle under ``report/``; ``name``
        overrides the kind's registered model (a model on a user's own table has its own).
        """
        name = name or self.model_name(bundle.kind)
        with _map_errors(f"registering {name}"):
            run = self._client.create_run(self._experiment_id(), run_name=f"train-{bundle.kind}")
            run_id = run.info.run_id
            try:
                self._client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), 0, 0) for k, v in bundle.metrics.items()],
                    params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                    tags=[RunTag(k, v) for k, v in tags.items()],
                )
                with tempfile.TemporaryDirectory() as tmp:
                    bundle.save(Path(tmp))
                    self._client.log_artifacts(run_id, tmp, artifact_path="bundle")
                if report is not None:
                    self._client.log_artifacts(run_id, str(report), artifact_path="report")
            except BaseException:
                self._client.set_terminated(run_id, status="FAILED")
                raise
            self._client.set_terminated(run_id)
            if not self._client.search_registered_models(filter_string=f"name = '{name}'"):
                self._client.create_registered_model(name, description=f"nba-copilot {bundle.kind} model")
            version = self._client.create_model_version(
                name, source=f"{run.info.artifact_uri}/bundle", run_id=run_id, tags=dict(tags)
            )
            for alias in aliases:
                self._point(name, alias, str(version.version))
        return str(version.version)

    def log_evaluation(
        self,
        *,
        metrics: Mapping[str, float],
        params: Mapping[str, object],
        artifacts: Path,
        run_name: str = "evaluate",
        artifact_path: str = "evaluation",
    ) -> str:
        """Log one evaluation (``nba evaluate``, or a shadow report) as a run: its figures as metrics, how it was
        made as params, and the files in ``artifacts`` (tables, plots) under ``artifact_path``; returns the run id."""
        with _map_errors("logging the evaluation"):
            run = self._client.create_run(self._experiment_id(), run_name=run_name)
            run_id = run.info.run_id
            try:
                self._client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
                    params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                )
                self._client.log_artifacts(run_id, str(artifacts), artifact_path=artifact_path)
            except BaseException:
                self._client.set_terminated(run_id, status="FAILED")
                raise
            self._client.set_terminated(run_id)
        return str(run_id)

    def set_alias(self, kind: ModelKind, alias: str, version: str) -> None:
        """Point ``alias`` of the kind's registered model at ``version``."""
        name = self.model_name(kind)
        with _map_errors(f"{name} version {version}"):
            self._client.get_model_version(name, version)
            self._point(name, alias, version)

    def version_for(self, kind: ModelKind, alias: str) -> str:
        """The version an alias points at."""
        return self.contract_of(kind, alias)[0]

    def contract_of(self, kind: ModelKind, alias: str) -> tuple[str, str | None]:
        """The version an alias points at and the feature contract it was trained on (its ``contract_version``
        tag), read from the registry without downloading the bundle."""
        version, tags = self.tags_of(kind, alias)
        return version, tags.get("contract_version")

    def tags_of(self, kind: ModelKind, alias: str) -> tuple[str, dict[str, str]]:
        """The version an alias points at and its tags (how it was trained), without downloading the bundle."""
        name = self.model_name(kind)
        with _map_errors(f"{name}@{alias}"):
            version = self._client.get_model_version_by_alias(name, alias)
        return str(version.version), dict(version.tags)

    def load(self, kind: ModelKind, alias: str = CHAMPION, *, name: str | None = None) -> tuple[ModelBundle, str]:
        """Download and open the bundle that ``alias`` points at; returns it with its version.

        ``name`` picks another registered model than the kind's (one trained on a user's own table)."""
        name = name or self.model_name(kind)
        with _map_errors(f"{name}@{alias}"):
            version = self._client.get_model_version_by_alias(name, alias)
            local = mlflow.artifacts.download_artifacts(artifact_uri=version.source, tracking_uri=self.tracking_uri)
        return ModelBundle.load(Path(local)), str(version.version)

    def load_version(
        self, name: str, *, alias: str | None = None, version: str | None = None
    ) -> tuple[ModelBundle, str, str]:
        """Download and open one version of a registered model, named as a user typed it (see :meth:`resolve`).

        Exactly one of ``alias`` and ``version`` picks the version. Returns the bundle, the full registered
        name and the version; an unknown name, alias or version is a :class:`ModelNotFound` listing what there is.
        """
        if (alias is None) == (version is None):
            raise ValueError("give exactly one of alias and version")
        name = self.resolve(name)
        with _map_errors(name):
            if alias is not None:
                aliases = self._aliases(name)
                if alias not in aliases:
                    known = ", ".join(f"{a} (version {v})" for a, v in sorted(aliases.items())) or "none"
                    raise ModelNotFound(f"{name} has no alias {alias!r}; aliases: {known}")
                version = aliases[alias]
            else:
                assert version is not None
                self._check_version(name, version)
            source = self._client.get_model_version(name, version).source
            local = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=self.tracking_uri)
        return ModelBundle.load(Path(local)), name, version

    def versions(self, kind: ModelKind) -> list[RegisteredVersion]:
        """Every registered version of the kind's model, newest first, with aliases and run metrics."""
        return self.versions_of(self.model_name(kind))

    def versions_of(self, name: str) -> list[RegisteredVersion]:
        """Every registered version of the model ``name``, newest first; empty if there is no such model."""
        with _map_errors(name):
            if not self._client.search_registered_models(filter_string=f"name = '{name}'"):
                return []
            aliases: dict[str, list[str]] = {}
            for alias, version in self._client.get_registered_model(name).aliases.items():
                aliases.setdefault(str(version), []).append(alias)
            out = []
            for mv in self._client.search_model_versions(f"name = '{name}'"):
                metrics = self._client.get_run(mv.run_id).data.metrics if mv.run_id else {}
                out.append(
                    RegisteredVersion(
                        name, str(mv.version), tuple(sorted(aliases.get(str(mv.version), []))), metrics, mv.run_id
                    )
                )
        return sorted(out, key=lambda v: int(v.version), reverse=True)

    def registered_names(self) -> list[str]:
        """The registered models this project owns (named ``PREFIX-...``), sorted."""
        prefix = f"{self._settings.model_prefix}-"
        with _map_errors(f"MLflow registry {self.tracking_uri}"):
            found = self._client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")
        return sorted(m.name for m in found if m.name.startswith(prefix))

    def resolve(self, name: str) -> str:
        """The registered name for ``name`` as typed: the full name (``nba-churn``) or the kind (``churn``)."""
        known = self.registered_names()
        for candidate in (name, f"{self._settings.model_prefix}-{name}"):
            if candidate in known:
                return candidate
        raise ModelNotFound(
            f"no registered model {name!r} in {self.tracking_uri}; known: {', '.join(known) or 'none (train one)'}"
        )

    def champion_history(self, name: str) -> list[str]:
        """The versions that held ``champion`` of ``name`` before the current one, oldest first."""
        with _map_errors(name):
            raw = self._client.get_registered_model(name).tags.get(CHAMPION_HISTORY_TAG)
        return [str(v) for v in json.loads(raw)] if raw else []

    def promote(self, name: str, version: str | None = None) -> ChampionMove:
        """Point ``champion`` of ``name`` at ``version`` (by default the ``challenger``'s).

        The promoted version loses the ``challenger`` alias: it no longer challenges anything, and a shadow
        run comparing a model with itself would report nothing.
        """
        name = self.resolve(name)
        with _map_errors(name):
            aliases = self._aliases(name)
            if version is None:
                if CHALLENGER not in aliases:
                    raise ModelNotFound(
                        f"{name} has no {CHALLENGER}: train one (nba train ...) or name a version with --version"
                    )
                version = aliases[CHALLENGER]
            self._check_version(name, version)
            previous = self._point(name, CHAMPION, version)
            cleared = aliases.get(CHALLENGER) == version
            if cleared:
                self._client.delete_registered_model_alias(name, CHALLENGER)
        return ChampionMove(name, version, previous, cleared)

    def rollback(self, name: str) -> ChampionMove:
        """Point ``champion`` back at the version that held it before the current one.

        Versions deleted since they were champion are skipped. The version rolled back from is not recorded,
        so a second rollback goes one more step back; ``promote`` is the way forward again.
        """
        name = self.resolve(name)
        with _map_errors(name):
            current = self._aliases(name).get(CHAMPION)
            history = self.champion_history(name)
            existing = set(self._version_numbers(name))
            while history and (history[-1] == current or history[-1] not in existing):
                history.pop()
            if not history:
                where = f"version {current}" if current else "no version"
                raise ModelNotFound(f"{name}: nothing to roll back to ({CHAMPION} is {where}, no earlier one recorded)")
            target = history.pop()
            self._client.set_registered_model_alias(name, CHAMPION, target)
            self._client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history))
        return ChampionMove(name, target, current)

    def _aliases(self, name: str) -> dict[str, str]:
        return {alias: str(v) for alias, v in self._client.get_registered_model(name).aliases.items()}

    def _version_numbers(self, name: str) -> list[str]:
        return sorted((str(mv.version) for mv in self._client.search_model_versions(f"name = '{name}'")), key=int)

    def _check_version(self, name: str, version: str) -> None:
        existing = self._version_numbers(name)
        if version not in existing:
            raise ModelNotFound(f"{name} has no version {version!r}; versions: {', '.join(existing)}")

    def _point(self, name: str, alias: str, version: str) -> str | None:
        """Set ``alias`` to ``version``; for ``champion``, record the version it replaces. Returns that version."""
        previous = self._aliases(name).get(alias)
        self._client.set_registered_model_alias(name, alias, version)
        if alias == CHAMPION and previous is not None and previous != version:
            history = [*self.champion_history(name), previous][-_HISTORY_KEPT:]
            self._client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history))
        return previous
