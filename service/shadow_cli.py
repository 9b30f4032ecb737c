"""``nba shadow run`` (the worker of :mod:`service.shadow`) and ``nba shadow report`` (:mod:`service.shadow_report`):
the commands of the ``shadow`` group (:mod:`training.shadow_cli`) that need the service's decision log."""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from features import FeatureStoreError, OfflineSettings, OnlineStore, RedisSettings, Registry, online_store_url
from features.cli import BULK_TIMEOUT_S
from features.decision_log_keys import KINDS, Kind
from features.online_store import OnlineStoreUnavailable, map_errors
from features.redis_client import connect
from features.stream_group import text
from service.catalog import default_path
from service.decision_log import FIELD
from service.decision_records import DecisionRecords
from service.model_holder import ModelHolder
from service.settings import ServiceSettings
from service.shadow import GROUP, ShadowCounts, ShadowResult, ShadowWorker, decode_result, results_key
from service.shadow_render import as_html, as_json, plots, tables
from service.shadow_report import MIN_DIFFERENCE, EndpointReport, endpoint_report, outcome_of
from training import CHALLENGER, MlflowSettings, ModelRegistry, TrainingError
from training.cli import settings_from_env
from training.console import abort

_PAGE = 10_000


def _line(kind: str, total: ShadowCounts, started: float) -> str:
    seconds = max(time.perf_counter() - started, 1e-9)
    why = "".join(f"; {n:,} {reason}" for reason, n in sorted(total.why_skipped.items()))
    return (
        f"{kind}: {total.entries:,} decisions read, {total.scored:,} scored by the challenger, "
        f"{total.skipped:,} skipped{why} ({total.entries / seconds:,.0f} decisions/s)"
    )


async def _run(
    url: str, registry: Registry, kinds: tuple[Kind, ...], consumer: str, batch: int, max_decisions: int | None
) -> dict[Kind, ShadowCounts]:
    redis_settings = settings_from_env(RedisSettings)
    offline = settings_from_env(OfflineSettings)
    service = settings_from_env(ServiceSettings)
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
                results_max_len=service.shadow_results_max_len,
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


@click.command("run")
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
    registry = Registry.load()  # a bad contract stops here, before the online store is started or reached
    started = time.perf_counter()
    try:
        with online_store_url(redis_settings, offline) as url:
            click.echo(
                f"shadow worker {consumer!r} in group {GROUP!r} on {url}: replaying {', '.join(kinds)}", err=True
            )
            totals = asyncio.run(_run(url, registry, kinds, consumer, batch, max_decisions))
    except FeatureStoreError as exc:
        abort(str(exc))
    for name, total in totals.items():
        click.echo(_line(name, total, started))


def _since(text: str | None) -> float:
    """``--since`` as epoch seconds: an ISO 8601 time, or a span back from now (``90m``, ``24h``, ``7d``)."""
    if text is None:
        return 0.0
    units = {"m": 60, "h": 3_600, "d": 86_400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"expected an ISO 8601 time or a span such as 24h or 7d, got {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def _gather(
    url: str, since: float, kinds: tuple[Kind, ...]
) -> tuple[dict[Kind, list[ShadowResult]], dict[str, dict[str, dict[str, Any]]]]:
    """Every result since ``since`` (the newest per decision) and the feedback recorded for those decisions."""
    redis_settings = settings_from_env(RedisSettings)
    service = settings_from_env(ServiceSettings)
    client = connect(url, timeout_s=BULK_TIMEOUT_S, cluster=redis_settings.cluster)
    store = OnlineStore(client, Registry.load(), namespace=redis_settings.namespace)
    try:
        results: dict[Kind, list[ShadowResult]] = {}
        for kind in kinds:
            by_id: dict[str, ShadowResult] = {}
            start = f"{int(since * 1000)}-0"
            while True:
                with map_errors():
                    reply = await client.xrange(results_key(redis_settings.namespace, kind), min=start, count=_PAGE)
                page: list[Any] = list(reply or [])
                for _, fields_ in page:
                    result = decode_result(fields_[FIELD])
                    by_id[result.decision_id] = result  # a decision replayed twice counts once: the newest stands
                if len(page) < _PAGE:
                    break
                start = "(" + text(page[-1][0])
            results[kind] = list(by_id.values())
        records = DecisionRecords(store, ttl_days=service.decision_ttl_days)
        ids = [r.decision_id for rows in results.values() for r in rows]
        return results, await records.feedback_of(ids)
    finally:
        await store.aclose()
        await client.aclose()


@click.command("report")
@click.option(
    "--since", default=None, help="Only decisions from this time (ISO 8601) or span back (24h, 7d); all by default."
)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the report (report.json, report.html, plots); NBA_DATA_DIR/shadow-reports/<time> if unset.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap intervals.")
@click.option(
    "--min-difference-recommend",
    type=click.FloatRange(min=0, min_open=True),
    default=MIN_DIFFERENCE["recommend"],
    show_default=True,
    help="The smallest difference in value per recommend worth a change (money): within it, keep the champion.",
)
@click.option(
    "--min-difference-assign",
    type=click.FloatRange(min=0, min_open=True),
    default=MIN_DIFFERENCE["assign"],
    show_default=True,
    help="The smallest difference in first-contact resolution rate per assign worth a change (0.005: half a point).",
)
def report(
    since: str | None,
    fmt: str,
    out: Path | None,
    seed: int,
    min_difference_recommend: float,
    min_difference_assign: float,
) -> None:
    """Champion against challenger on the decisions the shadow worker replayed, with a promote / keep / collect-more
    recommendation per endpoint (the rule is in service/shadow_report.py and printed with it). Logged to MLflow."""
    start = _since(since)
    redis_settings = settings_from_env(RedisSettings)
    offline = settings_from_env(OfflineSettings)
    try:
        with online_store_url(redis_settings, offline) as url:
            results, feedback = asyncio.run(_gather(url, start, KINDS))
    except FeatureStoreError as exc:
        abort(str(exc))
    margins: dict[Kind, float] = {"recommend": min_difference_recommend, "assign": min_difference_assign}
    reports = [
        endpoint_report(
            kind,
            rows,
            {r.decision_id: outcome_of(r, feedback.get(r.decision_id, {})) for r in rows},
            seed=seed,
            min_difference=margins[kind],
        )
        for kind, rows in results.items()
    ]
    folder = out or offline.data_dir / "shadow-reports" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    pictures = plots(reports, results, folder)
    (folder / "report.json").write_text(as_json(reports))
    (folder / "report.html").write_text(as_html(reports, pictures))
    if fmt == "json":
        click.echo(as_json(reports))
    elif fmt == "html":
        click.echo(as_html(reports, pictures))
    else:
        Console(highlight=False, width=150).print(tables(reports))
    try:
        models = ModelRegistry(settings_from_env(MlflowSettings), offline.data_dir)
        metrics = _flat(reports)
        run_id = models.log_evaluation(
            metrics=metrics,
            params={"since": since or "all", "seed": seed, **{f"min_difference_{k}": v for k, v in margins.items()}},
            artifacts=folder,
            run_name="shadow-report",
            artifact_path="shadow-report",
        )
        click.echo(f"report files in {folder}; logged to MLflow ({models.tracking_uri}), run {run_id}", err=True)
    except TrainingError as exc:
        click.echo(f"report files in {folder}; not logged to MLflow: {exc}", err=True)


def _flat(reports: list[EndpointReport]) -> dict[str, float]:
    """The report's figures as MLflow metrics (``<endpoint>.<figure>``); what is unknown is left out."""
    out: dict[str, float] = {}
    for r in reports:
        s = r.similarity
        figures = {
            "decisions": s.decisions,
            "outcomes": r.outcomes,
            "awaiting": r.awaiting,
            "top_agreement": s.top_agreement,
            "overlap_at_k": s.overlap_at_k,
            "rank_correlation": s.rank_correlation,
            "logged_value": r.logged_value,
            "exploration_cost": r.exploration_cost,
            "acceptance_value": r.acceptance_value,
        }
        for policy, estimates in (("champion", r.champion), ("challenger", r.challenger)):
            figures |= {f"{policy}.{e.estimator}": e.value for e in estimates}
        figures |= {f"difference.{d.estimator}": d.value for d in r.difference}
        out |= {f"{r.kind}.{k}": float(v) for k, v in figures.items() if v is not None and math.isfinite(float(v))}
    return out
