"""Training on the simulated world: models that rank and are calibrated, split by time, reproducible, and
datasets that cannot train are refused by name. Also the metric and calibration helpers on small inputs."""

from __future__ import annotations

import hashlib
import math
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Literal

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from features import OfflineStore, Registry
from training import DatasetError
from training.action_value import churn_by_action
from training.bundle import ModelKind
from training.calibrate import Calibrator, choose_calibrator
from training.evaluate import classification_metrics, expected_calibration_error, top_decile_lift
from training.train import (
    LARGE_LEARNING_RATE,
    LARGE_NUM_LEAVES,
    LARGE_PATIENCE,
    LARGE_TRAINING_ROWS,
    TrainingResult,
    TrainParams,
    _out_of_period,
    fit_split,
    train_churn,
    train_propensity,
)
from training.world.config import ACTIONS
from training.world.oracle import true_churn_probability

Trainer = Callable[..., TrainingResult]
TABLE = {"churn": "churn_labels.parquet", "propensity": "offers.parquet"}
TRAINER: dict[str, Trainer] = {"churn": train_churn, "propensity": train_propensity}
ROOT = Path(__file__).resolve().parents[2]
METRICS = {"roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile", "positive_rate", "rows"}


@pytest.fixture(scope="module")
def trained(registry: Registry, offline: OfflineStore, world: Path) -> dict[str, TrainingResult]:
    return {
        kind: TRAINER[kind](registry, offline, world / TABLE[kind], params=TrainParams())
        for kind in ("churn", "propensity")
    }


def _test_rows(
    kind: str, result: TrainingResult, offline: OfflineStore, world: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model input, labels and timestamps of ``kind``'s table, rebuilt here from the offline store."""
    labels = pq.read_table(world / TABLE[kind])
    if kind == "propensity":
        labels = labels.filter(pc.not_equal(labels.column("action_id"), "no_action"))
    else:  # each customer-month's logged decision, if any, and its answer
        offers = pq.read_table(world / TABLE["propensity"], columns=["customer_id", "ts", "action_id", "accepted"])
        labels = labels.join(offers, ["customer_id", "ts"], join_type="left outer")
    frame = offline.point_in_time("customer", labels)
    x = offline.model_matrix("customer", frame)
    actions = [a or "no_action" for a in frame.column("action_id").to_pylist()]
    x = np.column_stack([x, [float(result.bundle.actions.index(a)) for a in actions]])
    if kind == "churn":
        x = np.column_stack([x, [float(a or 0) for a in frame.column("accepted").to_pylist()]])
    y = frame.column("churned" if kind == "churn" else "accepted").to_numpy().astype(np.int8)
    return x, y, frame.column("ts").to_numpy()


# ---- models trained on the world -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["churn", "propensity"], ids=["churn", "propensity"])
def test_models_rank_and_are_calibrated(
    kind: str, trained: dict[str, TrainingResult], registry: Registry, offline: OfflineStore, world: Path
) -> None:
    result = trained[kind]
    metrics = result.bundle.metrics
    assert set(metrics) == METRICS | {"best_iteration"}
    assert metrics["roc_auc"] > 0.65
    assert metrics["ece"] < 0.05
    assert 0 < metrics["pr_auc"] < 1
    assert metrics["lift_top_decile"] > 1.5
    assert result.bundle.kind == kind
    assert result.bundle.contract_version == registry.version
    customer = registry.entity("customer").model_names
    assert "contract_end_day" not in customer, "an absolute date is no model input"
    extra = ("action", "accepted") if kind == "churn" else ("action",)
    assert result.bundle.feature_names == (*customer, *extra)
    assert result.tags == {
        "contract_version": registry.version,
        "dataset_sha256": hashlib.sha256((world / TABLE[kind]).read_bytes()).hexdigest()[:16],
        "kind": kind,
        "code_version": result.tags["code_version"],
        "actions": ",".join(result.bundle.actions),
    }
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.tags["code_version"] in (head.stdout.strip(), head.stdout.strip() + "+dirty")
    # Churn's predictions are subtracted from one another, so its calibrator has no isotonic steps.
    methods = ("sigmoid",) if kind == "churn" else ("isotonic", "sigmoid")
    assert result.params["calibration"] in methods

    # The metrics are the calibrated predictions on the newest date only, and training saw neither it nor
    # the validation date before it.
    x, y, ts = _test_rows(kind, result, offline, world)
    dates = np.unique(ts)
    test = ts == dates[-1]
    assert result.params["rows_train"] == int((ts < dates[-2]).sum())
    # Churn calibrates on the validation date; propensity, whose months hold a few hundred offers, on every date
    # before the test date, each predicted out of period.
    calibrated_on = ts == dates[-2] if kind == "churn" else ts < dates[-1]
    assert result.params["calibration_rows"] == int(calibrated_on.sum())
    expected = classification_metrics(y[test], result.bundle.predict(x[test]))
    assert expected["rows"] == float(test.sum())
    assert {k: metrics[k] for k in METRICS} == pytest.approx(expected)
    # The report is drawn from exactly those rows.
    assert np.array_equal(result.held_out.x, x[test], equal_nan=True)
    assert np.array_equal(result.held_out.y, y[test])


def test_propensity_actions_exclude_no_action(trained: dict[str, TrainingResult]) -> None:
    bundle = trained["propensity"].bundle
    assert bundle.actions == (
        "discount_10",
        "loyalty_bonus",
        "payment_plan",
        "plan_upgrade",
        "retention_offer",
        "tech_callback",
    )
    # The churn model knows every logged action, doing nothing included: its untreated baseline.
    assert trained["churn"].bundle.actions == tuple(sorted(ACTIONS))


def test_churn_model_learns_what_a_callback_does(
    trained: dict[str, TrainingResult], registry: Registry, offline: OfflineStore, world: Path
) -> None:
    """The learned effect of a tech callback on repeat callers points the way the oracle's does, and is larger
    for them than for everyone else (the oracle's callback works per repeat contact)."""
    frame = offline.point_in_time("customer", pq.read_table(world / TABLE["churn"], columns=["customer_id", "ts"]))
    columns = {n: frame.column(n).to_numpy(zero_copy_only=False) for n in frame.column_names}
    x = offline.model_matrix("customer", frame)
    churn, propensity = trained["churn"].bundle, trained["propensity"].bundle
    accept = propensity.predict(propensity.with_actions(x, ACTIONS[1:])).reshape(len(x), -1)
    learned = churn_by_action(churn, x, ACTIONS, np.column_stack([np.zeros(len(x)), accept]))
    j = ACTIONS.index("tech_callback")
    effect = learned[:, 0] - learned[:, j]  # churn avoided by the callback, per customer
    truth = true_churn_probability(columns, None) - true_churn_probability(columns, "tech_callback")
    repeat = np.nan_to_num(columns["repeat_contacts_30d"].astype(float)) >= 2
    assert truth[repeat].mean() > 0.01
    assert effect[repeat].mean() > 0.25 * truth[repeat].mean()
    assert effect[repeat].mean() > effect[~repeat].mean()


def test_same_seed_same_predictions(
    trained: dict[str, TrainingResult], registry: Registry, offline: OfflineStore, world: Path
) -> None:
    path = world / TABLE["propensity"]
    again = train_propensity(registry, offline, path, params=TrainParams(seed=7))
    other = train_propensity(registry, offline, path, params=TrainParams(seed=8))
    x, _, _ = _test_rows("propensity", again, offline, world)
    first = trained["propensity"].bundle.predict(x)
    assert np.array_equal(again.bundle.predict(x), first)
    assert again.bundle.metrics == trained["propensity"].bundle.metrics
    assert not np.array_equal(other.bundle.predict(x), first)


# ---- settings that follow the number of training rows ----------------------------------------------


@pytest.mark.parametrize("kind", ["churn", "propensity", "resolution"], ids=["churn", "propensity", "resolution"])
def test_settings_change_only_from_large_training_rows(kind: ModelKind) -> None:
    params = TrainParams.for_model(kind)
    assert params.for_rows(LARGE_TRAINING_ROWS - 1) == params
    large = params.for_rows(LARGE_TRAINING_ROWS)
    assert large.learning_rate == max(LARGE_LEARNING_RATE, params.learning_rate)
    assert large.num_leaves == max(LARGE_NUM_LEAVES, params.num_leaves)
    assert large.early_stopping_rounds == min(LARGE_PATIENCE, params.early_stopping_rounds)
    restored = {"learning_rate", "num_leaves", "early_stopping_rounds"}
    assert replace(large, **{name: getattr(params, name) for name in restored}) == params
    assert large.for_rows(LARGE_TRAINING_ROWS) == large


@pytest.mark.parametrize(
    ("rows", "rate"),
    [(LARGE_TRAINING_ROWS - 1, 0.05), (LARGE_TRAINING_ROWS, LARGE_LEARNING_RATE)],
    ids=["small", "large"],
)
def test_fit_split_records_the_settings_it_trained_with(rows: int, rate: float, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows + 2_000, 2))
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-x[:, 0]))).astype(np.int8)
    train = np.arange(len(x)) < rows
    split = (train, ~train & (np.arange(len(x)) % 2 == 0), ~train & (np.arange(len(x)) % 2 == 1))
    (source := tmp_path / "rows.json").write_text("{}")
    result = fit_split(
        "propensity",
        x,
        y,
        split,
        feature_names=("signal", "noise"),
        categorical=[],
        contract_version="test",
        actions=(),
        params=TrainParams(max_rounds=2),
        source=source,
    )
    assert result.params["learning_rate"] == rate
    assert result.params["rows_train"] == rows


# ---- datasets that cannot train --------------------------------------------------------------------


def _last_dates(world: Path, kind: str, n: int) -> tuple[pa.Table, list[datetime]]:
    table = pq.read_table(world / TABLE[kind])
    dates = sorted(set(table.column("ts").to_pylist()))[-n:]
    return table.filter(pc.is_in(table.column("ts"), pa.array(dates, table.schema.field("ts").type))), dates


def _decision_log_beside(labels: Path, world: Path) -> None:
    """The world's offers table beside ``labels``, where the churn model reads each month's decision."""
    if labels.name == TABLE["churn"] and not (labels.parent / TABLE["propensity"]).exists():
        (labels.parent / TABLE["propensity"]).symlink_to(world / TABLE["propensity"])


def test_churn_needs_the_decision_log(tmp_path: Path, registry: Registry, offline: OfflineStore, world: Path) -> None:
    path = tmp_path / TABLE["churn"]
    path.symlink_to(world / TABLE["churn"])
    with pytest.raises(DatasetError, match=r"offers\.parquet: no such label table"):
        train_churn(registry, offline, path, params=TrainParams())


@pytest.mark.parametrize("kind", ["churn", "propensity"], ids=["churn", "propensity"])
def test_two_dates_cannot_split_by_time(
    kind: str, tmp_path: Path, registry: Registry, offline: OfflineStore, world: Path
) -> None:
    table, _ = _last_dates(world, kind, 2)
    path = tmp_path / TABLE[kind]
    pq.write_table(table, path)
    _decision_log_beside(path, world)
    with pytest.raises(
        DatasetError, match=r"at least 3 distinct dates to split by time into train / validation / test, found 2"
    ):
        TRAINER[kind](registry, offline, path, params=TrainParams())


def test_two_dates_error_names_the_dates(
    tmp_path: Path, registry: Registry, offline: OfflineStore, world: Path
) -> None:
    table, dates = _last_dates(world, "churn", 2)
    path = tmp_path / "churn_labels.parquet"
    pq.write_table(table, path)
    _decision_log_beside(path, world)
    with pytest.raises(DatasetError) as caught:
        train_churn(registry, offline, path, params=TrainParams())
    message = str(caught.value)
    assert all(d.date().isoformat() in message for d in dates), message


def test_single_class_test_date_is_refused(
    tmp_path: Path, registry: Registry, offline: OfflineStore, world: Path
) -> None:
    table = pq.read_table(world / TABLE["churn"])
    last = pc.max(table.column("ts"))
    churned = pc.if_else(pc.equal(table.column("ts"), last), 0, table.column("churned")).cast(pa.int8())
    path = tmp_path / "churn_labels.parquet"
    pq.write_table(table.set_column(table.column_names.index("churned"), "churned", churned), path)
    _decision_log_beside(path, world)
    with pytest.raises(DatasetError, match="churn: the test split has only one class"):
        train_churn(registry, offline, path, params=TrainParams())


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("churn", "churned"),
        ("churn", "ts"),
        ("churn", "customer_id"),
        ("propensity", "accepted"),
        ("propensity", "action_id"),
    ],
    ids=["churn-label", "churn-ts", "churn-key", "propensity-label", "propensity-action"],
)
def test_label_table_without_a_column_names_it(
    kind: str, column: str, tmp_path: Path, registry: Registry, offline: OfflineStore, world: Path
) -> None:
    path = tmp_path / TABLE[kind]
    pq.write_table(pq.read_table(world / TABLE[kind]).drop_columns([column]), path)
    with pytest.raises(DatasetError, match=rf"{TABLE[kind]}: missing column\(s\) {column}$"):
        TRAINER[kind](registry, offline, path, params=TrainParams())


def test_unusable_label_tables(tmp_path: Path, registry: Registry, offline: OfflineStore, world: Path) -> None:
    with pytest.raises(DatasetError, match=r"absent\.parquet: no such label table"):
        train_churn(registry, offline, tmp_path / "absent.parquet", params=TrainParams())
    labels = pq.read_table(world / TABLE["churn"])
    pq.write_table(labels.slice(0, 0), tmp_path / "empty.parquet")
    with pytest.raises(DatasetError, match=r"empty\.parquet: the table is empty"):
        train_churn(registry, offline, tmp_path / "empty.parquet", params=TrainParams())
    offers = pq.read_table(world / TABLE["propensity"])
    nothing = offers.filter(pc.equal(offers.column("action_id"), "no_action"))
    pq.write_table(nothing, tmp_path / "nothing.parquet")
    with pytest.raises(DatasetError, match=r"nothing\.parquet: no offered action besides no_action"):
        train_propensity(registry, offline, tmp_path / "nothing.parquet", params=TrainParams())


# ---- evaluate.py on hand-computed inputs -----------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "p", "ece"),
    [
        ([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], 0.5 * 0.4 + 0.5 * 0.1),
        ([1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25], 0.0),
        ([0, 0, 0], [0.05, 0.15, 0.95], (0.05 + 0.15 + 0.95) / 3),
        ([0, 1], [0.0, 1.0], 0.0),
        ([1, 1, 0, 0], [0.52, 0.58, 0.63, 0.68], 0.5 * abs(0.55 - 1) + 0.5 * abs(0.655 - 0)),
    ],
    ids=["two-bins", "calibrated", "three-bins", "edges", "shared-bins"],
)
def test_expected_calibration_error(y: list[int], p: list[float], ece: float) -> None:
    assert expected_calibration_error(np.array(y), np.array(p)) == pytest.approx(ece)


def test_a_prediction_on_a_bin_edge_opens_its_bin() -> None:
    # [0.2, 0.3) holds 0.25 (y=0) and [0.3, 0.4) holds 0.3 (y=1): 0.5 * 0.25 + 0.5 * 0.7.
    assert expected_calibration_error(np.array([0, 1]), np.array([0.25, 0.3])) == pytest.approx(0.475)


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 1), st.floats(0.0, 1.0)), min_size=1, max_size=50),
)
def test_ece_bounds_and_one_bin(pairs: list[tuple[int, float]]) -> None:
    y = np.array([a for a, _ in pairs], dtype=float)
    p = np.array([b for _, b in pairs])
    ece = expected_calibration_error(y, p)
    assert 0.0 <= ece <= 1.0
    # With one bin, ECE is the gap between the mean prediction and the observed rate; more bins never hide it.
    one = expected_calibration_error(y, p, bins=1)
    assert one == pytest.approx(abs(p.mean() - y.mean()))
    assert ece >= one - 1e-12


@pytest.mark.parametrize(
    ("y", "p", "lift"),
    [
        ([1] + [0] * 18 + [1], [0.9, *[0.1] * 18, 0.5], 0.5 / 0.1 * 2),
        ([1] + [0] * 18 + [1], [0.9, 0.8, *[0.1] * 18], 0.5 / 0.1),
        ([0, 0, 1, 0, 0], [0.1, 0.2, 0.9, 0.3, 0.4], 1.0 / 0.2),
        ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], 1.0),
    ],
    ids=["both-on-top", "one-on-top", "fewer-than-ten", "all-positive"],
)
def test_top_decile_lift(y: list[int], p: list[float], lift: float) -> None:
    assert top_decile_lift(np.array(y), np.array(p)) == pytest.approx(lift)


def test_top_decile_lift_without_positives_is_nan() -> None:
    assert math.isnan(top_decile_lift(np.zeros(20), np.linspace(0, 1, 20)))


def test_classification_metrics_by_hand() -> None:
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    metrics = classification_metrics(y, p)
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["brier"] == pytest.approx((0.01 + 0.16 + 0.65**2 + 0.04) / 4)
    assert metrics["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)
    assert metrics["pr_auc"] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert (metrics["positive_rate"], metrics["rows"]) == (0.5, 4.0)
    assert metrics["lift_top_decile"] == pytest.approx(2.0)


# ---- calibrate.py on deliberately miscalibrated inputs ---------------------------------------------


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _overconfident(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """True rates spread over (0, 1); the model's raw scores push them toward 0 and 1 (logit x 3)."""
    truth = rng.uniform(0.02, 0.98, n)
    return 1 / (1 + np.exp(-3 * _logit(truth))), (rng.random(n) < truth).astype(int)


def _step(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores ranked right but the truth jumps at 0.5: no sigmoid of the logit can follow it."""
    raw = rng.uniform(0.05, 0.95, n)
    return raw, (rng.random(n) < np.where(raw < 0.5, 0.05, 0.95)).astype(int)


@pytest.mark.parametrize(
    ("make", "method"),
    [(_overconfident, "sigmoid"), (_step, "isotonic")],
    ids=["overconfident-sigmoid", "step-isotonic"],
)
def test_calibration_chooses_and_improves_log_loss(
    make: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]], method: str
) -> None:
    rng = np.random.default_rng(0)
    raw, y = make(rng, 4_000)
    held_raw, held_y = make(rng, 4_000)
    calibrator = choose_calibrator(raw, y, seed=0)
    assert calibrator.method == method
    calibrated = calibrator.transform(held_raw)
    assert log_loss(held_y, calibrated) < 0.8 * log_loss(held_y, held_raw)
    assert expected_calibration_error(held_y, calibrated) < 0.03
    assert ((calibrated > 0) & (calibrated < 1)).all()
    order = np.argsort(held_raw)
    assert (np.diff(calibrated[order]) >= -1e-12).all()  # calibration never reorders customers


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"], ids=["isotonic", "sigmoid"])
def test_calibrator_fit_transform(method: Literal["isotonic", "sigmoid"]) -> None:
    rng = np.random.default_rng(1)
    raw, y = _overconfident(rng, 2_000)
    calibrator = Calibrator(method=method).fit(raw, y)
    assert calibrator.method == method
    out = calibrator.transform(np.array([0.0, 0.5, 1.0]))
    assert out.dtype == np.float64
    # Raw scores at the extremes are pulled in, the middle stays in the middle.
    assert 0 < out[0] < 0.1
    assert out[1] == pytest.approx(0.5, abs=0.1)
    assert 0.9 < out[2] < 1


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"], ids=["isotonic", "sigmoid"])
def test_calibrator_clips_the_ends_and_keeps_a_missing_score_missing(method: Literal["isotonic", "sigmoid"]) -> None:
    rng = np.random.default_rng(4)
    raw, y = _overconfident(rng, 2_000)
    calibrator = Calibrator(method=method).fit(raw, y)
    out = calibrator.transform(np.array([np.nan, -1.0, 0.0, 1e-300, 1.0, 2.0, np.inf, -np.inf]))
    assert math.isnan(out[0])
    # Below the low end and above the high end, the ends' own values (clipped to the fitted range or to (0, 1)).
    low, high = calibrator.transform(np.array([raw.min(), raw.max()])) if method == "isotonic" else out[[2, 4]]
    assert out[1] == out[2] == out[3] == out[7] == low
    assert out[4] == out[5] == out[6] == high
    assert 0 < low < high < 1


def test_calibration_keeps_to_the_methods_given() -> None:
    # The step data would choose isotonic; a model whose predictions are subtracted asks for sigmoid only.
    raw, y = _step(np.random.default_rng(2), 4_000)
    assert choose_calibrator(raw, y, seed=0).method == "isotonic"
    assert choose_calibrator(raw, y, seed=0, methods=("sigmoid",)).method == "sigmoid"
    with pytest.raises(ValueError, match="at least one method"):
        choose_calibrator(raw, y, seed=0, methods=())


def test_out_of_period_predicts_each_period_with_a_model_that_never_saw_it() -> None:
    rng = np.random.default_rng(3)
    periods = np.repeat(np.arange(3), 400)
    x = rng.normal(size=(len(periods), 2))
    # Period 1's outcomes follow the opposite sign of period 0's: a model trained on the other period predicts
    # each one backwards, a model that had seen its own period would not.
    y = ((x[:, 0] * np.where(periods == 1, -1.0, 1.0) + rng.normal(0, 0.3, len(x))) > 0).astype(np.int8)
    fitted = periods < 2  # period 2 is the test period: never trained on, never calibrated on
    masks: list[np.ndarray] = []

    def refit(mask: np.ndarray) -> lgb.Booster:
        masks.append(mask)
        params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "min_data_in_leaf": 20}
        return lgb.train(params, lgb.Dataset(x[mask], y[mask]), num_boost_round=20)

    raw, outcome = _out_of_period(x, y, periods, fitted, refit)
    assert [m.tolist() for m in masks] == [(periods == 1).tolist(), (periods == 0).tolist()]
    assert np.array_equal(outcome, y[fitted])
    assert roc_auc_score(outcome[:400], raw[:400]) < 0.2
    assert roc_auc_score(outcome[400:], raw[400:]) < 0.2
