"""Random draws shared by the simulation: categorical choices and moments in a month's active period."""

from __future__ import annotations

import numpy as np

from training.world.config import _ACTIVE_DAYS, _US_PER_DAY, _US_PER_S


def _sample(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (vectorised inverse-CDF)."""
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    return np.minimum((rng.random((len(probs), 1)) > cdf).sum(axis=1), probs.shape[1] - 1)


def _times(rng: np.random.Generator, n: int, snapshot_us: int) -> np.ndarray:
    """``n`` whole-second moments in the month's active period ``[snapshot - 28 days, snapshot - 1 hour)``."""
    span = _ACTIVE_DAYS * 86_400 - 3_600
    start: int = snapshot_us - _ACTIVE_DAYS * _US_PER_DAY
    return start + rng.integers(0, span, n).astype(np.int64) * _US_PER_S
