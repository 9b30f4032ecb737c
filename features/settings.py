"""Where the online and offline stores live, read from the environment once.

``REDIS_URL`` (or ``NBA_REDIS_URL``) points at any Redis or Valkey, or at one node of a Redis Cluster with
``NBA_REDIS_CLUSTER=true``; without it the project starts its own embedded Valkey server with its data under
``NBA_DATA_DIR``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
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
    cluster: bool = Field(
        default=False,
        description=(
            "True when the URL is a node of a Redis Cluster: the client then follows the slot map and sends "
            "one pipelined round trip per shard, in parallel. Checked against the server at start-up."
        ),
    )

    @model_validator(mode="after")
    def _cluster_needs_a_tcp_url(self) -> RedisSettings:
        """A cluster is reached over TCP: the embedded server is a single node and redis-py has no unix:// cluster."""
        if self.cluster and (self.url is None or self.url.startswith("unix://")):
            raise ValueError(
                f"cluster=true (NBA_REDIS_CLUSTER) needs a redis:// or rediss:// REDIS_URL of a cluster node, "
                f"got url={self.url!r}"
            )
        return self


class EventStreamSettings(BaseSettings):
    """The stream ``POST /v1/events`` appends the events it applied to, and ``nba events consume`` reads."""

    model_config = SettingsConfigDict(env_prefix="NBA_EVENTS_", extra="forbid", populate_by_name=True)

    stream_max_len: int = Field(
        default=1_000_000,
        ge=1_000,
        description=(
            "Entries the stream keeps at most (approximately). The consumer trims what every group acknowledged, "
            "so this only bites when no consumer runs: then the oldest events, already applied online, are "
            "dropped before reaching the offline store, rather than Redis running out of memory."
        ),
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
