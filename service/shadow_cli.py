"""``nba shadow``: the challenger judged on the champion's traffic (``run``: the worker of :mod:`service.shadow`)."""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import click

from features import FeatureStoreError, OfflineSettings, RedisSettings, Registry, online_store_url
from features.cli import BULK_TIMEOUT_S
from features.online_store import OnlineStoreUnavailable
from features.redis_client import connect
from service.catalog import default_path
from service.decision_log import KINDS, Kind
from service.model_holder import ModelHolder
from service.settings import ServiceSettings
from service.shadow import GROUP, ShadowCounts, ShadowWorker
from training import CHALLENGER, MlflowSettings, ModelRegistry
from training.cli import settings_from_env
from training.console import abort

RESULTS_MAX_LEN = 1_000_000
"""Results kept per endpoint (about): a result is ~0.3 KB for recommend, ~2 KB for assign with 100 agents."""


@click.group("shadow")
def shadow() -> None:
    """Shadow mode: the challenger scored on the champion's logged decisions, and what it is worth."""


def _line(kind: str, total: ShadowCounts, started: float) -> str:
    seconds = max(time.perf_counter() - started, 1e-9)
    why = "".join(f"; {n:,} {reason}" for reason, n in sorted(total.why_skipped.items()))
    return (
        f"{kind}: {total.entries:,} decisions read, {total.scored:,} scored by the challenger, "
        f"{total.skipped:,} skipped{why} ({total.entries / seconds:,.0f} decisions/s)"
    )


async def _run(
    url: str, kinds: tuple[Kind, ...], consumer: str, batch: int, max_decisions: int | None
) -> dict[Kind, ShadowCounts]:
    redis_settings = settings_from_env(RedisSettings)
    offline = settings_from_env(OfflineSettings)
    service = settings_from_env(ServiceSettings)
    registry = Registry.load()
    challenger = ModelHolder(
        ModelRegistry(settings_from_env(MlflowSettings), offline.data_dir), registry.version, alias=CHALLENGER
    )
    await asyncio.to_thread(challenger.load)
    client = connect(url, timeout_s=BULK_TIMEOUT_S, cluster=redis_settings.cluster)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.perf_counter()

    def report(kind: Kind) -> object:
        def show(total: ShadowCounts) -> None:
            if total.entries:
                click.echo(_line(kind, total, started), err=True)

        return show

    def outage(exc: OnlineStoreUnavailable, pause: float) -> None:
        click.echo(f"  {exc}; nothing acknowledged, retrying in {pause:g} s", err=True)

    try:
        workers = [
            ShadowWorker(
                client,
                kind=kind,
                namespace=redis_settings.namespace,
                registry=registry,
                catalog_path=service.catalog_path or default_path(),
                challenger=challenger,
                consumer=consumer,
                results_max_len=RESULTS_MAX_LEN,
                batch=batch,
            )
            for kind in kinds
        ]
        totals = await asyncio.gather(
            *(w.run(stop, max_entries=max_decisions, report=report(w.kind), on_outage=outage) for w in workers)  # type: ignore[arg-type]
        )
        return dict(zip(kinds, totals, strict=True))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await client.aclose()


@shadow.command("run")
@click.option(
    "--kind",
    type=click.Choice(["recommend", "assign", "both"]),
    default="both",
    show_default=True,
    help="Which endpoint's decisions to replay.",
)
@click.option(
    "--consumer",
    default=socket.gethostname,
    show_default="this host's name",
    envvar="NBA_SHADOW_CONSUMER",
    help="This worker's name in the group; keep it across restarts so it picks up its own unacknowledged decisions.",
)
@click.option("--batch", type=click.IntRange(1, 5_000), default=500, show_default=True, help="Decisions per batch.")
@click.option(
    "--max-decisions",
    type=click.IntRange(1),
    default=None,
    help="Stop once this many decisions of each kind were read (a backfill, a test); until SIGINT/SIGTERM otherwise.",
)
def run(kind: str, consumer: str, batch: int, max_decisions: int | None) -> None:
    """Replay each logged decision with the challenger models (each model's challenger alias) and store its choice.

    Reads {NBA_REDIS_NAMESPACE}:{decision-log}:recommend and :assign as a member of group nba-shadow; writes to
    the same keys with :shadow appended. Stopped or killed at any point it loses nothing and counts nothing twice.
    """
    kinds: tuple[Kind, ...] = KINDS if kind == "both" else (kind,)  # type: ignore[assignment]
    redis_settings = settings_from_env(RedisSettings)
    offline = settings_from_env(OfflineSettings)
    started = time.perf_counter()
    try:
        with online_store_url(redis_settings, offline) as url:
            click.echo(
                f"shadow worker {consumer!r} in group {GROUP!r} on {url}: replaying {', '.join(kinds)}", err=True
            )
            totals = asyncio.run(_run(url, kinds, consumer, batch, max_decisions))
    except FeatureStoreError as exc:
        abort(str(exc))
    for name, total in totals.items():
        click.echo(_line(name, total, started))
