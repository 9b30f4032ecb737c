"""The resolution model: P(first-contact resolution) and expected handle time of a (contact, agent) pair.

Trained on the contacts table (who took each contact, whether it was resolved, how long it took), with the
frame of :mod:`training.resolution_frame`, split by time: the contacts of the newest 30 days test, the 30
days before validate (early stopping, calibration), the rest train. Two LightGBM models on the same rows,
in one bundle: a calibrated classifier of ``resolved`` and a regressor of ``handle_time_s``, whose baseline
in the same run is the agent's 30-day mean handle time.

On a simulated world the run also checks itself against the truth (:func:`oracle_check`): the model's
probabilities against the oracle's ``true_resolution_probability`` of the same pairs, and the routing
evaluation of :mod:`training.routing_evaluation` on the test contacts (random, skills-only, model and oracle
routing, each pick scored by the oracle).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from features import OfflineStore, Registry
from training.bundle import ModelBundle
from training.evaluate import ece_noise_floor, expected_calibration_error
from training.resolution_frame import (
    STARTED,
    categorical_indices,
    contact_categories,
    feature_names,
    matched_inputs,
    pair_frame,
    pair_matrix,
    time_split,
)
from training.routing_evaluation import RoutingEvaluation, evaluate_routing, held_out_contacts, oracle_inputs
from training.train import Split, TrainingResult, TrainParams, _read_labels, fit_split
from training.world.routing_oracle import true_resolution_probability

RISING = ("intent_proficiency", "intent_resolution_rate_90d", "intent_resolution_rate_180d", "experience_months")
"""Inputs whose rise never lowers P(resolution): the rating and measured rates for the intent, experience."""


def _fit_handle_time(x: np.ndarray, seconds: np.ndarray, split: Split, params: TrainParams) -> lgb.Booster:
    train, valid, _ = split
    params = params.for_rows(int(train.sum()))  # as fit_split adapts the classifier's
    dtrain = lgb.Dataset(x[train], seconds[train], free_raw_data=False)
    return lgb.train(
        {**params.booster_params(), "objective": "regression", "metric": "l2"},
        dtrain,
        num_boost_round=params.max_rounds,
        valid_sets=[lgb.Dataset(x[valid], seconds[valid], reference=dtrain)],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )


def _regression_metrics(prefix: str, y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        f"{prefix}_mae": float(mean_absolute_error(y, predicted)),
        f"{prefix}_rmse": float(np.sqrt(mean_squared_error(y, predicted))),
        f"{prefix}_r2": float(r2_score(y, predicted)),
    }


def train_resolution(
    registry: Registry, offline: OfflineStore, contacts_path: Path, *, params: TrainParams, oracle: bool
) -> TrainingResult:
    """Both models of the resolution bundle from ``contacts_path``; with ``oracle`` (a simulated world) the
    run's metrics include :func:`oracle_check` on the test contacts."""
    required = ("customer_id", "agent_id", STARTED, "intent", "channel", "language", "resolved", "handle_time_s")
    contacts = _read_labels(contacts_path, required)
    frame = pair_frame(offline, contacts)
    x = pair_matrix(registry, offline, frame)
    split = time_split(frame.column(STARTED), contacts_path)
    result = fit_split(
        "resolution",
        x,
        frame.column("resolved").to_numpy().astype(np.int8),
        split,
        feature_names=feature_names(registry),
        categorical=categorical_indices(registry),
        contract_version=registry.version,
        actions=(),
        params=params,
        source=contacts_path,
        monotone=tuple(int(name in RISING) for name in feature_names(registry)),
    )
    seconds = frame.column("handle_time_s").to_numpy().astype(np.float64)
    handle_time = _fit_handle_time(x, seconds, split, params)
    train, _, test = split
    baseline = frame.column("handle_time_mean_30d_s").to_numpy(zero_copy_only=False).astype(np.float64)[test]
    baseline = np.where(np.isnan(baseline), seconds[train].mean(), baseline)
    bundle = replace(
        result.bundle,
        handle_time=handle_time,
        contact_fields=contact_categories(registry),
        matched=matched_inputs(registry),
    )
    metrics = {
        **bundle.metrics,
        **_regression_metrics("handle_time", seconds[test], bundle.predict_handle_time(x[test])),
        **_regression_metrics("handle_time_baseline", seconds[test], baseline),
        "handle_time_best_iteration": float(handle_time.best_iteration),
    }
    if oracle:
        checked = (frame.filter(pa.array(test)), held_out_contacts(contacts, contacts_path))
        metrics |= oracle_check(bundle, registry, offline, *checked, seed=params.seed)
    return replace(result, bundle=replace(bundle, metrics=metrics))


def oracle_check(
    bundle: ModelBundle, registry: Registry, offline: OfflineStore, test: pa.Table, contacts: pa.Table, *, seed: int
) -> dict[str, float]:
    """The model against the world's truth on the test contacts (``test``: their rows of the training frame;
    ``contacts``: the same contacts as the contacts table holds them).

    ``truth_*``: the model's P(resolution) of each contact's actual pair against the oracle's (correlation,
    mean absolute gap, and the calibration error against the true probability per bin of the model's, which
    no label noise blurs). ``routing_*``: :func:`~training.routing_evaluation.evaluate_routing` on the same
    contacts.
    """
    p = bundle.predict(pair_matrix(registry, offline, test))
    truth = true_resolution_probability(*oracle_inputs(offline.root, test))
    out = {
        "truth_corr": float(np.corrcoef(p, truth)[0, 1]),
        "truth_mae": float(np.abs(p - truth).mean()),
        "truth_ece": expected_calibration_error(truth, p),
        "ece_noise_floor": ece_noise_floor(p, seed=seed),
    }
    return out | evaluate_routing(bundle, registry, offline, contacts, seed=seed).metrics()


def describe_resolution(metrics: dict[str, float]) -> list[str]:
    """The handle-time model against its baseline and, on a simulated world, the check against the truth, as
    lines for the train command (the classifier's own line is :func:`training.evaluate.describe_metrics`)."""
    m = metrics
    lines = [
        f"handle time: test MAE {m['handle_time_mae']:.0f} s, RMSE {m['handle_time_rmse']:.0f} s, "
        f"R² {m['handle_time_r2']:.3f}; the agent's 30-day mean: MAE {m['handle_time_baseline_mae']:.0f} s, "
        f"RMSE {m['handle_time_baseline_rmse']:.0f} s, R² {m['handle_time_baseline_r2']:.3f}"
    ]
    if "truth_corr" in m:
        lines.append(
            f"against the oracle: correlation {m['truth_corr']:.3f}, mean |p - p_true| {m['truth_mae']:.3f}, "
            f"calibration error against p_true {m['truth_ece']:.3f} (the test ECE of a perfectly calibrated model "
            f"on these {m['rows']:,.0f} contacts would be {m['ece_noise_floor']:.3f} by chance)"
        )
        lines += RoutingEvaluation.from_metrics(m).lines()
    return lines
