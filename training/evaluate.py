"""Held-out metrics for a probability model: ranking, calibration and business lift."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


@dataclass(frozen=True)
class CalibrationBin:
    """One equal-width probability bin: how many predictions fell in it, their mean and the observed rate."""

    lower: float
    upper: float
    count: int
    mean_predicted: float
    observed_rate: float


def calibration_bins(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> list[CalibrationBin]:
    """The bins of the reliability diagram and of :func:`expected_calibration_error`; empty bins hold NaNs."""
    # floor(p * bins) rather than linspace edges, whose rounding (0.30000000000000004) misfiles 0.3.
    which = np.clip(np.floor(p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        seen = bool(mask.any())
        out.append(
            CalibrationBin(
                b / bins,
                (b + 1) / bins,
                int(mask.sum()),
                float(p[mask].mean()) if seen else float("nan"),
                float(y[mask].mean()) if seen else float("nan"),
            )
        )
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> float:
    """Mean gap between predicted and observed rates over equal-width probability bins, weighted by size."""
    return float(
        sum(
            b.count / len(p) * abs(b.mean_predicted - b.observed_rate)
            for b in calibration_bins(y, p, bins=bins)
            if b.count
        )
    )


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Positive rate among the 10% highest scores over the overall rate: what a targeted list gains."""
    k = max(1, len(p) // 10)
    top = np.argsort(-p, kind="stable")[:k]
    base = y.mean()
    return float(y[top].mean() / base) if base > 0 else float("nan")


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The metrics every probability model logs, on one held-out set."""
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_top_decile": top_decile_lift(y, p),
        "positive_rate": float(y.mean()),
        "rows": float(len(y)),
    }


def describe_metrics(metrics: dict[str, float]) -> str:
    """The held-out metrics in one line, as the train commands print them."""
    return (
        f"test ROC-AUC {metrics['roc_auc']:.3f}, PR-AUC {metrics['pr_auc']:.3f}, log loss {metrics['log_loss']:.4f}, "
        f"Brier {metrics['brier']:.4f}, ECE {metrics['ece']:.4f}, top-decile lift {metrics['lift_top_decile']:.2f}"
    )


def ece_noise_floor(p: np.ndarray, *, draws: int = 200, seed: int = 0) -> float:
    """The mean ECE a perfectly calibrated model would show on ``len(p)`` rows predicted ``p``: outcomes drawn from
    ``p`` itself still stray from it by chance in each bin. On a few thousand rows this is ~0.01-0.02, so a
    measured ECE near it says the calibration error is too small for the test set to tell apart from noise."""
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error((rng.random(len(p)) < p).astype(float), p) for _ in range(draws)]))
