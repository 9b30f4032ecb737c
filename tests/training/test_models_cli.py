"""``nba models list|promote|rollback`` as a data scientist types them, on a real MLflow store of its own."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from service.cli import main
from tests.training.conftest import register
from training import CHALLENGER, CHAMPION, ModelBundle, ModelRegistry


def _nba(models: ModelRegistry, *args: str) -> Result:
    """Run ``nba ARGS`` against ``models``' store, with nothing from the caller's environment in the way."""
    prefix = models.model_name("churn").removesuffix("-churn")
    data_dir = models.tracking_uri.removeprefix("sqlite:///").removesuffix("/mlflow.db")
    env = {
        "NBA_DATA_DIR": data_dir,
        "NBA_MLFLOW_EXPERIMENT": "x",
        "NBA_MLFLOW_MODEL_PREFIX": prefix,
        "MLFLOW_TRACKING_URI": None,
    }
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def two_versions(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> ModelRegistry:
    """v1 champion (metrics of bundle a), v2 challenger (bundle b)."""
    register(models, bundles["a"], CHAMPION)
    register(models, bundles["b"])
    return models


def test_list_shows_versions_aliases_and_metrics(two_versions: ModelRegistry) -> None:
    result = _nba(two_versions, "models", "list")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if two_versions.model_name("churn") in line]
    # bundles a and b log roc_auc 0.7 + seed / 100, ece 0.01 * seed, 400 test rows; no PR-AUC nor lift.
    name = two_versions.model_name("churn")
    assert [[c for c in row if c not in "│┃"] for row in rows] == [
        [name, "2", CHALLENGER, "0.720", "-", "0.0200", "-", "400"],
        [name, "1", CHAMPION, "0.710", "-", "0.0100", "-", "400"],
    ]
    assert "ROC-AUC" in result.output
    assert "ECE" in result.output


def test_promote_then_rollback_then_nothing_left(two_versions: ModelRegistry) -> None:
    name = two_versions.model_name("churn")

    promoted = _nba(two_versions, "models", "promote", "churn")
    assert promoted.exit_code == 0, promoted.output
    assert f"{name}: champion -> version 2 (was version 1)" in promoted.output
    assert "running services put it in force within NBA_MODEL_POLL_S seconds" in promoted.output
    assert two_versions.version_for("churn", CHAMPION) == "2"
    assert {v.version: v.aliases for v in two_versions.versions("churn")} == {"2": (CHAMPION,), "1": ()}
    listed = _nba(two_versions, "models", "list", name)
    assert f"{name}: rollback would make version 1 champion" in listed.output

    back = _nba(two_versions, "models", "rollback", name)
    assert back.exit_code == 0, back.output
    assert f"{name}: champion -> version 1 (was version 2)" in back.output
    assert two_versions.version_for("churn", CHAMPION) == "1"

    again = _nba(two_versions, "models", "rollback", name)
    assert again.exit_code == 1
    assert f"Error: {name}: nothing to roll back to (champion is version 1, no earlier one recorded)" in again.output
    assert two_versions.version_for("churn", CHAMPION) == "1"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("models", "promote", "nope"), 1, "Error: no registered model 'nope'"),
        (("models", "list", "nope"), 1, "Error: no registered model 'nope'"),
        (("models", "rollback", "nope"), 1, "Error: no registered model 'nope'"),
        (("models", "promote", "churn", "--version", "7"), 1, "-churn has no version '7'; versions: 1, 2"),
        (("models", "promote", "churn", "--version", "0"), 2, "Invalid value for '--version'"),
        (("models", "promote", "churn", "--version", "two"), 2, "Invalid value for '--version'"),
        (("models", "rollback", "churn"), 1, "nothing to roll back to"),
    ],
    ids=[
        "promote-unknown",
        "list-unknown",
        "rollback-unknown",
        "unknown-version",
        "version-0",
        "version-text",
        "no-history",
    ],
)
def test_mistakes_are_one_line_and_a_nonzero_exit(
    two_versions: ModelRegistry, args: tuple[str, ...], code: int, message: str
) -> None:
    result = _nba(two_versions, *args)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output
    assert two_versions.version_for("churn", CHAMPION) == "1"


def test_promote_from_the_challenger_as_the_shadow_report_says(two_versions: ModelRegistry) -> None:
    both = _nba(two_versions, "models", "promote", "churn", "--from", "challenger", "--version", "1")
    assert both.exit_code == 2
    assert "give --version or --from, not both" in both.output
    assert two_versions.version_for("churn", CHAMPION) == "1"
    promoted = _nba(two_versions, "models", "promote", "churn", "--from", "challenger")
    assert promoted.exit_code == 0, promoted.output
    assert two_versions.version_for("churn", CHAMPION) == "2"


def test_promote_without_a_challenger(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> None:
    register(models, bundles["a"], CHAMPION)
    result = _nba(models, "models", "promote", "churn")
    assert result.exit_code == 1
    assert f"Error: {models.model_name('churn')} has no challenger: train one" in result.output


def test_list_on_an_empty_store(models: ModelRegistry) -> None:
    result = _nba(models, "models", "list")
    assert result.exit_code == 1
    assert "no registered models in sqlite:" in result.output


@pytest.mark.parametrize("args", [["models"], ["models", "list"], ["models", "promote"], ["models", "rollback"]])
def test_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output
