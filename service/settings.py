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
    catalog_poll_s: float = Field(
        default=2.0, ge=0, description="Seconds between checks of the catalog file for a change; 0: never (admin only)."
    )
    decision_ttl_days: float = Field(
        default=7.0, gt=0, le=90, description="Days a decision is remembered for feedback (its record in Redis)."
    )
    log_level: str = Field(default="info", description="uvicorn log level.")


class Settings(BaseModel):
    """Every concern's settings together, handed to ``create_app``; nothing below it reads the environment."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceSettings
    redis: RedisSettings
    offline: OfflineSettings
    mlflow: MlflowSettings
    events: EventStreamSettings
