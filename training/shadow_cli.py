"""``nba shadow``: what a challenger policy is worth, estimated from decisions another policy made.

``nba shadow evaluate`` reads a logged file a data scientist brings (:mod:`training.logged_file`) and prints the
off-policy estimates of :mod:`training.off_policy`. The group is the home of every shadow-mode command: one that
needs the service (the decision log's worker, its report) is added to it where ``nba`` is assembled
(``service/cli.py``), since training never imports the service.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from features import OfflineSettings, Registry
from features.console import settings_from_env
from training.action_value import NO_ACTION
from training.bundle import ModelBundle, ModelKind
from training.console import Reporter, abort
from training.errors import OffPolicyError, TrainingError
from training.logged_file import LogColumns, LoggedFile, logged_decisions, policy_decisions
from training.off_policy import LEVEL, RESAMPLES, Estimate, LoggedDecisions, estimate
from training.score import ModelRef
from training.settings import MlflowSettings
from training.tracking import ModelRegistry

POLICY_KINDS: tuple[ModelKind, ...] = ("churn", "propensity")
"""The models the service's next-best-action policy ranks actions with; ``--model`` names one version of each."""


@click.group("shadow")
def shadow() -> None:
    """Judge a challenger before it serves: off-policy estimates from logged decisions."""


def _policy_models(
    refs: tuple[str, ...], registry: Registry, reporter: Reporter
) -> tuple[ModelBundle, ModelBundle, str]:
    """The churn and propensity versions ``refs`` name, each checked to be the contract's and action-aware, and
    the policy's name as the output states it (registered names and versions)."""
    parsed = [ModelRef.parse(ref) for ref in refs]
    if len(parsed) != len(POLICY_KINDS):
        raise OffPolicyError(
            f"--model: the next-best-action policy ranks actions with a churn and a propensity model; name one "
            f"version of each (--model churn@challenger --model propensity@challenger), got {len(parsed)}"
        )
    models = ModelRegistry(settings_from_env(MlflowSettings), settings_from_env(OfflineSettings).data_dir)
    found: dict[str, tuple[ModelBundle, str]] = {}
    for ref in parsed:
        with reporter.step(f"Loading {ref}"):
            bundle, name, version = models.load_version(ref.name, alias=ref.alias, version=ref.version)
        label = f"--model {ref} ({name} version {version})"
        if bundle.kind not in POLICY_KINDS:
            raise OffPolicyError(f"{label} is a {bundle.kind} model; the policy needs a churn and a propensity model")
        if bundle.kind in found:
            raise OffPolicyError(f"{label}: a second {bundle.kind} model (the first: {found[bundle.kind][1]})")
        if bundle.contract_version != registry.version:
            raise OffPolicyError(
                f"{label} was trained on feature contract {bundle.contract_version}, not this one "
                f"({registry.version}): it cannot read the file's context columns"
            )
        if bundle.kind == "churn" and NO_ACTION not in bundle.actions:
            raise OffPolicyError(f"{label} does not take the action as an input: retrain it (nba train churn)")
        found[bundle.kind] = (bundle, f"{name} version {version}")
    described = " and ".join(found[kind][1] for kind in POLICY_KINDS)
    return found["churn"][0], found["propensity"][0], f"the policy of {described}"


def estimates_table(estimates: list[Estimate], *, title: str) -> Table:
    """One row per estimator, as the terminal shows it."""
    table = Table(title=title, title_justify="left", show_edge=False, highlight=False)
    for heading in (
        "estimator",
        "value",
        f"{LEVEL:.0%} interval",
        "decisions",
        "effective\nsample size",
        "largest\nweight",
    ):
        table.add_column(heading, justify="left" if heading == "estimator" else "right", no_wrap=True)
    for e in estimates:
        table.add_row(
            e.estimator,
            _number(e.value),
            f"{_number(e.low)} – {_number(e.high)}",
            f"{e.decisions:,}",
            f"{e.effective_sample_size:,.1f}",
            f"{e.max_weight:,.2f}",
        )
    return table


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.1f}"


def _json_value(value: float | int | str) -> float | int | str | None:
    """JSON has no NaN: an estimate with nothing to rest on is null."""
    return None if isinstance(value, float) and math.isnan(value) else value


@shadow.command("evaluate")
@click.option(
    "--log", "log_path", type=click.Path(path_type=Path), required=True, help="The logged decisions (.csv or .parquet)."
)
@click.option("--action-column", required=True, help="The action the logging policy took.")
@click.option("--propensity-column", required=True, help="The probability with which it took it, in (0, 1].")
@click.option("--reward-column", required=True, help="The reward that followed (a number).")
@click.option(
    "--target-propensity-column",
    help="The target policy's probability of the logged action, in [0, 1], computed elsewhere (IPS and SNIPS).",
)
@click.option(
    "--model",
    "model_refs",
    multiple=True,
    metavar="NAME@ALIAS|NAME/VERSION",
    help="Instead of --target-propensity-column: the target is the service's policy of a churn and a propensity "
    "model, given twice (--model churn@challenger --model propensity@challenger), scored on the file's context "
    "columns (the customer's model inputs at each decision); adds the doubly robust estimate.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resamples.")
@click.option(
    "--resamples",
    type=click.IntRange(min=100),
    default=RESAMPLES,
    show_default=True,
    help="Bootstrap resamples behind each interval.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, JSON for programs.",
)
def evaluate(
    log_path: Path,
    action_column: str,
    propensity_column: str,
    reward_column: str,
    target_propensity_column: str | None,
    model_refs: tuple[str, ...],
    seed: int,
    resamples: int,
    fmt: str,
) -> None:
    """Estimate what a target policy would have earned per decision on a logged file: IPS, self-normalised IPS
    and (with --model) doubly robust, each with a bootstrap 95% interval, the effective sample size of the
    importance weights and the largest weight."""
    if (target_propensity_column is None) == (not model_refs):
        abort("give the target policy: --target-propensity-column T or --model NAME@ALIAS (twice), not both")
    reporter = Reporter()
    columns = LogColumns(action_column, propensity_column, reward_column, target_propensity_column)
    try:
        with reporter.step(f"Reading {log_path}"):
            log = LoggedFile.read(log_path)
        if model_refs:
            registry = Registry.load()
            churn, propensity, target = _policy_models(model_refs, registry, reporter)
            with reporter.step(f"Scoring {len(log):,} decisions with {target}"):
                logged = policy_decisions(log, columns, registry.entity("customer"), churn, propensity)
        else:
            target = f"column {target_propensity_column!r}"
            logged = logged_decisions(log, columns)
        with reporter.step(f"Estimating with {resamples:,} bootstrap resamples"):
            estimates = estimate(logged, seed=seed, resamples=resamples)
    except TrainingError as exc:
        abort(str(exc))
    for note in log.notes:
        reporter.note(note)
    _print(estimates, logged, log_path=log_path, target=target, fmt=fmt)


def _print(estimates: list[Estimate], logged: LoggedDecisions, *, log_path: Path, target: str, fmt: str) -> None:
    logged_mean = float(logged.reward.mean())
    if fmt == "json":
        out = {
            "log": str(log_path),
            "target": target,
            "decisions": len(logged),
            "logged_mean_reward": logged_mean,
            "estimates": [{k: _json_value(v) for k, v in e.as_dict().items()} for e in estimates],
        }
        click.echo(json.dumps(out, indent=2))
        return
    console = Console(highlight=False)
    console.print(estimates_table(estimates, title=f"value per decision of {target} on {log_path.name}"))
    console.print(f"the logging policy earned {logged_mean:,.2f} per decision over these {len(logged):,} decisions")
