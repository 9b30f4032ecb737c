"""``nba shadow evaluate`` as a data scientist runs it: real logged files from a simulated world, the session's
champions in a real MLflow store, and the mistakes a user makes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from features import OfflineStore, Registry
from service.cli import main
from training.policy_evaluation import points_of
from training.world import WorldConfig, behaviour_probabilities, simulate
from training.world.config import ACTIONS

COLUMNS = ("--action-column", "action_id", "--propensity-column", "propensity", "--reward-column", "reward")
POLICY = ("--model", "churn@champion", "--model", "propensity@champion")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict[str, Path]:
    """A fresh world's offers with the customer's features at each decision, as parquet and as CSV, and a target
    column: the logging policy with retention offers made twice as likely."""
    root = tmp_path_factory.mktemp("shadow-logs")
    simulate(WorldConfig(customers=1_000, months=3, seed=11, end=date(2026, 11, 30)), root / "world")
    log = OfflineStore(root / "world", registry).point_in_time("customer", pq.read_table(root / "world/offers.parquet"))
    probs = behaviour_probabilities(points_of(log, registry.entity("customer")).columns)
    probs[:, ACTIONS.index("retention_offer")] *= 2
    probs /= probs.sum(axis=1, keepdims=True)
    logged = np.array([ACTIONS.index(a) for a in log.column("action_id").to_pylist()])
    log = log.append_column("target_p", pa.array(probs[np.arange(len(logged)), logged]))
    paths = {"parquet": root / "log.parquet", "csv": root / "log.csv"}
    pq.write_table(log, paths["parquet"])
    pcsv.write_csv(log, paths["csv"])
    return paths


def _nba(data_dir: Path, *args: str | Path) -> Result:
    env = {"NBA_DATA_DIR": str(data_dir), "NBA_MLFLOW_MODEL_PREFIX": "nba", "MLFLOW_TRACKING_URI": None}
    return CliRunner().invoke(main, ["shadow", "evaluate", *map(str, args)], env=env, terminal_width=200)


def _json(result: Result) -> dict[str, object]:
    assert result.exit_code == 0, result.output
    out: dict[str, object] = json.loads(result.stdout)
    return out


def _values(out: dict[str, object]) -> dict[str, dict[str, float]]:
    estimates = out["estimates"]
    assert isinstance(estimates, list)
    return {e["estimator"]: e for e in estimates}


def test_a_target_column_gives_ips_and_snips_the_same_from_csv_and_parquet(
    logs: dict[str, Path], data_dir: Path
) -> None:
    parquet = _json(
        _nba(data_dir, "--log", logs["parquet"], *COLUMNS, "--target-propensity-column", "target_p", "--format", "json")
    )
    csv = _json(
        _nba(data_dir, "--log", logs["csv"], *COLUMNS, "--target-propensity-column", "target_p", "--format", "json")
    )
    assert parquet["estimates"] == csv["estimates"]
    values = _values(parquet)
    assert list(values) == ["IPS", "SNIPS"]  # no reward model: no DR
    table = pq.read_table(logs["parquet"])
    weights = table.column("target_p").to_numpy() / table.column("propensity").to_numpy()
    reward = table.column("reward").to_numpy()
    assert values["IPS"]["value"] == pytest.approx(float(np.mean(weights * reward)))
    assert values["SNIPS"]["value"] == pytest.approx(float((weights * reward).sum() / weights.sum()))
    assert values["IPS"]["decisions"] == table.num_rows
    assert values["IPS"]["max_weight"] == pytest.approx(float(weights.max()))
    assert values["IPS"]["low"] < values["IPS"]["value"] < values["IPS"]["high"]
    assert parquet["logged_mean_reward"] == pytest.approx(float(reward.mean()))


def test_the_models_policy_adds_doubly_robust_and_prints_a_table(
    logs: dict[str, Path], data_dir: Path, champions: dict[str, str]
) -> None:
    out = _json(_nba(data_dir, "--log", logs["parquet"], *COLUMNS, *POLICY, "--format", "json"))
    values = _values(out)
    assert list(values) == ["IPS", "SNIPS", "DR"]
    assert (
        out["target"] == f"the policy of nba-churn version {champions['churn']} "
        f"and nba-propensity version {champions['propensity']}"
    )
    dr = values["DR"]
    assert dr["low"] < dr["value"] < dr["high"]
    assert dr["high"] - dr["low"] < values["IPS"]["high"] - values["IPS"]["low"]  # the reward model's point
    assert values["IPS"]["max_weight"] > 1  # a deterministic target: 1 / propensity where it agrees with the log
    # CSV context columns (text) are read by the features' declared types: the same policy, the same figures.
    assert (
        _json(_nba(data_dir, "--log", logs["csv"], *COLUMNS, *POLICY, "--format", "json"))["estimates"]
        == out["estimates"]
    )
    table = _nba(data_dir, "--log", logs["parquet"], *COLUMNS, *POLICY)
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[0].strip(): line for line in table.stdout.splitlines() if "│" in line}
    assert list(rows) == ["IPS", "SNIPS", "DR"]
    assert f"{dr['value']:,.1f}" in rows["DR"]
    assert "the logging policy earned" in table.stdout


def _broken(tmp_path: Path, source: Path, **columns: list[object]) -> Path:
    """The CSV log with ``columns`` replaced (a list) or dropped (an empty list)."""
    table = pcsv.read_csv(source)
    for name, values in columns.items():
        table = table.drop_columns([name])
        if values:
            table = table.append_column(name, pa.array(values))
    out = tmp_path / "broken.csv"
    pcsv.write_csv(table, out)
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"propensity": []}, "--propensity-column 'propensity': broken.csv has no such column; columns: decision_id"),
        (
            {"propensity": "above-one"},
            r"column 'propensity' \(the logging policy's probability of the logged action\): "
            r"1 value\(s\) outside \(0, 1\], the first at row 3: 1.5",
        ),
        ({"propensity": "zero"}, r"column 'propensity' .*outside \(0, 1\], the first at row 3: 0.0"),
        (
            {"reward": "blank"},
            r"column 'reward' \(the reward\): 1 value\(s\) missing or not a finite number, the first at row 3",
        ),
        ({"reward": "text"}, r"--reward-column 'reward': row 3 holds '12\$', not a number"),
        (
            {"target_p": "above-one"},
            r"column 'target_p' \(the target policy's probability of the logged action\): 1 value\(s\) outside",
        ),
    ],
    ids=[
        "missing-column",
        "propensity-above-one",
        "propensity-zero",
        "blank-reward",
        "text-reward",
        "target-above-one",
    ],
)
def test_bad_files_are_refused_naming_the_column(
    logs: dict[str, Path], data_dir: Path, tmp_path: Path, change: dict[str, str | list[object]], message: str
) -> None:
    table = pcsv.read_csv(logs["csv"])
    replaced: dict[str, list[object]] = {}
    for name, how in change.items():
        if isinstance(how, list):
            replaced[name] = how
            continue
        values: list[object] = [str(v) for v in table.column(name).to_pylist()]
        values[2] = {"above-one": "1.5", "zero": "0", "blank": "", "text": "12$"}[how]
        replaced[name] = values
    path = _broken(tmp_path, logs["csv"], **replaced)
    result = _nba(data_dir, "--log", path, *COLUMNS, "--target-propensity-column", "target_p")
    assert result.exit_code == 1
    assert result.stdout == ""
    error = result.stderr.splitlines()[-1]
    assert error.startswith("Error: ")
    assert re.search(message, error), error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give the target policy: --target-propensity-column T or --model NAME@ALIAS (twice), not both"),
        (("--target-propensity-column", "target_p", *POLICY), "not both"),
        (
            ("--model", "churn@champion"),
            "name one version of each (--model churn@challenger --model propensity@challenger), got 1",
        ),
        (
            ("--model", "churn@champion", "--model", "resolution@champion"),
            "is a resolution model; the policy needs a churn and a propensity model",
        ),
        (("--model", "churn@champion", "--model", "churn/1"), "a second churn model"),
        (("--model", "churn@nope", "--model", "propensity@champion"), "nba-churn has no alias 'nope'"),
        (("--model", "churn", "--model", "propensity@champion"), "--model 'churn': give NAME@ALIAS or NAME/VERSION"),
    ],
    ids=["no-target", "both-targets", "one-model", "wrong-kind", "two-churn", "unknown-alias", "malformed"],
)
def test_a_target_policy_must_be_named_once_and_whole(
    logs: dict[str, Path], data_dir: Path, champions: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    result = _nba(data_dir, "--log", logs["parquet"], *COLUMNS, *args)
    assert result.exit_code == 1
    assert message in result.stderr, result.stderr


def test_the_models_need_the_context_columns_and_known_actions(
    logs: dict[str, Path], data_dir: Path, champions: dict[str, str], tmp_path: Path
) -> None:
    no_context = _broken(tmp_path, logs["csv"], lifetime_value=[], segment=[])
    result = _nba(data_dir, "--log", no_context, *COLUMNS, *POLICY)
    assert result.exit_code == 1
    assert "lacks the context column(s) the models read: lifetime_value, segment" in result.stderr
    table = pcsv.read_csv(logs["csv"])
    actions = table.column("action_id").to_pylist()
    actions[4] = "free_phone"
    unknown = _broken(tmp_path, logs["csv"], action_id=actions)
    result = _nba(data_dir, "--log", unknown, *COLUMNS, *POLICY)
    assert result.exit_code == 1
    assert (
        "--action-column 'action_id': 1 row(s) with an action the target policy does not know, "
        "the first at row 5: 'free_phone'" in result.stderr
    )


@pytest.mark.parametrize("content", ["", "action_id,propensity,reward,target_p\n"], ids=["empty-file", "header-only"])
def test_an_empty_log_is_refused(data_dir: Path, tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    result = _nba(data_dir, "--log", path, *COLUMNS, "--target-propensity-column", "target_p")
    assert result.exit_code == 1
    assert "empty" in result.stderr or "no rows" in result.stderr, result.stderr


def test_the_installed_nba_command_runs_it(logs: dict[str, Path], tmp_path: Path) -> None:
    nba = Path(sys.executable).with_name("nba")
    done = subprocess.run(
        [
            nba,
            "shadow",
            "evaluate",
            "--log",
            logs["parquet"],
            *COLUMNS,
            "--target-propensity-column",
            "target_p",
            "--format",
            "json",
            "--resamples",
            "200",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"NBA_DATA_DIR": str(tmp_path), "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert [e["estimator"] for e in json.loads(done.stdout)["estimates"]] == ["IPS", "SNIPS"]
