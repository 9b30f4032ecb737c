"""``nba score``: a model trained on a telecom's own export scores a later export of it row by row, reading each
column as training did; every mistake stops with one line naming it, a non-zero exit and no --out written.

One model is trained and registered for the module (``nba train churn --dataset``, through click's runner, on a
real MLflow store), beside a contract churn model that scoring must refuse.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from service.cli import main
from tests.training.conftest import small_bundle
from tests.training.telco import telco_columns, write_csv, write_parquet
from training import CHALLENGER, CHAMPION, MlflowSettings, ModelRegistry, ScoringError
from training.byo import stratified_split
from training.dataset import load_dataset
from training.evaluate import classification_metrics
from training.score import HEADER, ModelRef, Scores, write_scores
from training.train import TrainParams

ROWS = 3_000
SEED = 23


@pytest.fixture(scope="module")
def telco() -> dict[str, np.ndarray]:
    return telco_columns(ROWS, SEED)


class Trained:
    """The module's store: a byo model trained on ``csv`` (version 1, challenger) and a contract churn model."""

    def __init__(self, root: Path, telco: dict[str, np.ndarray]) -> None:
        self.root = root
        self.prefix = f"s{uuid.uuid4().hex[:10]}"
        self.csv = write_csv(root / "telco.csv", telco)
        trained = self.nba(
            "train", "churn", "--dataset", str(self.csv), "--label-column", "Churn", "--entity-column", "customerID"
        )
        assert trained.exit_code == 0, trained.output
        self.name = f"{self.prefix}-churn-byo-telco"
        self.models = ModelRegistry(
            MlflowSettings(tracking_uri=None, experiment="nba-tests", model_prefix=self.prefix), root
        )
        self.bundle, _, _ = self.models.load_version(self.name, alias=CHALLENGER)
        # The training frame's encoding of the file (TotalCharges' blanks missing, categories' codes as trained)
        # and what the registered bundle makes of it: what scoring must reproduce.
        self.data = load_dataset(self.csv, label="Churn", entity="customerID")
        self.expected = self.bundle.predict(self.data.x)
        contract = small_bundle("churn", 1, 5)
        self.models.log_and_register(contract, params={}, tags={}, aliases=(CHAMPION,))

    def nba(self, *args: str) -> Result:
        env = {
            "COLUMNS": "250",
            "NBA_DATA_DIR": str(self.root),
            "MLFLOW_TRACKING_URI": None,
            "NBA_MLFLOW_TRACKING_URI": None,
            "NBA_MLFLOW_EXPERIMENT": "nba-tests",
            "NBA_MLFLOW_MODEL_PREFIX": self.prefix,
        }
        return CliRunner().invoke(main, list(args), env=env)

    def score(self, dataset: Path, out: Path, *extra: str, model: str | None = None) -> Result:
        model = model or f"{self.name}@{CHALLENGER}"
        return self.nba("score", "--model", model, "--dataset", str(dataset), "--out", str(out), *extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, telco: dict[str, np.ndarray]) -> Trained:
    return Trained(tmp_path_factory.mktemp("score"), telco)


def _read(out: Path) -> tuple[list[str], np.ndarray]:
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == HEADER
    return [r[0] for r in rows[1:]], np.array([float(r[1]) for r in rows[1:]])


# ---- scores as training saw the rows -----------------------------------------------------------------


def test_scores_the_training_export_as_the_training_run_did(
    trained: Trained, tmp_path: Path, telco: dict[str, np.ndarray]
) -> None:
    out = tmp_path / "scores.csv"
    result = trained.score(trained.csv, out)
    assert result.exit_code == 0, result.output
    ids, p = _read(out)
    assert ids == telco["customerID"].tolist(), "one row per input row, in its order, with its id"
    assert np.allclose(p, trained.expected, rtol=0, atol=1e-12)
    # The held-out rows score exactly as the training run scored them when it logged its test metrics.
    y = trained.data.y
    test = stratified_split(y, TrainParams().seed)[2]
    logged = {k: v for k, v in trained.bundle.metrics.items() if k != "best_iteration"}
    assert classification_metrics(y[test], p[test]) == pytest.approx(logged)
    assert (
        f"wrote {ROWS:,} scores to {out}: {trained.name} version 1 ({CHALLENGER}), "
        f"probability {p.min():.3f} to {p.max():.3f}, mean {p.mean():.3f}"
    ) in result.output
    assert not list(tmp_path.glob(".*.part"))


def test_a_later_export_in_another_order_without_the_label(
    trained: Trained, tmp_path: Path, telco: dict[str, np.ndarray]
) -> None:
    """Typed parquet (tenure an int, MonthlyCharges a float), rows shuffled, no Churn column, by version number."""
    order = np.random.default_rng(5).permutation(ROWS)
    later = {k: v[order] for k, v in telco.items() if k != "Churn"}
    path = write_parquet(tmp_path / "march.parquet", later)
    out = tmp_path / "march.csv"
    result = trained.score(path, out, model=f"{trained.name}/1")
    assert result.exit_code == 0, result.output
    ids, p = _read(out)
    assert ids == telco["customerID"][order].tolist()
    assert np.allclose(p, trained.expected[order], rtol=0, atol=1e-12)
    assert f"{trained.name} version 1, probability" in result.output


def test_an_unseen_level_or_word_scores_as_a_blank_cell(
    trained: Trained, tmp_path: Path, telco: dict[str, np.ndarray]
) -> None:
    rows = np.arange(40)
    contract, partner, total = (telco[c].astype(object) for c in ("Contract", "Partner", "TotalCharges"))
    contract[rows[:20]] = np.resize(np.array(["Three year", "Weekly"]), 20)
    partner[rows[20:30]] = "Maybe"
    total[rows[30:]] = "N/A"  # a missing-value word: missing, and no note
    unseen = write_csv(
        tmp_path / "unseen.csv", {**telco, "Contract": contract, "Partner": partner, "TotalCharges": total}
    )
    contract[rows[:20]], partner[rows[20:30]], total[rows[30:]] = "", " ", ""
    blank = write_csv(
        tmp_path / "blank.csv", {**telco, "Contract": contract, "Partner": partner, "TotalCharges": total}
    )

    result = trained.score(unseen, tmp_path / "unseen-scores.csv")
    assert result.exit_code == 0, result.output
    assert trained.score(blank, tmp_path / "blank-scores.csv").exit_code == 0
    _, p_unseen = _read(tmp_path / "unseen-scores.csv")
    _, p_blank = _read(tmp_path / "blank-scores.csv")
    assert np.array_equal(p_unseen, p_blank)
    assert not np.allclose(p_unseen[rows], trained.expected[rows]), "the cells changed, so some of these scores did"
    assert np.allclose(p_unseen[40:], trained.expected[40:], rtol=0, atol=1e-12)
    out = result.output
    assert "Contract: 20 row(s) with a level training never saw ('Three year', 'Weekly'), scored as missing" in out
    assert "Partner: 10 row(s) with a word other than the yes/no ones training never saw ('Maybe')" in out
    assert "TotalCharges:" not in out


# ---- mistakes: one line naming the problem, a non-zero exit, --out untouched ---------------------------


Writer = Callable[[Path, dict[str, np.ndarray]], Path]


def _drop(*names: str) -> Writer:
    def write(path: Path, telco: dict[str, np.ndarray]) -> Path:
        return write_csv(path, {k: v for k, v in telco.items() if k not in names})

    return write


def _zero_bytes(path: Path, telco: dict[str, np.ndarray]) -> Path:
    path.write_bytes(b"")
    return path


def _header_only(path: Path, telco: dict[str, np.ndarray]) -> Path:
    path.write_text(",".join(telco) + "\n")
    return path


def _not_a_number(path: Path, telco: dict[str, np.ndarray]) -> Path:
    total = telco["TotalCharges"].astype(object)
    total[[4, 9]] = ["$1,234.00", "12,5"]
    return write_csv(path, {**telco, "TotalCharges": total})


BY_VERSION = "{name}/1"


@pytest.mark.parametrize(
    ("model", "writer", "args", "message"),
    [
        ("{name}", write_csv, (), "--model '{name}': give NAME@ALIAS or NAME/VERSION, e.g. "),
        ("{name}/0", write_csv, (), "--model '{name}/0': give NAME@ALIAS or NAME/VERSION"),
        ("nope@champion", write_csv, (), "no registered model 'nope' in sqlite:"),
        ("{name}@champion", write_csv, (), "{name} has no alias 'champion'; aliases: challenger (version 1)"),
        ("{name}/9", write_csv, (), "{name} has no version '9'; versions: 1"),
        (
            "churn@champion",
            write_csv,
            (),
            "{prefix}-churn version 1 is the feature contract's churn model: the service scores it on the "
            "feature store's live vectors, not on a file",
        ),
        (BY_VERSION, None, (), "--dataset {path}: no such file"),
        (BY_VERSION, _zero_bytes, (), "--dataset {path}: the file is empty"),
        (BY_VERSION, _header_only, (), "--dataset {path}: the table has no rows"),
        (
            BY_VERSION,
            _drop("tenure", "Contract"),
            (),
            "--dataset later.csv: lacks the column(s) the model reads 'tenure', 'Contract'; columns: customerID, ",
        ),
        (
            BY_VERSION,
            _drop("customerID"),
            (),
            "--dataset later.csv: no entity column 'customerID' (name yours with --entity-column); columns: gender,",
        ),
        (BY_VERSION, write_csv, ("--entity-column", "id"), "--dataset later.csv: no entity column 'id'"),
        (
            BY_VERSION,
            _not_a_number,
            (),
            "--dataset later.csv: column 'TotalCharges', row 5: '$1,234.00' is not a number; 1 more row(s) like it",
        ),
    ],
    ids=[
        "malformed-model",
        "version-zero",
        "unknown-model",
        "unknown-alias",
        "unknown-version",
        "contract-model",
        "missing-file",
        "zero-bytes",
        "header-only",
        "missing-inputs",
        "missing-entity",
        "unknown-entity-flag",
        "not-a-number",
    ],
)
def test_mistakes_stop_with_one_line_and_leave_out_untouched(
    trained: Trained,
    tmp_path: Path,
    telco: dict[str, np.ndarray],
    model: str,
    writer: Writer | None,
    args: tuple[str, ...],
    message: str,
) -> None:
    path = tmp_path / "later.csv"
    if writer is not None:
        writer(path, telco)
    out = tmp_path / "scores.csv"
    out.write_text("yesterday's scores\n")
    result = trained.score(path, out, *args, model=model.format(name=trained.name))
    assert result.exit_code == 1, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("Error: "))
    expected = message.format(name=trained.name, prefix=trained.prefix, path=path)
    assert error.startswith("Error: " + expected), error
    assert "Traceback" not in result.output
    assert out.read_text() == "yesterday's scores\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"scores.csv", *(["later.csv"] if writer else [])})


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("missing/scores.csv", "--out {tmp}/missing/scores.csv: no such directory {tmp}/missing"),
        (".", "--out {tmp}: is a directory; give a file name such as {tmp}/scores.csv"),
        ("later.csv", "--out {tmp}/later.csv: is the --dataset file; write the scores to another file"),
    ],
    ids=["no-directory", "a-directory", "the-dataset"],
)
def test_an_out_that_cannot_be_written(
    trained: Trained, tmp_path: Path, telco: dict[str, np.ndarray], out: str, message: str
) -> None:
    path = write_csv(tmp_path / "later.csv", telco)
    before = path.read_bytes()
    result = trained.score(path, tmp_path / out if out != "." else tmp_path)
    assert result.exit_code == 1, result.output
    assert f"Error: {message.format(tmp=tmp_path)}" in result.output
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["later.csv"]


def test_a_failed_write_leaves_the_old_out_and_no_part_file(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    out.write_text("yesterday's scores\n")
    write_scores(Scores(["a", "b"], np.array([0.25, 0.5]), ()), tmp_path / "fresh.csv")
    assert (tmp_path / "fresh.csv").read_bytes() == b"entity_id,probability\na,0.25\nb,0.5\n"
    with pytest.raises(ValueError, match="zip"):  # one id more than probabilities: fails after a row is written
        write_scores(Scores(["a", "b"], np.array([0.25]), ()), out)
    assert out.read_text() == "yesterday's scores\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.csv", "scores.csv"]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("nba-churn-byo-telco@champion", ModelRef("nba-churn-byo-telco", alias="champion")),
        (" churn-byo-telco/12 ", ModelRef("churn-byo-telco", version="12")),
        ("m@shadow-2", ModelRef("m", alias="shadow-2")),
        *((bad, None) for bad in ("m", "m@", "m/", "m/0", "m/v2", "m/1.5", "m@a/1", "@champion", "/3", "a b@c")),
    ],
)
def test_model_reference_forms(typed: str, expected: ModelRef | None) -> None:
    if expected is None:
        with pytest.raises(ScoringError, match=r"give NAME@ALIAS or NAME/VERSION"):
            ModelRef.parse(typed)
    else:
        assert ModelRef.parse(typed) == expected
