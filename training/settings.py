"""Where models are tracked and registered: a local sqlite MLflow store unless ``MLFLOW_TRACKING_URI``."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlflowSettings(BaseSettings):
    """The MLflow tracking store and model registry."""

    model_config = SettingsConfigDict(env_prefix="NBA_MLFLOW_", extra="forbid", populate_by_name=True)

    tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "NBA_MLFLOW_TRACKING_URI", "tracking_uri"),
        description="An MLflow tracking URI; unset means sqlite:///<data dir>/mlflow.db.",
    )
    experiment: str = Field(default="nba-copilot", description="Experiment that training runs are logged to.")
    model_prefix: str = Field(
        default="nba", pattern=r"^[A-Za-z0-9_-]+$", description="Registered models are named PREFIX-KIND."
    )

    def resolved_uri(self, data_dir: Path) -> str:
        """The tracking URI in force, the local sqlite store under ``data_dir`` by default."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"
