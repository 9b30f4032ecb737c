"""What a training run leaves in MLflow beside its metrics: a reliability diagram, gain importance and a SHAP summary.

Each is a PNG to look at and a CSV to compare runs with. Plots are drawn on matplotlib ``Figure`` objects
(no pyplot, no global backend) and only here, which the service never imports: scoring stays free of
matplotlib. SHAP values are LightGBM's own ``pred_contrib`` (TreeSHAP), so no ``shap`` package is needed.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from training.bundle import ModelBundle
from training.evaluate import calibration_bins
from training.tracking import CHALLENGER, ModelRegistry
from training.train import TrainingResult

SHAP_ROWS = 5_000
"""Test rows the SHAP summary averages over at most: the mean |contribution| settles long before a million."""
TOP_FEATURES = 25
"""Bars drawn per plot; the CSVs list every feature."""
REPORT_FILES = (
    "reliability.png",
    "reliability.csv",
    "feature_importance.png",
    "feature_importance.csv",
    "shap_summary.png",
    "shap_summary.csv",
)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _bars(path: Path, title: str, xlabel: str, names: Sequence[str], values: np.ndarray) -> None:
    shown = min(TOP_FEATURES, len(names))
    fig = Figure(figsize=(7, 0.28 * shown + 1.2))
    ax = fig.add_subplot()
    ax.barh(list(reversed(names[:shown])), list(reversed(values[:shown])))
    ax.set_title(title if shown == len(names) else f"{title}, top {shown} of {len(names)}")
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def reliability(bundle: ModelBundle, p: np.ndarray, y: np.ndarray, out: Path) -> None:
    """Predicted probability against observed rate per bin, the bins :func:`expected_calibration_error` uses."""
    bins = calibration_bins(y, p)
    _write_csv(
        out / "reliability.csv",
        ("lower", "upper", "count", "mean_predicted", "observed_rate"),
        [(b.lower, b.upper, b.count, b.mean_predicted, b.observed_rate) for b in bins],
    )
    seen = [b for b in bins if b.count]
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot([b.mean_predicted for b in seen], [b.observed_rate for b in seen], marker="o", label=bundle.kind)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(f"{bundle.kind}: reliability on the test split ({len(p):,} rows)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=90)


def feature_importance(bundle: ModelBundle, out: Path) -> None:
    """Total gain of the splits on each feature, with the split count beside it."""
    gain = np.asarray(bundle.booster.feature_importance(importance_type="gain"), dtype=np.float64)
    splits = np.asarray(bundle.booster.feature_importance(importance_type="split"))
    order = np.argsort(-gain, kind="stable")
    names = [bundle.feature_names[i] for i in order]
    _write_csv(
        out / "feature_importance.csv",
        ("feature", "gain", "splits"),
        [(bundle.feature_names[i], float(gain[i]), int(splits[i])) for i in order],
    )
    _bars(out / "feature_importance.png", f"{bundle.kind}: feature importance", "total gain", names, gain[order])


def shap_summary(bundle: ModelBundle, x: np.ndarray, out: Path, *, seed: int = 0) -> None:
    """Mean |SHAP value| per feature on (a sample of) the test rows, in raw-score (log-odds) units."""
    if len(x) > SHAP_ROWS:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), SHAP_ROWS, replace=False))]
    mean_abs = np.abs(bundle.contributions(x)[:, :-1]).mean(axis=0)  # the last column is the bias
    order = np.argsort(-mean_abs, kind="stable")
    names = [bundle.feature_names[i] for i in order]
    _write_csv(
        out / "shap_summary.csv",
        ("feature", "mean_abs_shap"),
        [(bundle.feature_names[i], float(mean_abs[i])) for i in order],
    )
    _bars(
        out / "shap_summary.png",
        f"{bundle.kind}: SHAP summary ({len(x):,} test rows)",
        "mean |contribution| to the log-odds",
        names,
        mean_abs[order],
    )


def write_report(result: TrainingResult, out: Path) -> Path:
    """Every report file of ``result`` into ``out``, from the held-out test rows it was scored on."""
    out.mkdir(parents=True, exist_ok=True)
    held_out = result.held_out
    bundle = result.bundle
    reliability(bundle, bundle.predict(held_out.x), held_out.y, out)
    feature_importance(bundle, out)
    shap_summary(bundle, held_out.x, out)
    return out


def register_result(
    models: ModelRegistry,
    result: TrainingResult,
    *,
    aliases: tuple[str, ...] = (CHALLENGER,),
    name: str | None = None,
) -> str:
    """Log ``result`` with its report to MLflow and register its bundle (as ``name`` when given, else the
    kind's model); returns the new version."""
    with tempfile.TemporaryDirectory() as tmp:
        report = write_report(result, Path(tmp))
        return models.log_and_register(
            result.bundle, params=result.params, tags=result.tags, aliases=aliases, report=report, name=name
        )
