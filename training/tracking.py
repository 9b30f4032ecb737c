"""Every MLflow call the project makes, so the rest speaks of bundles and aliases, not of MLflow's API.

Runs are logged and versions registered through an explicit ``MlflowClient`` (no process-global tracking
URI), and MLflow's exceptions are translated into ours in one place.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered model version as the CLI lists it."""

    name: str
    version: str
    aliases: tuple[str, ...]
    metrics: Mapping[str, float]
    run_id: str | None


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
        name: str | None = None,
    ) -> str:
        """Log one training run with the bundle as its artifact, register it, point ``aliases`` at it.

        ``name`` overrides the kind's registered model (a model on a user's own table has its own)."""
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
                self._client.set_registered_model_alias(name, alias, version.version)
        return str(version.version)

    def set_alias(self, kind: ModelKind, alias: str, version: str) -> None:
        """Point ``alias`` of the kind's registered model at ``version``."""
        name = self.model_name(kind)
        with _map_errors(f"{name} version {version}"):
            self._client.get_model_version(name, version)
            self._client.set_registered_model_alias(name, alias, version)

    def version_for(self, kind: ModelKind, alias: str) -> str:
        """The version an alias points at."""
        name = self.model_name(kind)
        with _map_errors(f"{name}@{alias}"):
            return str(self._client.get_model_version_by_alias(name, alias).version)

    def load(self, kind: ModelKind, alias: str = CHAMPION, *, name: str | None = None) -> tuple[ModelBundle, str]:
        """Download and open the bundle that ``alias`` points at; returns it with its version.

        ``name`` picks another registered model than the kind's (one trained on a user's own table)."""
        name = name or self.model_name(kind)
        with _map_errors(f"{name}@{alias}"):
            version = self._client.get_model_version_by_alias(name, alias)
            local = mlflow.artifacts.download_artifacts(artifact_uri=version.source, tracking_uri=self.tracking_uri)
        return ModelBundle.load(Path(local)), str(version.version)

    def versions(self, kind: ModelKind) -> list[RegisteredVersion]:
        """Every registered version of the kind's model, newest first, with aliases and run metrics."""
        name = self.model_name(kind)
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
                        name, str(mv.version), tuple(aliases.get(str(mv.version), [])), metrics, mv.run_id
                    )
                )
        return sorted(out, key=lambda v: int(v.version), reverse=True)
