"""The resolution model: P(first-contact resolution) and expected handle time of a (contact, agent) pair.

Trained on the contacts table (who took each contact, whether it was resolved, how long it took), with the
frame of :mod:`training.resolution_frame`, split by time: the contacts of the newest 30 days test, the 30
days before validate (early stopping, calibration), the rest train. Two LightGBM models on the same rows,
in one bundle: a calibrated classifier of ``resolved`` and a regressor of ``handle_time_s``, whose baseline
in the same run is the agent's 30-day mean handle time.

On a simulated world the run also checks itself against the truth (:func:`oracle_check`): the model's
probabilities against the oracle's ``true_resolution_probability`` of the same pairs, and the resolution rate
routing would achieve on the test contacts choosing among candidate agents by the model, by the agent's
measured 30-day resolution rate, by the contract's per-intent proficiency (the service's fallback), at
random and by the oracle, each scored with the oracle's probabilities.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from features import OfflineStore, Registry
from training.bundle import ModelBundle
from training.errors import DatasetError
from training.evaluate import calibration_bins
from training.resolution_frame import (
    STARTED,
    categorical_indices,
    contact_categories,
    feature_names,
    pair_frame,
    pair_matrix,
    with_agent,
)
from training.train import Split, TrainingResult, TrainParams, _read_labels, fit_split
from training.world.config import _INTENT_SKILL
from training.world.oracle import true_resolution_probability

PERIOD = timedelta(days=30)
CANDIDATES = 20
"""Agents free at the moment a test contact is routed, drawn at random, in the routing check."""
POLICIES = ("model", "measured_rate", "proficiency", "random", "oracle")


def time_split(started: pa.ChunkedArray | pa.Array, source: Path) -> Split:
    """Masks: contacts started in the newest 30 days test, the 30 days before validate, older ones train."""
    ts = started.to_numpy() if isinstance(started, pa.Array) else started.combine_chunks().to_numpy()
    if len(ts) == 0:
        raise DatasetError(f"{source}: no contacts")
    newest = ts.max()
    test_from = newest - np.timedelta64(PERIOD)
    valid_from = test_from - np.timedelta64(PERIOD)
    split = (ts <= valid_from, (ts > valid_from) & (ts <= test_from), ts > test_from)
    if not all(m.any() for m in split):
        raise DatasetError(
            f"{source}: need contacts over more than 60 days to split by time into train / validation (30 days) / "
            f"test (the newest 30 days); they span {(newest - ts.min()).astype('timedelta64[D]')}"
        )
    return split


def _fit_handle_time(x: np.ndarray, seconds: np.ndarray, split: Split, params: TrainParams) -> lgb.Booster:
    train, valid, _ = split
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
    )
    seconds = frame.column("handle_time_s").to_numpy().astype(np.float64)
    handle_time = _fit_handle_time(x, seconds, split, params)
    train, _, test = split
    baseline = frame.column("handle_time_mean_30d_s").to_numpy(zero_copy_only=False).astype(np.float64)[test]
    baseline = np.where(np.isnan(baseline), seconds[train].mean(), baseline)
    bundle = replace(result.bundle, handle_time=handle_time, contact_fields=contact_categories(registry))
    metrics = {
        **bundle.metrics,
        **_regression_metrics("handle_time", seconds[test], bundle.predict_handle_time(x[test])),
        **_regression_metrics("handle_time_baseline", seconds[test], baseline),
        "handle_time_best_iteration": float(handle_time.best_iteration),
    }
    if oracle:
        metrics |= oracle_check(bundle, registry, offline, frame.filter(pa.array(test)), seed=params.seed)
    return replace(result, bundle=replace(bundle, metrics=metrics))


def _truth(frame: pa.Table) -> np.ndarray:
    """The oracle's P(resolution) of each row's (contact, agent) pair."""
    agents = {
        name: frame.column(name).to_numpy(zero_copy_only=False)
        for name in frame.column_names
        if name.startswith(("skill_", "speaks_", "proficiency_"))
    }
    intent = frame.column("contact_intent").to_numpy(zero_copy_only=False)
    language = frame.column("contact_language").to_numpy(zero_copy_only=False)
    return true_resolution_probability(intent, language, agents)


def oracle_check(
    bundle: ModelBundle, registry: Registry, offline: OfflineStore, test: pa.Table, *, seed: int
) -> dict[str, float]:
    """The model against the world's truth on the test contacts (``test``: rows of the training frame).

    ``truth_*``: the model's P(resolution) of each contact's actual pair against the oracle's (correlation,
    mean absolute gap, and the calibration error against the true probability per bin of the model's).
    ``routing_fcr_<policy>``: the oracle's mean P(resolution) of the agent each policy picks among the
    eligible of :data:`CANDIDATES` agents drawn per contact (speaks its language, holds the skill its intent
    needs: the service's hard constraints). ``routing_gain_captured``: the model's share of the oracle's gain
    over random.
    """
    p = bundle.predict(pair_matrix(registry, offline, test))
    truth = _truth(test)
    bins = calibration_bins(truth, p)
    out = {
        "truth_corr": float(np.corrcoef(p, truth)[0, 1]),
        "truth_mae": float(np.abs(p - truth).mean()),
        "truth_ece": float(sum(b.count / len(p) * abs(b.mean_predicted - b.observed_rate) for b in bins if b.count)),
    }
    return out | routing_check(bundle, registry, offline, test, seed=seed)


def routing_check(
    bundle: ModelBundle, registry: Registry, offline: OfflineStore, test: pa.Table, *, seed: int
) -> dict[str, float]:
    """See :func:`oracle_check`: the resolution rate each routing policy achieves on the test contacts."""
    agent_ids = offline.latest("agent").column("agent_id")
    k = min(CANDIDATES, len(agent_ids))
    if k == 0:
        raise DatasetError(f"{offline.table_path('agent')}: no agents to route the test contacts to")
    rng = np.random.default_rng(seed)
    # The test rows without their own agent's features: each contact is joined again with its candidates'.
    own_agent = {*registry.entity("agent").names, "agent_feature_ts"}
    contacts = test.drop_columns([c for c in test.column_names if c in own_agent])
    drawn = np.concatenate([rng.choice(len(agent_ids), k, replace=False) for _ in range(contacts.num_rows)])
    candidates = contacts.take(np.repeat(np.arange(contacts.num_rows), k))
    candidates = candidates.set_column(
        candidates.column_names.index("agent_id"), "agent_id", agent_ids.take(pa.array(drawn))
    )
    rows = with_agent(offline, candidates)
    intent = rows.column("contact_intent").to_numpy(zero_copy_only=False)
    language = rows.column("contact_language").to_numpy(zero_copy_only=False)
    skill = np.array([_INTENT_SKILL[i] for i in intent])
    eligible = np.zeros(rows.num_rows, dtype=bool)
    proficiency = np.full(rows.num_rows, np.nan)
    for s in set(_INTENT_SKILL.values()):
        m = skill == s
        eligible[m] = _flag(rows, f"skill_{s}")[m]
        proficiency[m] = _number(rows, f"proficiency_{s}")[m]
    for lang in set(language.tolist()):
        m = language == lang
        eligible[m] &= _flag(rows, f"speaks_{lang}")[m]
    truth = _truth(rows)
    scores = {
        "model": bundle.predict(pair_matrix(registry, offline, rows)),
        "measured_rate": np.nan_to_num(_number(rows, "resolution_rate_30d"), nan=-1.0),
        "proficiency": proficiency,
        "oracle": truth,
    }
    achieved: dict[str, list[float]] = {name: [] for name in POLICIES}
    for start in range(0, rows.num_rows, k):  # with_agent keeps the order: each contact's k candidates in a row
        at = start + np.flatnonzero(eligible[start : start + k])
        if len(at) == 0:
            continue
        for name, score in scores.items():
            achieved[name].append(float(truth[at[np.argmax(score[at])]]))
        achieved["random"].append(float(truth[at].mean()))  # the expectation of a uniform pick
    served = len(achieved["random"])
    if served == 0:
        raise DatasetError("routing check: no test contact had an eligible candidate agent")
    out = {f"routing_fcr_{name}": float(np.mean(v)) for name, v in achieved.items()}
    gain = out["routing_fcr_oracle"] - out["routing_fcr_random"]
    out["routing_gain_captured"] = (out["routing_fcr_model"] - out["routing_fcr_random"]) / gain if gain else 1.0
    out["routing_contacts"] = float(served)
    out["routing_candidates"] = float(k)
    return out


def _flag(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(pc.fill_null(table.column(name), False).to_numpy(zero_copy_only=False), dtype=bool)


def _number(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


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
            f"calibration error against p_true {m['truth_ece']:.3f}"
        )
        picks = ", ".join(
            f"{name.replace('_', ' ')} {m[f'routing_fcr_{name}']:.3f}"
            for name in ("model", "measured_rate", "proficiency", "random", "oracle")
        )
        lines.append(
            f"routing {m['routing_contacts']:,.0f} test contacts among {m['routing_candidates']:.0f} candidates, true "
            f"FCR of the agent picked by: {picks}; model captures {m['routing_gain_captured']:.0%} of the oracle's "
            "gain over random"
        )
    return lines
