"""``nba features ...``: read the feature contract, and copy the offline store's latest snapshots into Redis.

The commands print what the registry declares rather than a copy of it, so what an engineer reads here is
what training and serving use. Only ``features`` is imported: the other rooms depend on this one, not back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table

from features.console import abort, progress_bar, settings_from_env
from features.embedded import online_store_url
from features.errors import FeatureStoreError
from features.materialize import materialize, materialize_events, materialize_identities
from features.offline_store import OfflineStore
from features.online_store import OnlineStore
from features.quality import PSI_DRIFT, QualityReport, Reference, check, training_reference, write_metrics
from features.redis_client import connect
from features.registry import ENTITY_ID_PATTERN, Feature, FeatureView, Registry
from features.settings import OfflineSettings, RedisSettings

ENTITIES = ("customer", "agent")
BULK_TIMEOUT_S = 30.0
"""A batch write may take a while on a busy server; NBA_REDIS_TIMEOUT_MS is for requests, not for this."""
_ENTITY = click.option(
    "--entity",
    type=click.Choice(ENTITIES),
    default=None,
    help="Only this entity's features (all entities when left out).",
)


CHECK_FAILED = 3
"""``nba features check``'s exit code when a feature drifted or a view is too stale (1 is a usage or run error)."""
REFERENCE_LABELS = "churn_labels.parquet"
"""The label table whose point-in-time frame is the default drift reference: the churn model's training frame."""


@click.group("features")
def features() -> None:
    """Inspect the feature contract, materialize it into Redis, check its quality, erase a customer."""


def _out() -> Console:
    """Tables go to stdout (they are the command's data); built per call so a test runner's stdout is used."""
    return Console(highlight=False)


def _text(value: object) -> str:
    """A contract value as a person reads it; an absent one is a dash, not ``None``."""
    return "-" if value is None else str(value)


def _ttl(view: FeatureView) -> str:
    return "never expires" if view.ttl_days is None else f"{view.ttl_days:g} d"


def _views(registry: Registry, entity: str | None) -> list[FeatureView]:
    return [v for v in registry.views.values() if entity is None or v.entity == entity]


@features.command("list")
@_ENTITY
def list_features(entity: str | None) -> None:
    """Every declared feature: view, name, type, default, TTL, PII flag, owner and description."""
    registry = Registry.load()
    views = _views(registry, entity)
    out = _out()
    count = sum(len(v.features) for v in views)
    out.print(f"feature contract {registry.version}: {count} features in {len(views)} views")
    table = Table(show_lines=False)
    for column in ("view", "name"):
        table.add_column(column, no_wrap=True)
    for column in ("dtype", "default", "TTL", "PII", "owner", "derived from", "description"):
        table.add_column(column)
    for view in views:
        for feature in view.features:
            table.add_row(
                view.name,
                feature.name,
                feature.dtype,
                _text(feature.default),
                _ttl(view),
                "yes" if feature.pii else "no",
                view.owner,
                _derived(feature),
                feature.description,
            )
    out.print(table)


def _pairs(rows: dict[str, str]) -> Table:
    """A borderless two-column block (field, value) that wraps values, not field names, on a narrow terminal."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(no_wrap=True, style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def _derived(feature: Feature) -> str:
    """How a derived feature is computed at read time (``-`` for a stored one): ``days_until(contract_end_day)``."""
    return "-" if feature.derive is None else f"{feature.derive.kind}({feature.derive.feature})"


def _feature_rows(feature: Feature) -> dict[str, str]:
    return {
        "feature": feature.name,
        "dtype": feature.dtype,
        "default": _text(feature.default),
        "categories": ", ".join(feature.categories) if feature.categories else "-",
        "pii": "yes" if feature.pii else "no",
        "derived from": _derived(feature),
        "model input": "yes" if feature.model_input else "no (read and derived from, never scored)",
        "description": feature.description,
        "reason": feature.reason,
        "reason (negative)": _text(feature.reason_negative),
    }


def _view_rows(view: FeatureView) -> dict[str, str]:
    return {
        "view": view.name,
        "entity": view.entity,
        "TTL": _ttl(view),
        "owner": view.owner,
        "description": view.description,
    }


@features.command("describe")
@click.argument("name")
def describe(name: str) -> None:
    """One feature (all its fields and its view's) or, when NAME is a view, the view and its features."""
    registry = Registry.load()
    by_feature = {f.name: (v, f) for v in registry.views.values() for f in v.features}
    out = _out()
    if name in registry.views:
        view = registry.views[name]
        out.print(_pairs({**_view_rows(view), "features": str(len(view.features))}))
        for feature in view.features:
            out.print()
            out.print(_pairs(_feature_rows(feature)))
    elif name in by_feature:
        view, feature = by_feature[name]
        of_view = {("" if k == "view" else "view ") + k: v for k, v in _view_rows(view).items()}
        out.print(_pairs(_feature_rows(feature) | of_view))
    else:
        close = difflib.get_close_matches(name, [*registry.views, *by_feature], n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "see `nba features list`"
        abort(f"no feature or view named {name!r} in the feature contract: {hint}")


def _parse_since(text: str | None) -> datetime | None:
    """``--since`` as an aware datetime; a date or a time without an offset is UTC, like the snapshots."""
    if text is None:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        abort(f"--since: {text!r} is not an ISO-8601 date or time (e.g. 2026-11-01 or 2026-11-01T06:00:00Z)")
    return since if since.tzinfo is not None else since.replace(tzinfo=UTC)


async def _materialize_all(
    url: str,
    redis_settings: RedisSettings,
    offline: OfflineStore,
    registry: Registry,
    entities: tuple[str, ...],
    since: datetime | None,
) -> list[tuple[str, int, float]]:
    """Materialize each entity in turn, with a bar each; returns (entity, written, seconds)."""
    client = connect(url, timeout_s=BULK_TIMEOUT_S, cluster=redis_settings.cluster)
    done: list[tuple[str, int, float]] = []
    store = OnlineStore(client, registry, namespace=redis_settings.namespace)
    try:
        for entity in entities:
            start = time.perf_counter()
            with progress_bar(Console(stderr=True, highlight=False), f"{entity}s") as bar:
                written = await materialize(offline, store, entity, since=since, progress=bar)
                bar(written, written)  # also when nothing was due, so the bar ends full rather than unknown
            done.append((entity, written, time.perf_counter() - start))
            if store.layout(entity).features:
                # Event state is recomputed whole from the events table: windows slide with the clock, so a
                # --since cut by snapshot time would leave yesterday's windows in place.
                start = time.perf_counter()
                with progress_bar(Console(stderr=True, highlight=False), f"{entity} event state") as bar:
                    written = await materialize_events(offline, store, entity, progress=bar)
                done.append((f"{entity} event state", written, time.perf_counter() - start))
            if entity == "customer":
                start = time.perf_counter()
                linked = await materialize_identities(offline, store)
                done.append(("customer identifiers", linked, time.perf_counter() - start))
    finally:
        await store.aclose()
        await client.aclose()
    return done


@features.command("materialize")
@click.option(
    "--since",
    "since_text",
    metavar="T",
    default=None,
    help="Only entities whose latest snapshot is at or after T (ISO-8601 date or time; UTC without an offset).",
)
@_ENTITY
def materialize_command(since_text: str | None, entity: str | None) -> None:
    """Copy each entity's latest snapshot and its event state from the offline store (NBA_DATA_DIR/world) into Redis.

    Redis is REDIS_URL or the embedded Valkey under NBA_DATA_DIR. Idempotent: a second run writes the same
    values again; with --since T only the snapshots observed since T are written, while the event state is
    always recomputed whole (windows slide with the clock).
    """
    since = _parse_since(since_text)
    offline_settings = settings_from_env(OfflineSettings)
    redis_settings = settings_from_env(RedisSettings)
    registry = Registry.load()
    offline = OfflineStore(offline_settings.world_dir, registry)
    entities = ENTITIES if entity is None else (entity,)
    try:
        with online_store_url(redis_settings, offline_settings) as url:
            results = asyncio.run(_materialize_all(url, redis_settings, offline, registry, entities, since))
    except FeatureStoreError as exc:
        abort(str(exc))
    for name, written, seconds in results:
        rate = written / seconds if seconds > 0 else 0.0
        click.echo(f"{name}: {written:,} entities written in {seconds:.2f} s ({rate:,.0f} entities/s)")


async def _check_online(
    url: str, redis_settings: RedisSettings, registry: Registry, reference: Reference | None, sample: int | None
) -> QualityReport:
    client = connect(url, timeout_s=BULK_TIMEOUT_S, cluster=redis_settings.cluster)
    store = OnlineStore(client, registry, namespace=redis_settings.namespace)
    try:
        return await check(store, registry.entity("customer"), reference, sample=sample)
    finally:
        await store.aclose()
        await client.aclose()


def _percent(rate: float) -> str:
    return f"{rate:.1%}"


def _print_report(report: QualityReport) -> None:
    out = _out()
    out.print(f"{report.sampled:,} customers sampled from the online store; reference: {report.reference or 'none'}")
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("feature", no_wrap=True)
    for column in ("missing", "stale", "out of range", "PSI"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for f in report.features:
        psi = "-" if f.psi is None else f"{f.psi:.3f}"
        table.add_row(f.name, _percent(f.missing), _percent(f.stale), _percent(f.out_of_range), psi, f.status)
    out.print(table)


@features.command("check")
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=1_000,
    show_default=True,
    help="Customers to read from the online store (the first a SCAN returns); 0 reads every one.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format."
)
@click.option(
    "--reference",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Label table (customer_id, ts) whose point-in-time frame is the training distribution; "
    f"default NBA_DATA_DIR/world/{REFERENCE_LABELS}, the churn model's.",
)
@click.option("--no-reference", is_flag=True, help="Skip drift (PSI): only missing, stale and out-of-range rates.")
@click.option(
    "--max-psi",
    type=click.FloatRange(min=0, min_open=True),
    default=PSI_DRIFT,
    show_default=True,
    help="Fail when a feature's PSI reaches this.",
)
@click.option(
    "--max-stale",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Fail when more than this share of the sampled customers have a view past its TTL.",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the figures as Prometheus gauges here (node_exporter textfile-collector format).",
)
def check_command(
    sample: int,
    fmt: str,
    reference: Path | None,
    no_reference: bool,
    max_psi: float,
    max_stale: float,
    metrics_file: Path | None,
) -> None:
    """Missing, stale and out-of-range rates of each customer feature in Redis, and its drift from training.

    Exits 3 when a feature's PSI reaches --max-psi or a view is stale for more than --max-stale of the sample.
    """
    if no_reference and reference is not None:
        abort("--reference and --no-reference exclude each other")
    offline_settings = settings_from_env(OfflineSettings)
    redis_settings = settings_from_env(RedisSettings)
    registry = Registry.load()
    offline = OfflineStore(offline_settings.world_dir, registry)
    try:
        baseline = None
        if not no_reference:
            baseline = training_reference(offline, reference or offline.root / REFERENCE_LABELS)
        with online_store_url(redis_settings, offline_settings) as url:
            report = asyncio.run(_check_online(url, redis_settings, registry, baseline, sample or None))
    except FeatureStoreError as exc:
        abort(str(exc))
    if metrics_file is not None:
        try:
            write_metrics(report, metrics_file)
        except OSError as exc:
            abort(f"--metrics-file: cannot write {metrics_file}: {exc}")
    problems = report.problems(max_psi=max_psi, max_stale=max_stale)
    if fmt == "json":
        click.echo(json.dumps({**dataclasses.asdict(report), "problems": problems}, indent=2))
    else:
        _print_report(report)
        for problem in problems:
            click.echo(f"FAIL {problem}")
    if problems:
        sys.exit(CHECK_FAILED)


async def _erase_online(url: str, redis_settings: RedisSettings, registry: Registry, customer_id: str) -> bool:
    client = connect(url, timeout_s=BULK_TIMEOUT_S, cluster=redis_settings.cluster)
    try:
        return await OnlineStore(client, registry, namespace=redis_settings.namespace).erase("customer", customer_id)
    finally:
        await client.aclose()


@features.command("erase")
@click.argument("customer_id")
def erase_command(customer_id: str) -> None:
    """Erase a customer (right to erasure): their online state, and offline from every later frame and run.

    The same as DELETE /v1/customers/CUSTOMER_ID. The id is added to NBA_DATA_DIR/world/erasures.parquet,
    which the offline store honours, before the online state is deleted, so a materialization cannot bring
    the customer back in between. Safe to repeat.
    """
    if not re.fullmatch(ENTITY_ID_PATTERN, customer_id):
        abort("CUSTOMER_ID: not a customer id (letters, digits and _.:@+- up to 64 characters)")
    offline_settings = settings_from_env(OfflineSettings)
    redis_settings = settings_from_env(RedisSettings)
    registry = Registry.load()
    offline = OfflineStore(offline_settings.world_dir, registry)
    try:
        recorded = offline.erasures.record("customer", customer_id)
        with online_store_url(redis_settings, offline_settings) as url:
            online = asyncio.run(_erase_online(url, redis_settings, registry, customer_id))
    except FeatureStoreError as exc:
        abort(str(exc))
    click.echo(f"offline: {'added to' if recorded else 'already in'} the erasure ledger {offline.erasures.path}")
    click.echo(f"online: {'state deleted' if online else 'nothing was stored'}")
