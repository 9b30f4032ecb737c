"""``nba events ...``: feed events through the Redis Stream, and run the consumer that applies and archives them.

``consume`` is a long-running worker (one per process; run several with different ``--consumer`` names to
share the load); ``publish`` appends a file of events for a producer that has no Redis client of its own,
a backfill, or a test. See :mod:`features.event_stream` for what the consumer guarantees.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import click

from features.cli import BULK_TIMEOUT_S
from features.console import abort, settings_from_env
from features.embedded import online_store_url
from features.errors import FeatureStoreError, OnlineStoreUnavailable
from features.event_archive import EventArchive, parts_dir
from features.event_stream import DEFAULT_GROUP, ConsumeStats, EventPublisher, StreamConsumer, stream_key
from features.online_store import OnlineStore
from features.redis_client import connect
from features.registry import Registry
from features.settings import EventStreamSettings, OfflineSettings, RedisSettings

REPORT_EVERY_S = 5.0
PUBLISH_CHUNK = 1_000


@click.group("events")
def events() -> None:
    """Publish events to the stream and consume them into the online store and the offline store."""


class _Progress:
    """A line on stderr every few seconds while events flow: totals so far and the rate since the last line."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self._last_time = self.started
        self._last_entries = 0

    def __call__(self, total: ConsumeStats) -> None:
        now = time.perf_counter()
        if now - self._last_time < REPORT_EVERY_S or total.entries == self._last_entries:
            return
        rate = (total.entries - self._last_entries) / (now - self._last_time)
        click.echo(f"  {_counts(total)} ({rate:,.0f} events/s)", err=True)
        self._last_time, self._last_entries = now, total.entries


def _counts(total: ConsumeStats) -> str:
    return (
        f"{total.entries:,} events: {total.applied:,} applied, {total.duplicates:,} duplicates, "
        f"{total.too_old:,} too old, {total.erased:,} of erased customers, {total.dead:,} dead letters"
    )


def _outage(exc: OnlineStoreUnavailable, pause: float) -> None:
    click.echo(f"  {exc}; nothing acknowledged, retrying in {pause:g} s", err=True)


@dataclass(frozen=True)
class _Options:
    """``nba events consume``'s options for :class:`StreamConsumer`."""

    group: str
    consumer: str
    batch: int
    block_ms: int
    claim_idle_ms: int


async def _consume(
    url: str,
    redis_settings: RedisSettings,
    archive: EventArchive,
    options: _Options,
    max_events: int | None,
    progress: _Progress,
) -> ConsumeStats:
    """Run the consumer until SIGINT/SIGTERM or ``max_events``; the batch in hand is finished either way."""
    client = connect(url, timeout_s=BULK_TIMEOUT_S, cluster=redis_settings.cluster)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = OnlineStore(client, archive.registry, namespace=redis_settings.namespace)
    try:
        consumer = StreamConsumer(
            client,
            store,
            archive,
            archive.registry,
            namespace=redis_settings.namespace,
            group=options.group,
            consumer=options.consumer,
            batch=options.batch,
            block_ms=options.block_ms,
            claim_idle_ms=options.claim_idle_ms,
        )
        return await consumer.run(stop, max_entries=max_events, report=progress, on_outage=_outage)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await store.aclose()
        await client.aclose()


@events.command("consume")
@click.option("--group", default=DEFAULT_GROUP, show_default=True, envvar="NBA_EVENTS_GROUP", help="Consumer group.")
@click.option(
    "--consumer",
    default=socket.gethostname,
    show_default="this host's name",
    envvar="NBA_EVENTS_CONSUMER",
    help="This worker's name in the group; keep it across restarts so it picks up its own unacknowledged events.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=1_000,
    show_default=True,
    envvar="NBA_EVENTS_BATCH",
    help="Events read, applied and archived together (one parquet part per batch).",
)
@click.option(
    "--block-ms",
    type=click.IntRange(1, 10_000),
    default=1_000,
    show_default=True,
    envvar="NBA_EVENTS_BLOCK_MS",
    help="How long a read waits for new events; also the longest a stop waits.",
)
@click.option(
    "--claim-idle-ms",
    type=click.IntRange(1_000),
    default=60_000,
    show_default=True,
    envvar="NBA_EVENTS_CLAIM_IDLE_MS",
    help="Take over events another consumer read but left unacknowledged this long (it likely died).",
)
@click.option(
    "--max-events",
    type=click.IntRange(1),
    default=None,
    help="Stop once this many events were handled (a backfill, a test); runs until SIGINT/SIGTERM otherwise.",
)
def consume(group: str, consumer: str, batch: int, block_ms: int, claim_idle_ms: int, max_events: int | None) -> None:
    """Apply the events of the stream {NBA_REDIS_NAMESPACE}:events to Redis and archive them under NBA_DATA_DIR/world.

    Invalid events go to {namespace}:events:dead with the field named. An event is acknowledged only once it
    is applied and archived, so stopping or killing the worker loses nothing and counts nothing twice.
    """
    redis_settings = settings_from_env(RedisSettings)
    offline_settings = settings_from_env(OfflineSettings)
    archive = EventArchive(offline_settings.world_dir, Registry.load())
    options = _Options(group, consumer, batch, block_ms, claim_idle_ms)
    progress = _Progress()
    try:
        with online_store_url(redis_settings, offline_settings) as url:
            click.echo(
                f"consuming {stream_key(redis_settings.namespace)} as {consumer!r} in group {group!r} from {url}; "
                f"archiving to {parts_dir(archive.root, 'customer')}/",
                err=True,
            )
            total = asyncio.run(_consume(url, redis_settings, archive, options, max_events, progress))
    except FeatureStoreError as exc:
        abort(str(exc))
    seconds = time.perf_counter() - progress.started
    click.echo(f"{_counts(total)} in {seconds:.2f} s ({total.entries / seconds:,.0f} events/s)")


@events.command("publish")
@click.argument("file", type=click.File("rb"))
def publish(file: BinaryIO) -> None:
    """Append each line of FILE (JSON Lines, one event per line; - for stdin) to the events stream.

    Lines are not validated here: the consumer does, and sends an invalid one to the dead-letter stream with
    the field named, exactly as it would a bad event from any other producer.
    """
    redis_settings = settings_from_env(RedisSettings)
    offline_settings = settings_from_env(OfflineSettings)
    stream_settings = settings_from_env(EventStreamSettings)
    registry = Registry.load()  # a bad contract stops here, before the online store is started or reached
    lines = [line.strip() for line in file]
    payloads = [line for line in lines if line]
    try:
        with online_store_url(redis_settings, offline_settings) as url:
            asyncio.run(_publish(url, registry, redis_settings, stream_settings, payloads))
    except FeatureStoreError as exc:
        abort(str(exc))
    name = Path(file.name).name if file.name != "<stdin>" else "stdin"
    click.echo(f"published {len(payloads):,} events from {name} to {stream_key(redis_settings.namespace)}")


async def _publish(
    url: str,
    registry: Registry,
    redis_settings: RedisSettings,
    stream_settings: EventStreamSettings,
    payloads: list[bytes],
) -> None:
    client = connect(url, timeout_s=BULK_TIMEOUT_S, cluster=redis_settings.cluster)
    try:
        publisher = EventPublisher(
            client, registry, namespace=redis_settings.namespace, max_len=stream_settings.stream_max_len
        )
        for start in range(0, len(payloads), PUBLISH_CHUNK):
            await publisher.publish(payloads[start : start + PUBLISH_CHUNK])
    finally:
        await client.aclose()
