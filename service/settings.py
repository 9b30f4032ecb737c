"""The service's settings: one object, built from the environment once and passed in."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from features import EventStreamSettings, OfflineSettings, RedisSettings
from training import MlflowSettings


class ServiceSettings(BaseSettings):
    """How the API serves."""

    model_config = SettingsConfigDict(env_prefix="NBA_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="Interface the API listens on.")
    port: int = Field(default=8000, ge=1, le=65_535, description="Port the API listens on.")
    catalog_path: Path | None = Field(default=None, description="Action catalog YAML; the packaged one by default.")
    top_k: int = Field(default=5, ge=1, le=50, description="How many actions recommend returns at most.")
    log_level: str = Field(default="info", description="uvicorn log level.")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes (uvicorn workers) sharing the port; each loads the models and opens its own "
        "Redis connection. About one per core: a request is CPU-bound Python.",
    )


class Settings(BaseModel):
    """Every concern's settings together, handed to ``create_app``; nothing below it reads the environment."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceSettings
    redis: RedisSettings
    offline: OfflineSettings
    mlflow: MlflowSettings
    events: EventStreamSettings
