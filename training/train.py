"""Train the churn and offer-propensity models from point-in-time frames.

Both are LightGBM binary classifiers on the feature contract's customer vector, split by time (oldest
decision dates train, the next validates and early-stops, the newest is the untouched test), calibrated
and scored on test. Churn calibrates on the validation date, with a sigmoid only (the policy subtracts its
predictions); propensity, whose months hold a few hundred to a few thousand offers, on out-of-period
predictions of every date before the test date (see :func:`_out_of_period`). Both take the action as one
more categorical input, so all candidate actions of one customer are scored in a single predict call per model
at serving time:

- churn: P(churn within 30 days | customer, action offered), on every labelled customer-month, the action
  being the logged decision's (``no_action`` when none was made). The difference between an action's row
  and ``no_action``'s is the action's learned effect on churn (an S-learner); see :mod:`training.action_value`
  for why this learner and how the service turns it into money.
- propensity: P(customer accepts | customer, action), on the offers made.

Class imbalance (about 5% of customer-months churn) is left in the data on purpose: re-weighting the
classes would bias P(churn), which the value arithmetic multiplies by money; the calibrator maps the raw
scores to frequencies and PR-AUC is logged beside ROC-AUC because it sees the minority class.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cache
from importlib import metadata
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import OfflineStore, Registry
from training.action_value import NO_ACTION
from training.bundle import ModelBundle, ModelKind
from training.calibrate import CALIBRATION_METHODS, CalibrationMethod, choose_calibrator
from training.errors import DatasetError
from training.evaluate import classification_metrics
from training.world.config import WORLD_STAMP

ACTION_FEATURE = "action"
ACCEPTED_FEATURE = "accepted"
"""The churn model's last input: whether the action was accepted (see :mod:`training.action_value`)."""
ACTIONS_TAG = "actions"
"""Run and version tag of an action model: its action ids, so the demo can tell an action-aware churn model from
an older one without downloading it."""
LARGE_TRAINING_ROWS = 200_000
"""Training rows from which :meth:`TrainParams.for_rows` grows larger trees in larger steps (the demo's frames hold
tens of thousands, so its models never reach it)."""
LARGE_LEARNING_RATE = 0.1
"""The least learning rate from :data:`LARGE_TRAINING_ROWS` training rows on."""
LARGE_NUM_LEAVES = 31
"""The least number of leaves from :data:`LARGE_TRAINING_ROWS` training rows on: the general defaults' trees."""
LARGE_PATIENCE = 40
"""The most rounds early stopping waits from :data:`LARGE_TRAINING_ROWS` training rows on: the general defaults'."""


def train_threads() -> int:
    """LightGBM's training threads: ``NBA_TRAIN_THREADS``, else one per core.

    Why it can be set: trainings that share the cores (pytest-xdist workers, a service building its demo beside
    them) each spin their OpenMP threads against the others', and slow down tens of times (two propensity models
    took 180 s in the test suite, 5 s alone); one thread each is then far faster. Not a number of at least 1: an
    error naming the variable.
    """
    raw = os.environ.get("NBA_TRAIN_THREADS")
    if raw is None:
        return os.cpu_count() or 1
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"NBA_TRAIN_THREADS must be a whole number of at least 1, got {raw!r}")
    return threads


@dataclass(frozen=True, kw_only=True)
class TrainParams:
    """LightGBM settings we choose on purpose; nothing else reaches the booster."""

    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_rounds: int = 600
    early_stopping_rounds: int = 40
    max_cat_to_onehot: int = 4
    """Categories up to which a categorical input splits one-vs-rest (LightGBM's default 4)."""
    seed: int = 7

    @classmethod
    def for_model(cls, kind: ModelKind, *, seed: int = 7) -> TrainParams:
        """The settings ``nba train`` and ``nba demo`` use for ``kind``.

        Churn: small, slow trees (7 leaves of at least 100 rows, learning rate 0.02, early stopping after 100
        rounds) that split the action one-vs-rest (``max_cat_to_onehot`` above the 7 actions). An action's effect
        on churn is a small difference between two predictions; with the default settings the trees stopped early
        and grouped actions in many-vs-many splits, before they had learned where each action matters. Measured
        with ``nba evaluate`` (see :mod:`training.action_value`): 71% of the oracle's value gain with the defaults,
        81% with these.

        Resolution: trees of four leaves of 300 contacts at least, every input offered to each tree. Its signal is
        weak in noisy outcomes (ten thousand contacts, each resolved or not, over some 90 inputs, most of them the
        customer's): the general defaults stop after a few dozen rounds fitted to noise, and route worse (on the
        demo world, 56% of the oracle's gain over skills-only routing against 74%, monotone in
        :data:`training.resolution.RISING` as well).

        Propensity: the defaults at learning rate 0.1 (the rate :meth:`for_rows` takes from 200,000 rows on), for the
        service's sake: every offer a recommend shows is explained by the propensity model's TreeSHAP contributions,
        whose cost grows with its leaves. On the 20,000-customer demo world the model stopped at 42 trees (1,302
        leaves) instead of 117 (3,627) at 0.05, with the same test log loss (0.4412 against 0.4418; ROC-AUC 0.788
        against 0.789, ECE 0.0117 against 0.0109); three offers' contributions cost 60 us instead of 234 in process,
        and a recommend 934-944 us of server CPU instead of 1,045-1,117 (``bench.decision_server``, two alternated
        runs). The price: the policy captured 72.5% / 72.7% of the oracle's value gain instead of 73.5% / 73.8%
        (``bench.policy``, test worlds 1007-1009 / 2024-2026).

        A model on a user's own table: the defaults.

        Whatever the model, :func:`fit_split` adapts these to the number of training rows (:meth:`for_rows`): the
        small steps that suit the demo's tens of thousands of rows are needlessly slow on a million.
        """
        overrides: dict[str, float] = {
            "churn": {"num_leaves": 7, "min_data_in_leaf": 100, "learning_rate": 0.02, "max_cat_to_onehot": 8},
            "resolution": {"num_leaves": 4, "min_data_in_leaf": 300, "feature_fraction": 1.0},
            "propensity": {"learning_rate": 0.1},
        }.get(kind, {})
        # Small trees learn slowly: churn's and resolution's get room for 2,000 rounds and wait 100 for the validation
        # loss to improve.
        patience = {"max_rounds": 2000, "early_stopping_rounds": 100} if kind in ("churn", "resolution") else {}
        return cls(seed=seed, **overrides, **patience)  # type: ignore[arg-type]

    def for_rows(self, rows: int) -> TrainParams:
        """These settings for a training split of ``rows`` rows: the same below :data:`LARGE_TRAINING_ROWS`; from
        there on trees of at least :data:`LARGE_NUM_LEAVES` leaves, a learning rate of at least
        :data:`LARGE_LEARNING_RATE`, and early stopping after at most :data:`LARGE_PATIENCE` rounds.

        Small trees and small steps keep a model from fitting the noise of a few thousand rows, at the price of many
        rounds, and learn so slowly that early stopping must wait long (churn's and resolution's reasons are in
        :meth:`for_model`). With hundreds of thousands of rows each leaf's value is averaged over far more of them,
        so larger trees and steps fit no more noise and early stopping comes in a fraction of the rounds: on a
        million rows churn's slow trees (7 leaves, learning rate 0.02) had not early-stopped after 2,000 rounds;
        with 7 leaves at rate 0.1 they stopped after 1,389, and with 31 leaves after 389 waiting 100 rounds or 263
        waiting 40, each time with the same test ROC-AUC and log loss to within a thousandth
        (``bench.training_scale``, figures in the README's benchmarks).
        """
        if rows < LARGE_TRAINING_ROWS:
            return self
        return replace(
            self,
            learning_rate=max(self.learning_rate, LARGE_LEARNING_RATE),
            num_leaves=max(self.num_leaves, LARGE_NUM_LEAVES),
            early_stopping_rounds=min(self.early_stopping_rounds, LARGE_PATIENCE),
        )

    def booster_params(self) -> dict[str, object]:
        """The parameter dict LightGBM receives."""
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "max_cat_to_onehot": self.max_cat_to_onehot,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": train_threads(),
            "verbosity": -1,
        }


@dataclass(frozen=True)
class HeldOut:
    """The test split's model inputs and labels, kept for the run's report (reliability diagram, SHAP)."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class TrainingResult:
    """A trained bundle, what to record about how it was made, and the rows it was tested on."""

    bundle: ModelBundle
    params: dict[str, object]
    tags: dict[str, str]
    held_out: HeldOut


@cache
def code_version() -> str:
    """The git commit this code was run from (``+dirty`` with uncommitted changes), else the package version.

    Asked once per process: a run is reproducible only if its code can be found again.
    """
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode == 0:
            dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
            return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        return f"nba-copilot {metadata.version('nba-copilot')}"
    except metadata.PackageNotFoundError:
        return "unknown"


Split = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Row masks: train, validation (early stopping and calibration), test (metrics only)."""


def _time_split(ts: np.ndarray, source: Path) -> Split:
    """Masks for train / validation / test: the last decision date tests, the one before validates."""
    dates = np.unique(ts)
    if len(dates) < 3:
        found = ", ".join(str(np.datetime_as_string(d, unit="D")) for d in dates)
        raise DatasetError(
            f"{source}: need labels on at least 3 distinct dates to split by time into train / validation / test, "
            f"found {len(dates)}: {found or 'none'}"
        )
    return ts < dates[-2], ts == dates[-2], ts == dates[-1]


def fit_split(
    kind: ModelKind,
    x: np.ndarray,
    y: np.ndarray,
    split: Split,
    *,
    feature_names: tuple[str, ...],
    categorical: list[int],
    contract_version: str,
    actions: tuple[str, ...],
    params: TrainParams,
    source: Path,
    monotone: tuple[int, ...] = (),
    periods: np.ndarray | None = None,
    methods: tuple[CalibrationMethod, ...] = CALIBRATION_METHODS,
) -> TrainingResult:
    """Train on the split's first rows with early stopping on its second, calibrate on the second, score the third.

    ``params`` are adapted to the number of training rows (:meth:`TrainParams.for_rows`); the settings used are
    the ones returned in :attr:`TrainingResult.params`. ``monotone``: LightGBM's ``monotone_constraints``, one per
    feature (1 rising, -1 falling, 0 free); none by default.

    ``periods`` (one label per row, e.g. the decision date) calibrates on out-of-period predictions instead of
    the validation rows alone: see :func:`_out_of_period`. ``methods``: the calibrators to choose from (see
    :func:`~training.calibrate.choose_calibrator`).
    """
    train, valid, test = split
    params = params.for_rows(int(train.sum()))
    for part, mask in (("train", train), ("validation", valid), ("test", test)):
        if len(np.unique(y[mask])) < 2:
            raise DatasetError(f"{source}: {kind}: the {part} split has only one class; the label column cannot train")
    booster_params = params.booster_params() | ({"monotone_constraints": list(monotone)} if monotone else {})

    def dataset(mask: np.ndarray) -> lgb.Dataset:
        return lgb.Dataset(
            x[mask], y[mask], feature_name=list(feature_names), categorical_feature=categorical, free_raw_data=False
        )

    dtrain = dataset(train)
    booster = lgb.train(
        booster_params,
        dtrain,
        num_boost_round=params.max_rounds,
        valid_sets=[lgb.Dataset(x[valid], y[valid], reference=dtrain)],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    if periods is None:
        raw, outcome = np.asarray(booster.predict(x[valid]), dtype=np.float64), y[valid]
    else:

        def refit(mask: np.ndarray) -> lgb.Booster:
            return lgb.train(booster_params, dataset(mask), num_boost_round=booster.best_iteration)

        raw, outcome = _out_of_period(x, y, periods, ~test, refit)
    calibrator = choose_calibrator(raw, outcome, seed=params.seed, methods=methods)
    uncalibrated = ModelBundle(kind, booster, calibrator, feature_names, contract_version, actions)
    metrics = classification_metrics(y[test], uncalibrated.predict(x[test]))
    metrics["best_iteration"] = float(booster.best_iteration)
    bundle = ModelBundle(kind, booster, calibrator, feature_names, contract_version, actions, metrics)
    return TrainingResult(
        bundle,
        params={
            **asdict(params),
            "calibration": calibrator.method,
            "calibration_rows": len(outcome),
            "rows_train": int(train.sum()),
        },
        tags={
            "contract_version": contract_version,
            "dataset_sha256": _sha256(source),
            "kind": kind,
            "code_version": code_version(),
            **({ACTIONS_TAG: ",".join(actions)} if actions else {}),
        },
        held_out=HeldOut(x[test], y[test]),
    )


def _out_of_period(
    x: np.ndarray, y: np.ndarray, periods: np.ndarray, fitted: np.ndarray, refit: Callable[[np.ndarray], lgb.Booster]
) -> tuple[np.ndarray, np.ndarray]:
    """Raw predictions for every ``fitted`` row by a model that never saw its period, and their outcomes.

    ``refit(mask)`` trains a booster like the final one (same settings and rounds) on the rows of ``mask``; each
    period of the ``fitted`` rows is predicted by one trained on the other periods of them. Why: the validation
    period alone is one month of decisions, and its outcome rate is a draw. The demo world's validation month
    had 1,096 offers accepted at 20.0% where the oracle expected 22.8% (2.2 standard errors); a calibrator fitted
    on it lowered every test prediction (test ECE 0.043). Calibrating on all the months before the test month,
    each predicted out of period, averages that chance out (0.027; the test month's chance level is 0.024).
    """
    raw, outcome = [], []
    for period in np.unique(periods[fitted]):
        held = fitted & (periods == period)
        raw.append(np.asarray(refit(fitted & ~held).predict(x[held]), dtype=np.float64))
        outcome.append(y[held])
    return np.concatenate(raw), np.concatenate(outcome)


def _read_labels(path: Path, required: tuple[str, ...]) -> pa.Table:
    if not path.is_file():
        raise DatasetError(f"{path}: no such label table")
    table = pq.read_table(path)
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    if table.num_rows == 0:
        raise DatasetError(f"{path}: the table is empty")
    return table


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _logged_actions(labels: pa.Table, offers_path: Path) -> pa.Table:
    """``labels`` with the ``action_id`` decided for each customer-month (``no_action`` where none was logged)
    and whether it was ``accepted`` (0 where nothing was offered).

    The offers table beside the labels is the decision log: one row per decision, keyed like the labels.
    """
    offers = _read_labels(offers_path, ("customer_id", "ts", "action_id", "accepted"))
    joined = labels.join(
        offers.select(["customer_id", "ts", "action_id", "accepted"]), ["customer_id", "ts"], join_type="left outer"
    )
    for name, missing in (("action_id", NO_ACTION), ("accepted", 0)):
        at = joined.column_names.index(name)
        joined = joined.set_column(at, name, pc.fill_null(joined.column(name), missing))
    return joined


def _with_action_codes(offline: OfflineStore, frame: pa.Table, actions: tuple[str, ...]) -> np.ndarray:
    """The frame's model inputs with the code of its ``action_id`` (an index into ``actions``) appended."""
    codes = pc.index_in(frame.column("action_id"), value_set=pa.array(actions)).to_numpy(zero_copy_only=False)
    return np.column_stack([offline.model_matrix("customer", frame), codes.astype(np.float64)])


def train_churn(registry: Registry, offline: OfflineStore, labels_path: Path, *, params: TrainParams) -> TrainingResult:
    """Churn within 30 days of a decision date, from the customer's features as of that date, the action then
    offered and whether the customer accepted it (the decision log, ``offers.parquet``, beside the labels)."""
    labels = _logged_actions(
        _read_labels(labels_path, ("customer_id", "ts", "churned")), labels_path.parent / LABEL_TABLES["propensity"]
    )
    actions = tuple(sorted({NO_ACTION, *labels.column("action_id").to_pylist()}))
    frame = offline.point_in_time("customer", labels)
    schema = registry.entity("customer")
    accepted = frame.column("accepted").to_numpy(zero_copy_only=False).astype(np.float64)
    return fit_split(
        "churn",
        np.column_stack([_with_action_codes(offline, frame, actions), accepted]),
        frame.column("churned").to_numpy().astype(np.int8),
        _time_split(frame.column("ts").to_numpy(), labels_path),
        feature_names=(*schema.model_names, ACTION_FEATURE, ACCEPTED_FEATURE),
        categorical=[*schema.categorical_indices, len(schema.model_names)],
        contract_version=registry.version,
        actions=actions,
        params=params,
        source=labels_path,
        methods=("sigmoid",),  # the policy subtracts its predictions: no isotonic steps (see choose_calibrator)
    )


def train_propensity(
    registry: Registry, offline: OfflineStore, offers_path: Path, *, params: TrainParams
) -> TrainingResult:
    """P(customer accepts action), one model over all actions with the action as a categorical input.

    "no_action" rows are left out: nothing is offered, so there is nothing to accept.
    """
    offers = _read_labels(offers_path, ("customer_id", "ts", "action_id", "accepted"))
    offers = offers.filter(pc.not_equal(offers.column("action_id"), NO_ACTION))
    actions = tuple(sorted(set(offers.column("action_id").to_pylist())))
    if not actions:
        raise DatasetError(f"{offers_path}: no offered action besides no_action")
    frame = offline.point_in_time("customer", offers)
    schema = registry.entity("customer")
    ts = frame.column("ts").to_numpy()
    return fit_split(
        "propensity",
        _with_action_codes(offline, frame, actions),
        frame.column("accepted").to_numpy().astype(np.int8),
        _time_split(ts, offers_path),
        feature_names=(*schema.model_names, ACTION_FEATURE),
        categorical=[*schema.categorical_indices, len(schema.model_names)],
        contract_version=registry.version,
        actions=actions,
        params=params,
        source=offers_path,
        # A month holds a few hundred to a few thousand offers: one month's acceptance rate is too noisy to
        # calibrate on (see _out_of_period).
        periods=ts,
    )


LABEL_TABLES: dict[ModelKind, str] = {
    "churn": "churn_labels.parquet",
    "propensity": "offers.parquet",
    "resolution": "contacts.parquet",
}
"""The label table each model trains from, in the offline store's folder."""


def train_model(kind: ModelKind, registry: Registry, offline: OfflineStore, *, params: TrainParams) -> TrainingResult:
    """Train ``kind`` from its label table beside the offline store's snapshots.

    The resolution model checks itself against the oracle when the folder holds a simulated world (its
    ``world.json`` stamp): real contacts have no ground truth to compare with.
    """
    source = offline.root / LABEL_TABLES[kind]
    if kind == "resolution":
        # Imported here: training.resolution builds on this module's fit_split.
        from training.resolution import train_resolution

        oracle = (offline.root / WORLD_STAMP).is_file()
        return train_resolution(registry, offline, source, params=params, oracle=oracle)
    trainer = train_churn if kind == "churn" else train_propensity
    return trainer(registry, offline, source, params=params)
