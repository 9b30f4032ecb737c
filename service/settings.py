"""The service's settings: one object, built from the environment once and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features import EventStreamSettings, OfflineSettings, RedisSettings
from service.decision_records import DEFAULT_TTL_DAYS, RETENTION_HORIZON_DAYS
from service.exploration import Exploration
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
        default=DEFAULT_TTL_DAYS,
        gt=0,
        le=90,
        description="Days a decision is remembered for feedback (its record in Redis): past the churn horizon "
        f"({RETENTION_HORIZON_DAYS} days), so a recommend's `retained` answer can still arrive.",
    )
    log_level: str = Field(default="info", description="uvicorn log level.")
    log_format: Literal["json", "text"] = Field(
        default="json", description="Log records as one JSON object per line, or as uvicorn's text lines."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1_024, description="Largest request body any route takes (413 beyond it)."
    )
    model_poll_s: float = Field(
        default=5.0,
        ge=0,
        description="How often the champion aliases are looked up in MLflow, to swap in a promoted version; 0: never.",
    )

    decision_log_max_len: int = Field(
        default=100_000,
        ge=0,
        description="Decisions each decision-log stream keeps at most (about), for the shadow worker; 0: no log.",
    )
    shadow_results_max_len: int = Field(
        default=1_000_000,
        ge=1_000,
        description="Shadow results each endpoint keeps at most (about): a recommend result is ~0.3 KB, an assign "
        "one ~2 KB with 100 agents. A result must outlive its decision's retention answer (30 days) to be reported.",
    )
    decision_log_retention_days: float = Field(
        default=30.0,
        gt=0,
        le=3650,
        description="Days a decision stays in the decision log at most (about), whatever its cap.",
    )
    explore_recommend: str = Field(
        default="off",
        description="Exploration of recommend's first action: off, epsilon:E or softmax:T (service/exploration.py).",
    )
    explore_assign: str = Field(
        default="off", description="Exploration of assign's first agent: off, epsilon:E or softmax:T."
    )
    explore_among: int = Field(
        default=3, ge=2, le=50, description="How many of the champion's best candidates exploration draws among."
    )

    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes (uvicorn workers) sharing the port; each loads the models and opens its own "
        "Redis connection. About one per core: a request is CPU-bound Python.",
    )

    @field_validator("explore_recommend", "explore_assign")
    @classmethod
    def _exploration(cls, value: str) -> str:
        Exploration.parse(value, among=2)  # the ValueError names what is expected; pydantic names the field
        return value

    def exploration(self, endpoint: str) -> Exploration:
        """The exploration configured for ``endpoint`` (recommend or assign)."""
        return Exploration.parse(getattr(self, f"explore_{endpoint}"), among=self.explore_among)


class AuthSettings(BaseSettings):
    """Who may call the API: the keys file and the rate each key may send at."""

    model_config = SettingsConfigDict(env_prefix="NBA_", extra="forbid")

    keys_file: Path | None = Field(
        default=None, description="The API keys file (SHA-256 digests only); NBA_DATA_DIR/keys.json by default."
    )
    rate_limit: float = Field(
        default=1_000.0,
        ge=0,
        description="Requests per second each key may make, per service process (twice that at once); 0: no limit.",
    )

    def resolved_keys_file(self, data_dir: Path) -> Path:
        """The keys file in force, ``keys.json`` under ``data_dir`` by default."""
        return self.keys_file if self.keys_file is not None else data_dir / "keys.json"


class Settings(BaseModel):
    """Every concern's settings together, handed to ``create_app``; nothing below it reads the environment."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceSettings
    auth: AuthSettings
    redis: RedisSettings
    offline: OfflineSettings
    mlflow: MlflowSettings
    events: EventStreamSettings
