"""Offline to online: copy each entity's latest snapshot into Redis.

Idempotent: writing the same snapshot twice leaves the same hashes. Rows go in pipelined batches so
throughput is bounded by Redis, not by round trips.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from features.offline_store import TIMESTAMP_COLUMN, OfflineStore
from features.online_store import OnlineStore


async def materialize(
    offline: OfflineStore,
    online: OnlineStore,
    entity: str,
    *,
    as_of: datetime | None = None,
    since: datetime | None = None,
    batch_size: int = 2_000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write every ``entity``'s latest snapshot (at or before ``as_of``); returns how many.

    ``since`` limits the copy to entities whose latest snapshot is at or after it (see
    :meth:`OfflineStore.latest`), so a nightly run sends only what changed. ``progress(done, total)`` is
    called after each batch, for a progress bar.
    """
    table = offline.latest(entity, as_of, since=since)
    total = table.num_rows
    done = 0
    for batch in table.to_batches(max_chunksize=batch_size):
        rows = batch.to_pylist()
        stamps = [row.pop(TIMESTAMP_COLUMN).timestamp() for row in rows]
        done += await online.write(entity, rows, observed_at=stamps)
        if progress is not None:
            progress(done, total)
    return done
