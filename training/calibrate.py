"""Probability calibration: isotonic or sigmoid (Platt), whichever predicts held-out data better.

LightGBM's raw probabilities are ranked well but are not frequencies; the value arithmetic in the
service multiplies them by money, so they must be. The choice is made on one half of the validation
set and checked on the other, then the winner is refit on all of it.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

_EPS = 1e-6
CalibrationMethod = Literal["isotonic", "sigmoid"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = get_args(CalibrationMethod)


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.minimum(np.maximum(p, _EPS), 1 - _EPS)  # np.clip's values, NaN included, without its Python wrapper
    return np.asarray(np.log(q / (1 - q))).reshape(-1, 1)


class Calibrator:
    """Maps raw model probabilities to calibrated ones."""

    def __init__(self, *, method: CalibrationMethod) -> None:
        self.method = method

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """Learn the mapping from validation predictions ``raw`` to outcomes ``y``."""
        if self.method == "isotonic":
            self.model_: IsotonicRegression | LogisticRegression = IsotonicRegression(
                y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip"
            ).fit(raw, y)
        else:
            self.model_ = LogisticRegression(C=1e6).fit(_logit(raw), y)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw ones.

        The fitted mapping is applied as plain numpy arithmetic, not through scikit-learn's ``predict``: a request
        calibrates a few rows, and scikit-learn's input validation cost ~55 us a call, more than LightGBM's predict
        (10% of a recommend's CPU in the profile). The same numbers as :meth:`transform_sklearn` (a test holds it).
        It clips by ``np.maximum``/``np.minimum``: the same values as ``np.clip`` (NaN included) without its
        Python-level wrapper, ~1.5 us of the ~9 us a call costs; an assign calibrates twice.
        """
        model = self.model_
        if isinstance(model, IsotonicRegression):
            # IsotonicRegression.predict with out_of_bounds="clip": clip to the fitted range, interpolate linearly
            # between the thresholds (one threshold: a constant).
            x = np.minimum(np.maximum(np.asarray(raw, dtype=np.float64).reshape(-1), model.X_min_), model.X_max_)
            return np.interp(x, model.X_thresholds_, model.y_thresholds_)
        # LogisticRegression.predict_proba for two classes: the logistic of the decision function.
        z = _logit(raw)[:, 0] * float(model.coef_[0, 0]) + float(model.intercept_[0])
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def transform_sklearn(self, raw: np.ndarray) -> np.ndarray:
        """:meth:`transform` through scikit-learn's own ``predict``/``predict_proba``: the reference it must equal."""
        if isinstance(self.model_, IsotonicRegression):
            return np.asarray(self.model_.predict(raw), dtype=np.float64)
        return np.asarray(self.model_.predict_proba(_logit(raw))[:, 1], dtype=np.float64)


def choose_calibrator(
    raw: np.ndarray, y: np.ndarray, *, seed: int, methods: tuple[CalibrationMethod, ...] = CALIBRATION_METHODS
) -> Calibrator:
    """Fit each of ``methods`` on half of ``raw``, keep the one with lower log loss on the other half.

    A model whose predictions are subtracted from one another (the churn model: an action's effect is its row's
    prediction minus ``no_action``'s) should pass ``("sigmoid",)``: isotonic regression is a step function, which
    maps two nearby scores to the same probability or to probabilities a whole step apart.
    """
    if not methods:
        raise ValueError("choose_calibrator needs at least one method")
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(raw)) < len(raw) // 2
    best: tuple[float, CalibrationMethod] | None = None
    for method in methods:
        candidate = Calibrator(method=method).fit(raw[half], y[half])
        loss = log_loss(y[~half], candidate.transform(raw[~half]), labels=[0, 1])
        if best is None or loss < best[0]:
            best = (loss, method)
    assert best is not None
    return Calibrator(method=best[1]).fit(raw, y)
