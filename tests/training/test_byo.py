"""``nba train churn --dataset``: a telecom's own export, as published, trains and registers without editing;
tables that cannot train stop with one line naming the flag or column and register nothing; the service
never serves such a model as its contract churn model. The type inference rules hold for all inputs.

Runs through click's runner against a real MLflow store (sqlite + local artifacts) shared by this module;
each test registers under a model prefix of its own.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from features import Registry
from service.cli import main
from service.model_holder import ModelHolder
from tests.training.telco import SERVICES, report_dates, telco_columns, write_csv, write_parquet
from training import CHALLENGER, DatasetError, MlflowSettings, ModelRegistry
from training.byo import ByoResult, model_name, stratified_split, time_split, train_dataset
from training.dataset import infer_column, load_dataset
from training.evaluate import classification_metrics
from training.table_schema import FeatureColumn
from training.train import TrainParams

ROWS = 3_000
SEED = 11
WIDE = {"COLUMNS": "250"}
CATEGORIES = {
    "gender": ("Female", "Male"),
    "MultipleLines": ("No", "No phone service", "Yes"),
    "InternetService": ("DSL", "Fiber optic", "No"),
    **dict.fromkeys(SERVICES, ("No", "No internet service", "Yes")),
    "Contract": ("Month-to-month", "One year", "Two year"),
    "PaymentMethod": ("Bank transfer (automatic)", "Credit card (automatic)", "Electronic check", "Mailed check"),
}
BOOLEANS = ("Partner", "Dependents", "PhoneService", "PaperlessBilling")
NUMBERS = ("SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges")


@pytest.fixture(scope="module")
def telco() -> dict[str, np.ndarray]:
    return telco_columns(ROWS, SEED)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data dir of this module's MLflow store."""
    root = tmp_path_factory.mktemp("byo")
    ModelRegistry(MlflowSettings(tracking_uri=None, experiment="nba-tests", model_prefix="template"), root)
    return root


@pytest.fixture
def prefix() -> str:
    return f"b{uuid.uuid4().hex[:10]}"


def _registry(store: Path, prefix: str) -> ModelRegistry:
    return ModelRegistry(MlflowSettings(tracking_uri=None, experiment="nba-tests", model_prefix=prefix), store)


def _nba(store: Path, prefix: str, *args: str) -> Result:
    env = {
        **WIDE,
        "NBA_DATA_DIR": str(store),
        "MLFLOW_TRACKING_URI": None,
        "NBA_MLFLOW_TRACKING_URI": None,
        "NBA_MLFLOW_EXPERIMENT": "nba-tests",
        "NBA_MLFLOW_MODEL_PREFIX": prefix,
    }
    return CliRunner().invoke(main, ["train", "churn", *args], env=env)


def _registered(store: Path, prefix: str) -> list[str]:
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    return [m.name for m in client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")]


def _row(output: str, name: str) -> list[str]:
    """The cells of the summary table's row for column ``name``."""
    line = next(line for line in output.splitlines() if line.strip().startswith(f"{name} "))
    return [cell.strip() for cell in line.split(maxsplit=2)]


def _assert_telco_types(output: str) -> None:
    assert _row(output, "customerID")[1] == "entity"
    assert _row(output, "Churn")[1] == "label"
    for name, levels in CATEGORIES.items():
        assert _row(output, name)[1:] == ["category", f"{len(levels)} levels: {', '.join(levels)}"]
    for name in BOOLEANS:
        assert _row(output, name)[1] == "boolean"
    for name in NUMBERS:
        assert _row(output, name)[1] == "number"


# ---- the export as published, end to end -----------------------------------------------------------


def test_telco_csv_trains_registers_and_says_what_it_read(
    tmp_path: Path, store: Path, prefix: str, telco: dict[str, np.ndarray]
) -> None:
    path = write_csv(tmp_path / "Telco-Customer-Churn.csv", telco)
    result = _nba(store, prefix, "--dataset", str(path), "--label-column", "Churn", "--entity-column", "customerID")
    assert result.exit_code == 0, result.output
    out = result.output
    _assert_telco_types(out)
    blanks = int((telco["TotalCharges"] == " ").sum())
    assert blanks > 0
    assert _row(out, "TotalCharges")[2].endswith(f"; {blanks} missing")
    assert f"{path}: {ROWS} rows" in out
    assert "split stratified random: train 1800, validation 600, test 600; 19 model inputs" in out

    name = f"{prefix}-churn-byo-telco-customer-churn"
    assert f"registered {name} version 1 ({CHALLENGER})" in out
    assert _registered(store, prefix) == [name]
    bundle, version = _registry(store, prefix).load("churn", CHALLENGER, name=name)
    assert version == "1"
    metrics = bundle.metrics
    assert f"test ROC-AUC {metrics['roc_auc']:.3f}, PR-AUC {metrics['pr_auc']:.3f}" in out
    assert metrics["roc_auc"] > 0.75, metrics
    assert metrics["lift_top_decile"] > 1.8, metrics
    assert metrics["rows"] == 600

    # The bundle carries the schema: scoring the raw file with it reproduces the logged test metrics.
    schema = bundle.schema
    assert schema is not None
    assert bundle.contract_version == schema.contract_version
    assert bundle.contract_version.startswith("byo-")
    assert (schema.entity, schema.label, schema.positive, schema.time) == ("customerID", "Churn", "Yes", None)
    assert "customerID" not in schema.feature_names
    assert "Churn" not in schema.feature_names
    assert {f.name: f.levels for f in schema.features if f.kind == "category"} == CATEGORIES
    raw = pq.read_table(write_parquet(tmp_path / "raw.parquet", {k: v.astype(str) for k, v in telco.items()}))
    x = schema.encode(raw)
    assert np.isnan(x[:, schema.feature_names.index("TotalCharges")]).sum() == blanks
    y = (telco["Churn"] == "Yes").astype(np.int8)
    test = stratified_split(y, TrainParams().seed)[2]
    expected = classification_metrics(y[test], bundle.predict(x[test]))
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)


def test_telco_parquet_with_typed_columns(
    tmp_path: Path, store: Path, prefix: str, telco: dict[str, np.ndarray]
) -> None:
    path = write_parquet(tmp_path / "telco.parquet", telco)
    assert pq.read_schema(path).field("tenure").type == pa.int64()
    result = _nba(store, prefix, "--dataset", str(path), "--label-column", "Churn", "--entity-column", "customerID")
    assert result.exit_code == 0, result.output
    _assert_telco_types(result.output)
    bundle, _ = _registry(store, prefix).load("churn", CHALLENGER, name=f"{prefix}-churn-byo-telco")
    assert bundle.metrics["roc_auc"] > 0.75


def test_telco_split_by_report_date(tmp_path: Path, store: Path, prefix: str, telco: dict[str, np.ndarray]) -> None:
    dates = report_dates(ROWS, SEED)
    path = write_csv(tmp_path / "telco_monthly.csv", {**telco, "ReportDate": dates})
    args = ("--dataset", str(path), "--label-column", "Churn", "--entity-column", "customerID")
    result = _nba(store, prefix, *args, "--time-column", "ReportDate", "--alias", "champion")
    assert result.exit_code == 0, result.output
    assert _row(result.output, "ReportDate")[1] == "time"
    data = load_dataset(path, label="Churn", entity="customerID", time="ReportDate")
    assert data.time is not None
    split = time_split(data.time, "ReportDate")
    train, valid, test = (np.sort(np.unique(dates[mask])) for mask in split)
    assert train[-1] < valid[0], "every validation row is newer than every row trained on"
    assert valid[-1] < test[0], "every test row is newer than every validation row"
    sizes = [int(m.sum()) for m in split]
    assert f"split by time (ReportDate): train {sizes[0]}, validation {sizes[1]}, test {sizes[2]}" in result.output
    assert sum(sizes) == ROWS
    assert min(sizes) > ROWS // 10
    bundle, _ = _registry(store, prefix).load("churn", "champion", name=f"{prefix}-churn-byo-telco_monthly")
    assert bundle.metrics["rows"] == sizes[2]
    assert bundle.metrics["roc_auc"] > 0.75
    assert bundle.schema is not None
    assert bundle.schema.time == "ReportDate"


# ---- tables and options that cannot train ----------------------------------------------------------

Writer = Callable[[Path, dict[str, np.ndarray]], Path]


def _header_only(path: Path, telco: dict[str, np.ndarray]) -> Path:
    path.write_text(",".join(telco) + "\n")
    return path


def _ragged(path: Path, telco: dict[str, np.ndarray]) -> Path:
    write_csv(path, telco)
    with path.open("a") as f:
        f.write("1,2,3\n")
    return path


def _constant_label(path: Path, telco: dict[str, np.ndarray]) -> Path:
    return write_csv(path, {**telco, "Churn": np.full(ROWS, "No")})


def _blank_label(path: Path, telco: dict[str, np.ndarray]) -> Path:
    return write_csv(path, {**telco, "Churn": np.full(ROWS, " ")})


def _one_label_beside_blanks(path: Path, telco: dict[str, np.ndarray]) -> Path:
    return write_csv(path, {**telco, "Churn": np.where(telco["Churn"] == "Yes", "Yes", "")})


def _three_labels(path: Path, telco: dict[str, np.ndarray]) -> Path:
    return write_csv(path, {**telco, "Churn": np.resize(np.array(["Stayed", "Churned", "Joined"]), ROWS)})


def _unlabelled_pair(path: Path, telco: dict[str, np.ndarray]) -> Path:
    return write_csv(path, {**telco, "Churn": np.where(telco["Churn"] == "Yes", "Churned", "Stayed")})


CSV = "Telco-Customer-Churn.csv"
BASE = ("--label-column", "Churn", "--entity-column", "customerID")


@pytest.mark.parametrize(
    ("writer", "args", "message"),
    [
        (None, BASE, "--dataset {path}: no such file"),
        (lambda p, t: p.write_bytes(b"") and p, BASE, "--dataset {path}: the file is empty"),
        (_header_only, BASE, "--dataset {path}: the table has no rows"),
        (_ragged, BASE, "--dataset {path}: cannot read as CSV: CSV parse error: Expected 21 columns, got 3: 1,2,3"),
        (
            write_csv,
            ("--label-column", "Churned", "--entity-column", "customerID"),
            "--label-column 'Churned': no such column in {name}; columns: customerID, gender, SeniorCitizen,",
        ),
        (
            write_csv,
            ("--label-column", "Churn", "--entity-column", "CustomerId"),
            "--entity-column 'CustomerId': no such column in {name}; columns: customerID, gender,",
        ),
        (write_csv, (*BASE, "--time-column", "when"), "--time-column 'when': no such column in {name}"),
        (
            write_csv,
            (*BASE, "--time-column", "Contract"),
            "--time-column 'Contract': cannot read 'Month-to-month' as a date",
        ),
        (
            write_csv,
            ("--label-column", "Churn", "--entity-column", "Churn"),
            "--label-column and --entity-column must name different columns",
        ),
        (_constant_label, BASE, f"--label-column 'Churn' has one value only, 'No' ({ROWS}): a model needs both"),
        (_one_label_beside_blanks, BASE, "--label-column 'Churn' has one value only, 'Yes' ("),
        (_blank_label, BASE, "--label-column 'Churn': every cell is blank"),
        (
            _three_labels,
            BASE,
            "--label-column 'Churn' has 3 values, 'Churned' (1000), 'Joined' (1000), 'Stayed' (1000): "
            "name the positive one with --positive-label",
        ),
        (
            _unlabelled_pair,
            BASE,
            "--label-column 'Churn' has values 'Stayed' (",
        ),
        (write_csv, (*BASE, "--positive-label", "Churned"), "--positive-label 'Churned' is not a value of 'Churn'"),
        (write_csv, ("--label-column", "Churn"), "--dataset needs --label-column (the outcome) and --entity-column"),
    ],
    ids=[
        "missing-file",
        "zero-bytes",
        "header-only",
        "ragged-csv",
        "unknown-label",
        "unknown-entity",
        "unknown-time",
        "unreadable-time",
        "same-column-twice",
        "one-class",
        "one-class-beside-blanks",
        "blank-label",
        "three-labels",
        "unnamed-positive",
        "absent-positive",
        "no-entity-flag",
    ],
)
def test_bad_inputs_stop_with_one_line_and_register_nothing(
    writer: Writer | None,
    args: tuple[str, ...],
    message: str,
    tmp_path: Path,
    store: Path,
    prefix: str,
    telco: dict[str, np.ndarray],
) -> None:
    path = tmp_path / CSV
    if writer is not None:
        writer(path, telco)
    result = _nba(store, prefix, "--dataset", str(path), *args)
    assert result.exit_code == 1, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("Error: "))
    assert error.startswith("Error: " + message.format(path=path, name=CSV)), error
    assert _registered(store, prefix) == []


def test_dataset_options_need_a_dataset(store: Path, prefix: str) -> None:
    result = _nba(store, prefix, "--label-column", "Churn", "--time-column", "ReportDate")
    assert result.exit_code == 1
    assert "Error: --label-column, --time-column only apply with --dataset FILE" in result.output


def test_any_two_labels_with_a_positive_one(tmp_path: Path, telco: dict[str, np.ndarray]) -> None:
    path = _unlabelled_pair(tmp_path / "t.csv", telco)
    data = load_dataset(path, label="Churn", entity="customerID", positive=" Churned ")
    assert np.array_equal(data.y, (telco["Churn"] == "Yes").astype(np.int8))
    assert data.schema.positive == "Churned"
    # With more than two values, the named one is positive and every other one negative.
    three = np.where(telco["customerID"] < "3", "Joined", np.where(telco["Churn"] == "Yes", "Churned", "Stayed"))
    data = load_dataset(
        write_csv(tmp_path / "t3.csv", {**telco, "Churn": three}),
        label="Churn",
        entity="customerID",
        positive="Churned",
    )
    assert np.array_equal(data.y, (three == "Churned").astype(np.int8))
    assert 0 < data.y.sum() < (three != "Churned").sum()


def test_too_few_of_one_outcome(tmp_path: Path, telco: dict[str, np.ndarray]) -> None:
    churn = np.full(ROWS, "No", dtype="U3")
    churn[:5] = "Yes"
    path = write_csv(tmp_path / "t.csv", {**telco, "Churn": churn})
    with pytest.raises(DatasetError, match=r"'Churn': 5 positive and 2995 negative rows; need at least 10 of each"):
        train_dataset(path, label="Churn", entity="customerID", params=TrainParams())


def test_blank_labels_are_left_out(tmp_path: Path, telco: dict[str, np.ndarray]) -> None:
    churn = telco["Churn"].copy()
    churn[[3, 5, 8]] = ["", "  ", ""]
    data = load_dataset(write_csv(tmp_path / "t.csv", {**telco, "Churn": churn}), label="Churn", entity="customerID")
    assert (len(data.y), data.rows_read) == (ROWS - 3, ROWS)
    assert data.notes == ("3 rows without a label left out",)


def test_semicolons_and_latin1_are_read(tmp_path: Path) -> None:
    rows = [f"C{i};{'Zürich' if i % 3 else 'Genève'};{i % 7},5;{'oui' if i % 2 else 'non'}" for i in range(60)]
    path = tmp_path / "export.csv"
    path.write_bytes(("id;ville;score;churn\n" + "\n".join(rows) + "\n").encode("latin-1"))
    data = load_dataset(path, label="churn", entity="id", positive="oui")
    assert data.notes == ("not UTF-8: read as Latin-1", "columns separated by ';'")
    assert {c.name: c.role for c in data.columns} == {
        "id": "entity",
        "churn": "label",
        "ville": "category",
        "score": "category",  # "3,5" may be 3.5 or 35: ambiguous, so not read as a number
    }
    assert data.schema.features[0].levels == ("Genève", "Zürich")


# ---- the service refuses a model on a user's table -------------------------------------------------


@pytest.fixture(scope="module")
def byo_model(tmp_path_factory: pytest.TempPathFactory, telco: dict[str, np.ndarray]) -> ByoResult:
    path = write_csv(tmp_path_factory.mktemp("byo-model") / "telco.csv", telco)
    return train_dataset(path, label="Churn", entity="customerID", params=TrainParams())


def test_service_does_not_serve_a_byo_model_as_its_churn_model(
    store: Path, prefix: str, registry: Registry, byo_model: ByoResult
) -> None:
    # Even pointed at by the contract model names' champion alias, it is refused by its contract version.
    models = _registry(store, prefix)
    bundle = byo_model.result.bundle
    for kind in ("churn", "propensity"):
        models.log_and_register(bundle, params={}, tags={}, aliases=("champion",), name=models.model_name(kind))
    holder = ModelHolder(models, registry.version)
    holder.load()
    assert not holder.loaded
    assert holder.error == (
        f"churn model was trained on feature contract {bundle.contract_version}, "
        f"the service runs {registry.version}: retrain it"
    )


def test_registered_name_cannot_be_the_contract_one() -> None:
    assert model_name("nba-churn", Path("/x/Telco Customer Churn.CSV")) == "nba-churn-byo-telco-customer-churn"
    assert model_name("nba-churn", Path("___.csv")) == "nba-churn-byo-___"
    assert model_name("nba-churn", Path("...csv")).startswith("nba-churn-byo-")


# ---- inference rules, for all inputs ---------------------------------------------------------------

BLANK = st.sampled_from(["", " ", "   ", "\t"])
PAD = st.sampled_from(["", " ", "  "])


def _with_blanks(draw: st.DrawFn, cells: list[str]) -> tuple[list[str], list[bool]]:
    """``cells`` padded with spaces, with blank cells inserted at drawn places; also where the blanks are."""
    out: list[str] = []
    blank: list[bool] = []
    for cell in cells:
        while draw(st.booleans()):
            out.append(draw(BLANK))
            blank.append(True)
        out.append(draw(PAD) + cell + draw(PAD))
        blank.append(False)
    return out, blank


@st.composite
def numbers_as_text(draw: st.DrawFn) -> tuple[list[str], list[float | None]]:
    values = draw(st.lists(st.floats(-1e12, 1e12, allow_nan=False), min_size=2, max_size=30, unique=True))
    style = draw(st.sampled_from(["repr", "fixed", "thousands"]))
    text = {"repr": repr, "fixed": lambda v: f"{v:.2f}", "thousands": lambda v: f"{v:,.2f}"}[style]
    cells, blank = _with_blanks(draw, [text(v) for v in values])
    numbers = iter(v if style == "repr" else float(f"{v:.2f}") for v in values)
    return cells, [None if b else next(numbers) for b in blank]


@settings(max_examples=150, deadline=None)
@given(numbers_as_text())
def test_numbers_written_as_text_are_numbers_with_nan_exactly_at_the_blanks(
    case: tuple[list[str], list[float | None]],
) -> None:
    cells, expected = case
    feature = infer_column("x", pa.chunked_array([pa.array(cells)]))
    if len({c.strip() for c in cells} - {""}) < 2:  # two values that round to the same cents: a constant column
        assert feature == "one value only"
        return
    assert isinstance(feature, FeatureColumn)
    assert feature.kind == "number"
    column = pa.chunked_array([pa.array(cells)])
    got = feature.encode(column)
    assert [math.isnan(g) for g in got] == [e is None for e in expected]
    assert [g for g in got if not math.isnan(g)] == [e for e in expected if e is not None]
    assert not feature.unread(column, got).any(), "a blank is missing, not unread"
    # Text in a number column is unread (scoring refuses it); a missing-value word is only missing.
    later = pa.array(["12 EUR", "NA", " null ", cells[0]])
    assert feature.unread(later, feature.encode(later)).tolist() == [True, False, False, False]


@st.composite
def yes_no_words(draw: st.DrawFn) -> tuple[list[str], list[float | None]]:
    yes, no = draw(st.sampled_from([("yes", "no"), ("true", "false"), ("y", "n")]))
    flags = draw(st.lists(st.booleans(), min_size=2).filter(lambda f: len(set(f)) == 2))
    words = [draw(st.sampled_from([w, w.upper(), w.capitalize()])) for w in (yes if f else no for f in flags)]
    cells, blank = _with_blanks(draw, words)
    it = iter(flags)
    return cells, [None if b else float(next(it)) for b in blank]


@settings(max_examples=100, deadline=None)
@given(yes_no_words())
def test_yes_no_words_are_booleans(case: tuple[list[str], list[float | None]]) -> None:
    cells, expected = case
    feature = infer_column("x", pa.array(cells))
    assert isinstance(feature, FeatureColumn)
    assert feature.kind == "boolean"
    got = feature.encode(pa.array(cells))
    assert [None if math.isnan(g) else g for g in got] == expected
    assert not feature.unread(pa.array(cells), got).any()
    later = pa.array(["maybe", "N/A", cells[0]])
    assert feature.unread(later, feature.encode(later)).tolist() == [True, False, False]


@settings(max_examples=100, deadline=None)
@given(
    levels=st.lists(
        st.text(st.sampled_from("abcXYZ -_/()"), max_size=12).map(lambda s: "L" + s.strip()),
        min_size=2,
        max_size=20,
        unique=True,
    ),
    data=st.data(),
)
def test_few_distinct_words_are_categories_whose_codes_decode_back(levels: list[str], data: st.DataObject) -> None:
    cells, blank = _with_blanks(data.draw, data.draw(st.permutations(levels * 2)))
    feature = infer_column("x", pa.array(cells))
    assert isinstance(feature, FeatureColumn)
    assert feature.kind == "category"
    assert feature.levels == tuple(sorted(levels))
    codes = feature.encode(pa.array(cells))
    assert [None if math.isnan(c) else feature.levels[int(c)] for c in codes] == [
        None if b else c.strip() for c, b in zip(cells, blank, strict=True)
    ]
    assert not feature.unread(pa.array(cells), codes).any()
    # A level training never saw is missing when scoring, not some other level's code, and it is unread.
    later = pa.array(["never seen", " ", levels[0]])
    encoded = feature.encode(later)
    assert math.isnan(encoded[0])
    assert feature.unread(later, encoded).tolist() == [True, False, False]


def test_free_text_and_ids_are_dropped() -> None:
    ids = pa.array([f"{i:04d}-ABCDE" for i in range(300)])
    assert infer_column("id", ids) == "300 distinct values in 300 rows: free text or an id"
    assert infer_column("c", pa.array(["a", " ", "a"])) == "one value only"
    assert infer_column("c", pa.array(["", " "])) == "every cell is blank"
    # Commas alone could be decimal commas; a dot decimal elsewhere in the column settles it.
    assert infer_column("n", pa.array(["1,234", "5,678", "999"] * 2)) == FeatureColumn(
        "n", "category", levels=("1,234", "5,678", "999")
    )
    assert infer_column("n", pa.array(["1,234", "5,678", "999.5"])) == FeatureColumn("n", "number", thousands=True)
    assert infer_column("n", pa.array(["1", "NA", "2", "n/a"])) == FeatureColumn("n", "number")
    dates = report_dates(ROWS, SEED)
    assert infer_column("d", pa.array(dates)) == infer_column("d", pa.array(dates).cast(pa.date32()))
    assert (
        infer_column("d", pa.array(dates))
        == "a date or time: not a model input (pass it as --time-column to split by it)"
    )


@settings(max_examples=100, deadline=None)
@given(
    y=st.lists(st.integers(0, 1), min_size=20, max_size=400).filter(lambda y: min(y.count(0), y.count(1)) >= 10),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_split_partitions_and_keeps_each_outcome_share(y: list[int], seed: int) -> None:
    labels = np.array(y, dtype=np.int8)
    masks = stratified_split(labels, seed)
    assert np.array_equal(sum(m.astype(int) for m in masks), np.ones(len(y)))
    for outcome in (0, 1):
        n = int((labels == outcome).sum())
        got = [int((labels[m] == outcome).sum()) for m in masks]
        assert got == [round(n * 0.6), round(n * 0.8) - round(n * 0.6), n - round(n * 0.8)]


@settings(max_examples=100, deadline=None)
@given(t=st.lists(st.integers(0, 30), min_size=3, max_size=300))
def test_time_split_never_trains_on_a_time_it_tests(t: list[int]) -> None:
    times = np.array(t, dtype=np.float64)
    ordered = np.sort(times)
    if ordered[int(len(t) * 0.6)] in (ordered[0], ordered[int(len(t) * 0.8)]):
        with pytest.raises(DatasetError, match=rf"^--time-column 'ts': {len(set(t))} distinct time\(s\) cannot split"):
            time_split(times, "ts")
        return
    train, valid, test = time_split(times, "ts")
    assert np.array_equal(train.astype(int) + valid + test, np.ones(len(t)))
    assert times[train].max() < times[valid].min() <= times[valid].max() < times[test].min()
