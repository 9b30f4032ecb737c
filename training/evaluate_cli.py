"""``nba evaluate``: the registered models against random, rules, skills-only routing and the oracle on a fresh world.

The table and the goal lines go to stdout and to MLflow (a run named ``evaluate`` with the figures as metrics and
the table as an artifact); the steps and notes go to stderr like every other command's.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from features import FeatureStoreError, OfflineSettings, OfflineStore, Registry
from features.console import settings_from_env
from training.action_value import NO_ACTION
from training.bundle import ModelBundle, ModelKind
from training.console import Reporter, abort
from training.errors import ModelNotFound, TrainingError
from training.policy_evaluation import PER, Evaluation, decision_points, evaluate_policies
from training.routing_evaluation import RoutingEvaluation, evaluate_routing, held_out_contacts
from training.settings import MlflowSettings
from training.simulate_cli import AGENTS, CUSTOMERS
from training.tracking import CHALLENGER, CHAMPION, ModelRegistry
from training.world import WorldConfig, simulate
from training.world.config import WORLD_STAMP

TEST_SEED = 1007
"""The default seed of the test world: not the demo's (7), so the models are scored on customers they never saw."""
SEED_HELP = "Seed of the test world; must differ from the training world's (NBA_DATA_DIR/world)."


def policy_table(evaluation: Evaluation) -> Table:
    """The policies' figures, one row each, as the terminal shows them."""
    table = Table(
        title=f"next-best-action policies on {evaluation.decisions:,} test decisions (oracle's true expectations)",
        title_justify="left",
        show_edge=False,
        highlight=False,
    )
    for heading in (
        "policy",
        f"retained value per {PER:,}",
        "gain over no action",
        "share of oracle gain",
        "churn rate",
        f"offer cost per {PER:,}",
        "offered",
    ):
        table.add_column(heading, justify="left" if heading == "policy" else "right")
    for row, cells in zip(evaluation.results, _cells(evaluation), strict=True):
        table.add_row(row.policy, *cells)
    return table


def _cells(evaluation: Evaluation) -> list[list[str]]:
    out = []
    for r in evaluation.results:
        share = evaluation.share_of_oracle(r.policy)
        out.append(
            [
                f"{r.value:,.0f}",
                f"{evaluation.gain(r.policy):+,.0f}",
                "-" if math.isnan(share) else f"{share:.1%}",
                f"{r.churn_rate:.2%}",
                f"{r.offer_cost:,.0f}",
                f"{r.offered:.0%}",
            ]
        )
    return out


def routing_table(routing: RoutingEvaluation) -> Table:
    """The routing section: first-contact resolution, handle time and CSAT per routing policy."""
    table = Table(
        title=(
            f"routing policies on {routing.contacts:,} test contacts, {routing.candidates} free agents each "
            "(oracle's true expectations)"
        ),
        title_justify="left",
        show_edge=False,
        highlight=False,
    )
    for heading in ("policy", "first-contact resolution", "handle time (s)", "CSAT"):
        table.add_column(heading, justify="left" if heading == "policy" else "right")
    for o in routing.outcomes:
        table.add_row(o.policy.replace("_", "-"), f"{o.fcr:.1%}", f"{o.handle_time_s:,.0f}", f"{o.csat:.2f}")
    return table


def evaluate_routing_on(world: Path, registry: Registry, resolution: ModelBundle, *, seed: int) -> RoutingEvaluation:
    """Random, skills-only, model and oracle routing of ``world``'s newest month of contacts."""
    contacts_path = world / "contacts.parquet"
    contacts = held_out_contacts(pq.read_table(contacts_path), contacts_path)
    return evaluate_routing(resolution, registry, OfflineStore(world, registry), contacts, seed=seed)


def _write_artifacts(
    evaluation: Evaluation, routing: RoutingEvaluation | None, rendered: str, goals: list[str], out: Path
) -> Path:
    with (out / "policies.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ("policy", f"value_per_{PER}", f"gain_per_{PER}", "churn_rate", f"offer_cost_per_{PER}", "offered")
        )
        for r in evaluation.results:
            writer.writerow((r.policy, r.value, evaluation.gain(r.policy), r.churn_rate, r.offer_cost, r.offered))
    if routing is not None:
        with (out / "routing.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("policy", "first_contact_resolution", "handle_time_s", "csat"))
            writer.writerows((o.policy, o.fcr, o.handle_time_s, o.csat) for o in routing.outcomes)
    (out / "policies.txt").write_text(rendered + "\n" + "\n".join(goals) + "\n")
    return out


def _load(models: ModelRegistry, kind: ModelKind, alias: str) -> tuple[ModelBundle, str]:
    bundle, version = models.load(kind, alias)
    if kind == "churn" and NO_ACTION not in bundle.actions:
        raise ModelNotFound(
            f"{models.model_name(kind)}@{alias} (version {version}) does not take the action as an input: "
            "retrain it (nba train churn)"
        )
    return bundle, version


def _challenger(
    models: ModelRegistry, champion: dict[ModelKind, tuple[ModelBundle, str]]
) -> tuple[dict[ModelKind, tuple[ModelBundle, str]] | None, list[str]]:
    """The challenger's (churn, propensity): each from its ``challenger`` alias, else the champion's; None when
    neither model has a challenger."""
    found: dict[ModelKind, tuple[ModelBundle, str]] = {}
    for kind in champion:
        try:
            found[kind] = _load(models, kind, CHALLENGER)
        except ModelNotFound:
            continue
    if not found:
        return None, []
    borrowed = [kind for kind in champion if kind not in found]
    notes = [f"challenger: {models.model_name(k)} has no challenger alias, the champion's is used" for k in borrowed]
    return {kind: found.get(kind, champion[kind]) for kind in champion}, notes


def _training_seed(world_dir: Path) -> int | None:
    stamp = world_dir / WORLD_STAMP
    if not stamp.is_file():
        return None
    seed = json.loads(stamp.read_text()).get("config", {}).get("seed")
    return seed if isinstance(seed, int) else None


@click.command("evaluate")
@CUSTOMERS
@click.option("--months", type=click.IntRange(3, 36), default=3, show_default=True, help="Months of decisions.")
@AGENTS
@click.option("--seed", type=int, default=TEST_SEED, show_default=True, help=SEED_HELP)
def evaluate(customers: int, months: int, agents: int, seed: int) -> None:
    """Simulate a fresh world and score the policies random, no action, rules, champion, challenger and oracle
    on it with the oracle's true expected values, and route its newest month of contacts by random, skills-only,
    the resolution champion and the oracle; print the tables and log them to MLflow. The world's size defaults to
    the demo's: routing is judged on agents who take as many contacts as the ones the champion learned from."""
    offline_settings = settings_from_env(OfflineSettings)
    trained_on = _training_seed(offline_settings.world_dir)
    if trained_on == seed:
        abort(
            f"--seed {seed} is the training world's seed ({offline_settings.world_dir}): pick another for a fresh world"
        )
    reporter = Reporter()
    registry = Registry.load()
    try:
        models = ModelRegistry(settings_from_env(MlflowSettings), offline_settings.data_dir)
        champion: dict[ModelKind, tuple[ModelBundle, str]] = {
            kind: _load(models, kind, CHAMPION) for kind in ("churn", "propensity")
        }
        challenger, notes = _challenger(models, champion)
        resolution: tuple[ModelBundle, str] | None = None
        try:
            resolution = models.load("resolution", CHAMPION)
        except ModelNotFound:
            notes.append(f"routing: skipped, {models.model_name('resolution')} has no champion (nba train resolution)")
        config = WorldConfig(customers=customers, agents=agents, months=months, seed=seed, end=datetime.now(UTC).date())
        with tempfile.TemporaryDirectory(prefix="nba-evaluate-") as tmp:
            world = Path(tmp) / "world"
            title = f"Simulating a test world ({customers:,} customers, {months} months, seed {seed})"
            with reporter.step(title), reporter.bar("months (+ writing)", months + 4) as bar:
                simulate(config, world, progress=bar)
            with reporter.step("Scoring the policies against the oracle"):
                evaluation = evaluate_policies(
                    decision_points(OfflineStore(world, registry)),
                    (champion["churn"][0], champion["propensity"][0]),
                    None if challenger is None else (challenger["churn"][0], challenger["propensity"][0]),
                    seed=seed,
                )
            routing = None
            if resolution is not None:
                with reporter.step("Routing the test contacts by every policy"):
                    routing = evaluate_routing_on(world, registry, resolution[0], seed=seed)
        table = policy_table(evaluation)
        stdout = Console(highlight=False, width=140)
        stdout.print(table)
        if routing is not None:
            stdout.print(routing_table(routing))
        goals = [*evaluation.goal_lines(), *([] if routing is None else [f"goal: {routing.goal_line()}"])]
        for line in goals:
            stdout.print(line, soft_wrap=True)
        for line in [*notes, *evaluation.notes]:
            reporter.note(line)
        capture = Console(width=140, record=True, file=io.StringIO())
        capture.print(table)
        if routing is not None:
            capture.print(routing_table(routing))
        params: dict[str, object] = {"customers": customers, "months": months, "agents": agents, "seed": seed}
        params |= {f"champion.{models.model_name(k)}": v for k, (_, v) in champion.items()}
        if resolution is not None:
            params[f"champion.{models.model_name('resolution')}"] = resolution[1]
        if challenger is not None:
            params |= {f"challenger.{models.model_name(k)}": v for k, (_, v) in challenger.items()}
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = _write_artifacts(evaluation, routing, capture.export_text(), goals, Path(tmp))
            metrics = evaluation.metrics() | ({} if routing is None else routing.metrics())
            run_id = models.log_evaluation(metrics=metrics, params=params, artifacts=artifacts)
        reporter.note(f"logged to MLflow ({models.tracking_uri}), run {run_id}")
    except ModelNotFound as exc:
        abort(f"{exc}; train and register champions first (nba demo, or nba train churn|propensity --alias champion)")
    except (FeatureStoreError, TrainingError) as exc:
        abort(str(exc))
