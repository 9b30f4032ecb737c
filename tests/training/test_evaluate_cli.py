"""``nba evaluate`` as a data scientist types it: the session's champions on a fresh world, logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mlflow import MlflowClient

from service.cli import main

EXPERIMENT = "nba-evaluate-tests"


def _nba(data_dir: Path, *args: str, prefix: str = "nba") -> Result:
    """``nba evaluate ARGS`` on the session's data dir (its world, seed 7, and its champions), logging to an
    experiment of its own."""
    env = {
        "NBA_DATA_DIR": str(data_dir),
        "NBA_MLFLOW_EXPERIMENT": EXPERIMENT,
        "NBA_MLFLOW_MODEL_PREFIX": prefix,
        "MLFLOW_TRACKING_URI": None,
    }
    return CliRunner().invoke(main, ["evaluate", *args], env=env, terminal_width=200)


def test_prints_the_table_and_the_goal_and_logs_both(data_dir: Path, champions: dict[str, str]) -> None:
    result = _nba(data_dir, "--customers", "1000")
    assert result.exit_code == 0, result.output
    actions_part, routing_part = result.stdout.split("routing policies on")
    rows = _rows(actions_part)
    assert list(rows) == ["random", "no_action", "rules", "champion", "challenger", "oracle"]  # the demo's challenger
    assert "retained value per 1,000" in result.stdout
    assert rows["oracle"][3] == "100.0%"  # its share of its own gain
    assert rows["no_action"][2:] == ["+0", "0.0%", rows["no_action"][4], "0", "0%"]  # no gain, no cost, no offer
    assert rows["challenger"] != rows["champion"], "the challenger is another model, with another policy"
    assert "goal: champion captures" in result.stdout
    assert "of the oracle's value gain over no action (≥ 85%:" in result.stdout
    # Routing: the resolution champion against random and skills-only routing, the oracle on top.
    routing = _rows(routing_part)
    assert list(routing) == ["random", "skills-only", "model", "oracle"]
    fcr = {policy: float(row[1].rstrip("%")) for policy, row in routing.items()}
    assert fcr["oracle"] >= max(fcr.values())
    assert fcr["random"] < fcr["oracle"]
    assert "goal: model captures" in result.stdout
    assert "of the oracle's FCR gain over skills-only routing (goal ≥ 80%:" in result.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{data_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'evaluate'")
    metrics = run.data.metrics
    assert metrics["no_action.offer_cost_per_1000"] == 0.0
    assert metrics["oracle.value_per_1000"] >= metrics["champion.value_per_1000"]
    assert run.data.params["customers"] == "1000"
    assert run.data.params["champion.nba-churn"] == champions["churn"]
    assert run.data.params["champion.nba-resolution"] == champions["resolution"]
    assert metrics["routing_fcr_oracle"] >= metrics["routing_fcr_model"]
    assert metrics["routing_fcr_oracle"] * 100 == pytest.approx(fcr["oracle"], abs=0.05)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert artifacts == {"evaluation/policies.csv", "evaluation/policies.txt", "evaluation/routing.csv"}


def _rows(printed: str) -> dict[str, list[str]]:
    """A printed table's rows (cells stripped), keyed by their first cell."""
    cells = [[c.strip() for c in line.split("│")] for line in printed.splitlines() if "│" in line]
    return {row[0]: row for row in cells}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--customers", "10"), "Invalid value for '--customers': 10 is not in the range 1000<=x<=1000000"),
        (("--months", "2"), "Invalid value for '--months': 2 is not in the range 3<=x<=36"),
        (("--seed", "7"), "--seed 7 is the training world's seed"),
    ],
    ids=["too-few-customers", "too-few-months", "training-seed"],
)
def test_bad_flags_are_named(data_dir: Path, args: tuple[str, ...], message: str) -> None:
    result = _nba(data_dir, *args)
    assert result.exit_code != 0
    assert message in result.output


def test_an_unknown_model_stops_with_what_to_do(data_dir: Path) -> None:
    result = _nba(data_dir, prefix="nosuch")
    assert result.exit_code == 1
    assert "nosuch-churn@champion" in result.output
    assert "train and register champions first" in result.output
