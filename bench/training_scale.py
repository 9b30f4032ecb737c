"""Models trained at scale: 1M rows x 60 features through the same code `nba train` runs, timed per model.

The issue's goal: 1M rows of ~60 features train in <= 60 s per model on this 2-core machine, memory stated.
The rows are synthetic but shaped like ours: the feature contract's customer model inputs (numbers, flags and
categorical codes with the contract's categories, ~8% missing) plus extra numeric columns up to ``--features``,
and a label drawn from a known logistic model with interactions and a base rate near the world's churn rate
(~10%), so early stopping meets a signal as hard to learn as the world's, neither trivial nor noise.

What is timed is :func:`training.train.fit_split`, the function every `nba train` goes through: LightGBM's
dataset binning, boosting with early stopping on the validation split, the calibrator chosen on validation, and
the test metrics, once with each model's own settings (:meth:`~training.train.TrainParams.for_model`: churn's,
resolution's, and the defaults propensity and a user's own table use), each against the goal. Printed beside them,
as this noisy machine's same-run baseline, the binning alone (``lightgbm.Dataset.construct``); the peak RSS while
each model trains (the high-water mark is reset before each, so generating the rows does not count) next to the
size of the feature matrix itself; and the load average, since other jobs on the machine stretch wall time.

    .venv/bin/python -m bench.training_scale [--rows 1000000 --features 60]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

from bench import peak_rss_gb, reset_peak_rss
from features import Registry
from training.bundle import ModelKind
from training.train import TrainParams, fit_split

GOAL_S = 60.0
KINDS: tuple[ModelKind, ...] = ("churn", "propensity", "resolution")
BASE_RATE = 0.10


def synthetic(rows: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], list[int]]:
    """Features (rows x width, float64 with NaN for missing), labels, names and categorical columns."""
    rng = np.random.default_rng(seed)
    schema = Registry.load().entity("customer")
    names = list(schema.model_names)[:width]
    categorical = [i for i in schema.categorical_indices if i < width]
    x = np.empty((rows, width), dtype=np.float64)
    for i, name in enumerate(names):
        feature = schema.feature(name)
        if i in categorical:
            x[:, i] = rng.integers(0, len(feature.categories or ("a", "b")), rows)
        elif feature.dtype == "bool":
            x[:, i] = rng.random(rows) < 0.3
        else:
            x[:, i] = rng.gamma(2.0, 5.0, rows)
    names += [f"extra_{i}" for i in range(len(names), width)]
    x[:, len(schema.model_names) :] = rng.normal(size=(rows, width - len(schema.model_names)))
    x[rng.random(x.shape) < 0.08] = np.nan
    # The truth: a sparse linear part, two interactions and one categorical effect on standardised inputs.
    z = np.nan_to_num((x - np.nanmean(x, axis=0)) / (np.nanstd(x, axis=0) + 1e-9))
    weights = np.where(rng.random(width) < 0.3, rng.normal(0, 0.6, width), 0.0)
    logit = z @ weights + 0.5 * z[:, 0] * z[:, 3] - 0.4 * np.abs(z[:, 5]) + 0.3 * (x[:, categorical[0]] == 1)
    low, high = -20.0, 20.0  # the intercept that makes the mean probability the base rate, by bisection
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if np.mean(1 / (1 + np.exp(-(logit + mid)))) < BASE_RATE else (low, mid)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(logit + low)))).astype(np.int8)
    return x, y, tuple(names), categorical


def main(argv: list[str] | None = None) -> None:
    """Build the rows, time the binning alone, then time fit_split; print the figures against the goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    schema_width = len(Registry.load().entity("customer").model_names)
    if args.features < schema_width or args.rows < 1_000:
        parser.error(f"--features must be at least the contract's {schema_width} inputs and --rows at least 1000")
    x, y, names, categorical = synthetic(args.rows, args.features, args.seed)
    # A time split as `nba train` makes one: the oldest 80% train, the next 10% validate, the newest 10% test.
    order = np.arange(args.rows)
    split = (order < 0.8 * args.rows, (order >= 0.8 * args.rows) & (order < 0.9 * args.rows), order >= 0.9 * args.rows)
    print(
        f"machine: {os.cpu_count()} cores, LightGBM {lgb.__version__}; rows {args.rows:,} x {args.features} features, "
        f"{y.mean():.1%} positive, matrix {x.nbytes / 1024**3:.2f} GB"
    )

    start = time.perf_counter()
    lgb.Dataset(x[split[0]], y[split[0]], categorical_feature=categorical, params={"verbosity": -1}).construct()
    binning_s = time.perf_counter() - start
    print(f"baseline, LightGBM binning of the training rows alone: {binning_s:.1f} s")

    # The settings differ per model (TrainParams.for_model), so each is timed with its own.
    verdicts = [_time_one(kind, x, y, split, names, categorical, vars(args)) for kind in KINDS]
    print(f"goal, every model on {args.rows:,} x {args.features} in <= {GOAL_S:.0f} s: " + ", ".join(verdicts))


def _time_one(
    kind: ModelKind,
    x: np.ndarray,
    y: np.ndarray,
    split: tuple[np.ndarray, np.ndarray, np.ndarray],
    names: tuple[str, ...],
    categorical: list[int],
    described: dict[str, object],
) -> str:
    """Time fit_split with ``kind``'s settings, print its figures and return its verdict against the goal."""
    rows, width = x.shape
    held_gb, load = peak_rss_gb(), os.getloadavg()[0]
    reset_peak_rss()
    with tempfile.TemporaryDirectory(prefix="nba-train-scale-") as tmp:
        source = Path(tmp) / "synthetic.json"  # the dataset's fingerprint: it is fully determined by these
        source.write_text(json.dumps(described), encoding="utf-8")
        start, cpu = time.perf_counter(), time.process_time()
        result = fit_split(
            kind,
            x,
            y,
            split,
            feature_names=names,
            categorical=categorical,
            contract_version="bench",
            actions=(),
            params=TrainParams.for_model(kind),
            source=source,
        )
        train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    metrics = result.bundle.metrics
    verdict = "met" if train_s <= GOAL_S else "NOT met"
    print(
        f"{kind} settings, fit_split (bin, boost with early stopping, calibrate, test): {train_s:.1f} s wall, "
        f"{cpu_s:.1f} s CPU, {metrics['best_iteration']:.0f} rounds; test ROC-AUC {metrics['roc_auc']:.4f}, "
        f"log loss {metrics['log_loss']:.4f}, ECE {metrics['ece']:.4f}; peak RSS while training "
        f"{peak_rss_gb():.2f} GB (before it {held_gb:.2f} GB); load average {load:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end"
    )
    print(f"goal: {kind} on {rows:,} x {width} in <= {GOAL_S:.0f} s: {verdict}")
    return f"{kind} {train_s:.0f} s {verdict}"


if __name__ == "__main__":
    main()
