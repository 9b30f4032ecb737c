"""Where the online and offline stores live, read from the environment once.

``REDIS_URL`` (or ``NBA_REDIS_URL``) points at any Redis or Valkey; without it the project starts its
own embedded Valkey server with its data under ``NBA_DATA_DIR``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RedisSettings(BaseSettings):
    """The online store's connection."""

    model_config = SettingsConfigDict(env_prefix="NBA_REDIS_", extra="forbid", populate_by_name=True)

    url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "NBA_REDIS_URL", "url"),
        description="redis:// or unix:// URL of the online store; unset starts the embedded Valkey server.",
    )
    namespace: str = Field(default="nba", pattern=r"^[A-Za-z0-9_-]+$", description="Prefix of every key we write.")
    timeout_ms: int = Field(
        default=100, gt=0, le=60_000, description="Socket timeout of a read; past it the service degrades."
    )


class OfflineSettings(BaseSettings):
    """Where the offline store's parquet tables and the embedded server's files live."""

    model_config = SettingsConfigDict(env_prefix="NBA_", extra="forbid", populate_by_name=True)

    data_dir: Path = Field(default=Path(".nba"), description="Root of everything the project keeps locally.")

    @property
    def world_dir(self) -> Path:
        """The offline store's tables (the demo world, or your own in the same layout)."""
        return self.data_dir / "world"

    @property
    def valkey_dir(self) -> Path:
        """The embedded Valkey server's data and socket."""
        return self.data_dir / "valkey"
