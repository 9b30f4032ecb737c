"""The catalog in force, and how a new one replaces it: when its file changes, or when an admin asks.

A reload loads and validates the whole file first, then swaps one reference, so a request sees the old catalog or
the new one, never a mix (a request takes the reference once and keeps it to the end). A file that fails validation
never replaces the running catalog: the failure is raised to the admin endpoint (422 naming the file, the action
and the field), logged (logger ``service.catalog_source``, an ERROR line) and counted
(``nba_catalog_reloads_total{outcome="failed"}``).

Watching is a poll of the file's modification time and size (one ``stat`` every ``NBA_CATALOG_POLL_S`` seconds,
a few microseconds), not inotify: it works the same on every platform and on mounted volumes (a Kubernetes
ConfigMap replaces the file by a symlink swap, which changes what ``stat`` sees). A change is loaded once the file
has held still from one poll to the next, so an editor writing it in place is not caught half way (a write slower
than the interval may still be; it is then refused, reported, and loaded when complete). Each worker
process polls for itself, so N workers reload within one interval of each other; the admin endpoint reloads the
worker that answers it (the others follow at their next poll, since the file changed for them too).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from features import Registry
from service.catalog import Catalog, default_path
from service.errors import CatalogError
from service.metrics import Metrics

log = logging.getLogger(__name__)


class CatalogSource:
    """The catalog in force (:attr:`current`), the file it came from, and the last reload's failure if any."""

    def __init__(self, registry: Registry, path: Path | None, metrics: Metrics) -> None:
        self._registry = registry
        self._metrics = metrics
        self.path = path if path is not None else default_path()
        self._stamp = self._stat()
        self._pending: tuple[int, int] | None = None
        self.current: Catalog = Catalog.load(registry, self.path)
        """The catalog requests use: read it once per request."""
        self.last_error: CatalogError | None = None
        """Why the newest version of the file was refused (None when the file in force is the newest)."""
        metrics.catalog_loaded(self.current.version)

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def reload(self) -> Catalog:
        """Load the file again and put it in force; raises :class:`CatalogError` (the running one stays)."""
        stamp = self._stat()  # before reading: a change during the read is seen by the next poll
        try:
            catalog = Catalog.load(self._registry, self.path)
        except CatalogError as exc:
            self._stamp = stamp
            self.last_error = exc
            self._metrics.catalog_reload("failed")
            log.error("catalog not reloaded, the running one (version %s) stays: %s", self.current.version, exc)
            raise
        self._stamp = stamp
        self.last_error = None
        previous, self.current = self.current, catalog
        self._metrics.catalog_reload("ok")
        self._metrics.catalog_loaded(catalog.version)
        log.info("catalog reloaded from %s: version %s -> %s", self.path, previous.version, catalog.version)
        return catalog

    def poll(self) -> bool:
        """Reload when the file changed since it was last loaded (or refused) and has held still since the previous
        poll (a file being written in place is not read half way); True when a new catalog is in force."""
        stamp = self._stat()
        if stamp == self._stamp or stamp != self._pending:
            self._pending = None if stamp == self._stamp else stamp
            return False
        self._pending = None
        try:
            self.reload()
        except CatalogError:
            return False  # reported by reload
        return True

    async def watch(self, interval_s: float) -> None:
        """Poll every ``interval_s`` seconds until cancelled (the app's lifespan runs it)."""
        while True:
            await asyncio.sleep(interval_s)
            self.poll()
