"""``nba models list|promote|rollback``: the registered versions and the ``champion`` alias the service serves."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.table import Table

from features import OfflineSettings
from features.console import settings_from_env
from training.console import abort
from training.errors import TrainingError
from training.settings import MlflowSettings
from training.tracking import CHALLENGER, CHAMPION, ChampionMove, ModelRegistry

# (metric logged by training, column heading, format)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("roc_auc", "ROC-AUC", "{:.3f}"),
    ("pr_auc", "PR-AUC", "{:.3f}"),
    ("ece", "ECE", "{:.4f}"),
    ("lift_top_decile", "lift@10%", "{:.2f}"),
    ("rows", "test rows", "{:,.0f}"),
)
SERVICE_HINT = (
    "running services put it in force within NBA_MODEL_POLL_S seconds (5 by default), no restart; see README, Models"
)


@contextmanager
def _registry() -> Iterator[ModelRegistry]:
    """The project's registry; any training error inside the block ends the command with one line."""
    try:
        yield ModelRegistry(settings_from_env(MlflowSettings), settings_from_env(OfflineSettings).data_dir)
    except TrainingError as exc:
        abort(str(exc))


def _metric(metrics: dict[str, float], key: str, fmt: str) -> str:
    value = metrics.get(key)
    return "-" if value is None or math.isnan(value) else fmt.format(value)


@click.group("models")
def models() -> None:
    """Registered model versions and their aliases (champion is served, challenger runs in shadow)."""


@models.command("list")
@click.argument("name", required=False)
def list_models(name: str | None) -> None:
    """Every version of every registered model (or of NAME: nba-churn, or just churn) with its test metrics."""
    with _registry() as registry:
        names = [registry.resolve(name)] if name else registry.registered_names()
        if not names:
            abort(f"no registered models in {registry.tracking_uri}: train one with nba train churn")
        table = Table(show_edge=False, highlight=False)
        for heading in ("model", "version", "aliases", *(c[1] for c in COLUMNS)):
            table.add_column(heading, justify="left" if heading in ("model", "aliases") else "right")
        footer = []
        for model in names:
            for v in registry.versions_of(model):
                metrics = dict(v.metrics)
                table.add_row(model, v.version, ", ".join(v.aliases), *(_metric(metrics, k, f) for k, _, f in COLUMNS))
            history = registry.champion_history(model)
            if history:
                footer.append(f"{model}: rollback would make version {history[-1]} {CHAMPION}")
    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: rich would wrap the table at 80 columns
        console = Console(highlight=False, width=200)
    console.print(table)
    for line in footer:
        console.print(line)


def _say(move: ChampionMove) -> None:
    if move.previous == move.version:
        click.echo(f"{move.name}: version {move.version} already is {CHAMPION}")
        return
    was = f" (was version {move.previous})" if move.previous else ""
    click.echo(f"{move.name}: {CHAMPION} -> version {move.version}{was}")
    if move.challenger_cleared:
        click.echo(f"{move.name}: version {move.version} is no longer {CHALLENGER}")
    click.echo(SERVICE_HINT)


@models.command("promote")
@click.argument("name")
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=None,
    help=f"Version to promote; the {CHALLENGER} if unset.",
)
@click.option(
    "--from",
    "from_alias",
    type=click.Choice([CHALLENGER]),
    default=None,
    help=f"Promote the version this alias names (the {CHALLENGER}: what the shadow report judged); not with --version.",
)
def promote(name: str, version: int | None, from_alias: str | None) -> None:
    """Point NAME's champion alias at a version (the challenger by default), remembering the one it replaces."""
    if version is not None and from_alias is not None:
        raise click.UsageError("give --version or --from, not both")
    with _registry() as registry:
        move = registry.promote(name, None if version is None else str(version))
    _say(move)


@models.command("rollback")
@click.argument("name")
def rollback(name: str) -> None:
    """Point NAME's champion alias back at the version that held it before.

    Each rollback goes one step further back through the recorded champions; it never returns to the
    version it left (promote it again for that).
    """
    with _registry() as registry:
        move = registry.rollback(name)
    _say(move)
