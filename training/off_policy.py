"""Off-policy value: what a target policy would have earned, estimated from decisions another policy logged.

A logged decision holds the context, the action the logging (behaviour) policy took, the probability ``p`` with
which it took it, and the realised reward ``r``. Re-weighting each reward by ``w = π(a | x) / p``, the target
policy's probability of the logged action over the behaviour's, turns the logging policy's outcomes into an
unbiased view of the target's, as long as the behaviour gave every action the target might take a chance:

- IPS (inverse propensity scoring): ``mean(w × r)``. Unbiased; its variance grows with the weights.
- SNIPS (self-normalised IPS): ``Σ w × r / Σ w``. A little biased, much steadier: a weighted mean of rewards,
  so it always lies within the range of the logged rewards.
- DR (doubly robust): ``mean(V̂(x) + w × (r − q̂(x, a)))``, where ``q̂`` is a reward model and
  ``V̂(x) = Σ_a π(a | x) q̂(x, a)`` the target's expected reward under it. Unbiased when the logged propensities
  are right whatever the reward model (it only moves the variance); the better ``q̂``, the narrower the interval.

Each estimate comes with a bootstrap 95% interval (percentile, decisions resampled with replacement, seeded),
the number of decisions, the effective sample size of the weights ``(Σ w)² / Σ w²`` (how many decisions the
estimate is really worth) and the largest weight (one decision's pull). The resamples of every estimator are
drawn once and shared: resample ``b`` counts how often each decision was drawn, and every estimator is a
ratio of two count-weighted sums (``Σ c × num / Σ c × den``), so all of them come out of one matrix product.

Deterministic target policies are the common case (a model's argmax): ``π(a | x)`` is 1 on the chosen action
and 0 elsewhere, so ``w`` is ``1 / p`` on decisions where the logged action is the target's and 0 elsewhere.
This module is numpy only; ``nba shadow evaluate`` (:mod:`training.shadow_cli`) feeds it a logged file, and the
shadow report feeds it the service's decision log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from training.errors import OffPolicyError

IPS, SNIPS, DR = "IPS", "SNIPS", "DR"
RESAMPLES = 1_000
LEVEL = 0.95
_CELLS = 4_000_000
"""Resample counts held at once (resamples × decisions): ~32 MB of float64, whatever the log's size."""

FIELDS: dict[str, str] = {
    "reward": "the reward",
    "propensity": "the logging policy's probability of the logged action",
    "target": "the target policy's probability of the logged action",
    "model_logged": "the reward model's prediction for the logged action",
    "model_target": "the target policy's expected reward under the reward model",
}
"""What each array of :class:`LoggedDecisions` holds, for error messages."""


@dataclass(frozen=True)
class Estimate:
    """One estimator's value of the target policy, with its interval and what it rests on."""

    estimator: str
    value: float
    low: float
    high: float
    decisions: int
    effective_sample_size: float
    max_weight: float

    def as_dict(self) -> dict[str, float | int | str]:
        """The figures by name, for ``--format json`` and MLflow."""
        return {
            "estimator": self.estimator,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "decisions": self.decisions,
            "effective_sample_size": self.effective_sample_size,
            "max_weight": self.max_weight,
        }


@dataclass(frozen=True)
class LoggedDecisions:
    """The logged decisions as the estimators read them, one entry per decision, checked on construction.

    ``model_logged`` and ``model_target`` come together (a reward model) or not at all; without them DR is not
    estimated. ``columns`` names where each array came from (a file's column), so an error points at it.
    """

    reward: np.ndarray
    propensity: np.ndarray
    target: np.ndarray
    model_logged: np.ndarray | None = None
    model_target: np.ndarray | None = None
    columns: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.model_logged is None) != (self.model_target is None):
            raise ValueError("give model_logged and model_target together (a reward model) or neither")
        arrays = {name: np.asarray(getattr(self, name), dtype=np.float64) for name in FIELDS}
        present = {name: a for name, a in arrays.items() if getattr(self, name) is not None}
        for name, a in present.items():
            if a.ndim != 1:
                raise OffPolicyError(f"{self._name(name)}: expected one value per decision, got shape {a.shape}")
            object.__setattr__(self, name, a)
        sizes = {name: len(a) for name, a in present.items()}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{self._name(n)} {size}" for n, size in sizes.items())
            raise OffPolicyError(f"the columns differ in length: {listed}")
        if sizes["reward"] == 0:
            raise OffPolicyError("no decisions to evaluate: the log is empty")
        for name, a in present.items():
            self._check(name, a, ~np.isfinite(a), "missing or not a finite number")
        self._check("propensity", self.propensity, (self.propensity <= 0) | (self.propensity > 1), "outside (0, 1]")
        self._check("target", self.target, (self.target < 0) | (self.target > 1), "outside [0, 1]")

    def _name(self, name: str) -> str:
        column = self.columns.get(name)
        return f"column {column!r} ({FIELDS[name]})" if column else f"{name} ({FIELDS[name]})"

    def _check(self, name: str, values: np.ndarray, bad: np.ndarray, what: str) -> None:
        rows = np.flatnonzero(bad)
        if len(rows):
            first = int(rows[0])
            raise OffPolicyError(
                f"{self._name(name)}: {len(rows):,} value(s) {what}, "
                f"the first at row {first + 1}: {float(values[first])!r}"
            )

    def __len__(self) -> int:
        return len(self.reward)

    @property
    def weights(self) -> np.ndarray:
        """The importance weight of each decision: the target's probability of the logged action over the
        logging policy's."""
        return np.asarray(self.target / self.propensity)


def per_action(
    actions: np.ndarray, target: np.ndarray, model: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """From per-action tables to what :class:`LoggedDecisions` reads.

    ``actions`` holds the logged action's column index per decision; ``target`` the target policy's probability
    of every action (decisions × actions; one-hot for a deterministic policy); ``model`` the reward model's
    prediction of every action. Returns the target's probability of the logged action, the model's prediction
    for it and the target's expected reward under the model (the last two None without a model).
    """
    target = np.asarray(target, dtype=np.float64)
    rows = np.arange(len(target))
    logged = np.asarray(actions, dtype=np.intp)
    if model is None:
        return target[rows, logged], None, None
    model = np.asarray(model, dtype=np.float64)
    return target[rows, logged], model[rows, logged], np.einsum("ij,ij->i", target, model)


def one_hot(choice: np.ndarray, actions: int) -> np.ndarray:
    """A deterministic policy's per-action probabilities: 1 on each decision's chosen action."""
    out = np.zeros((len(choice), actions))
    out[np.arange(len(choice)), np.asarray(choice, dtype=np.intp)] = 1.0
    return out


def effective_sample_size(weights: np.ndarray) -> float:
    """``(Σ w)² / Σ w²``: the number of equally weighted decisions the weighted ones are worth (0 if all are 0)."""
    squares = float(np.dot(weights, weights))
    return float(weights.sum() ** 2 / squares) if squares > 0 else 0.0


def _ratios(logged: LoggedDecisions) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each estimator as (numerator, denominator) terms per decision: its value is ``Σ num / Σ den``."""
    w, r, ones = logged.weights, logged.reward, np.ones(len(logged))
    out = {IPS: (w * r, ones), SNIPS: (w * r, w)}
    if logged.model_logged is not None and logged.model_target is not None:
        out[DR] = (logged.model_target + w * (r - logged.model_logged), ones)
    return out


def bootstrap(num: np.ndarray, den: np.ndarray, *, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """``Σ c × num / Σ c × den`` for each estimator (rows of ``num`` and ``den``) over ``resamples`` resamples.

    Each resample's counts ``c`` say how often each of the n decisions was drawn in n draws with replacement.
    Returns an array (resamples, estimators); a resample whose denominator is 0 gives NaN.
    """
    n = num.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, len(num)))
    chunk = max(1, _CELLS // n)
    terms = np.concatenate([num, den]).T  # (n, 2k): one product gives numerators and denominators
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        drawn = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
        sums = counts @ terms
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + size] = sums[:, : len(num)] / sums[:, len(num) :]
    return out


def _interval(draws: np.ndarray) -> np.ndarray:
    """The percentile interval at :data:`LEVEL` of each column of ``draws``; NaN where no resample is finite."""
    tail = (1.0 - LEVEL) / 2
    finite = np.isfinite(draws).any(axis=0)
    bounds = np.full((2, draws.shape[1]), np.nan)
    bounds[:, finite] = np.nanquantile(draws[:, finite], [tail, 1.0 - tail], axis=0)
    return bounds


def _values_and_draws(
    logs: list[LoggedDecisions], *, seed: int, resamples: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every estimator of every log in ``logs`` (which share their decisions) on the same resamples: names, values
    (logs × estimators) and draws (resamples × logs × estimators)."""
    if resamples < 2:
        raise ValueError(f"resamples must be at least 2, got {resamples}")
    ratios = [_ratios(logged) for logged in logs]
    names = [name for name in ratios[0] if all(name in r for r in ratios)]
    num = np.stack([r[name][0] for r in ratios for name in names])
    den = np.stack([r[name][1] for r in ratios for name in names])
    with np.errstate(invalid="ignore", divide="ignore"):
        values = num.sum(axis=1) / den.sum(axis=1)
    draws = bootstrap(num, den, seed=seed, resamples=resamples)
    return names, values.reshape(len(logs), len(names)), draws.reshape(resamples, len(logs), len(names))


def estimate(logged: LoggedDecisions, *, seed: int = 0, resamples: int = RESAMPLES) -> list[Estimate]:
    """IPS, SNIPS and (with a reward model) DR of ``logged``, each with its bootstrap interval at :data:`LEVEL`.

    SNIPS is NaN when no logged action has a positive weight (the target never agrees with the log): there is
    nothing to normalise by, and the estimate says so rather than reading as 0.
    """
    names, values, draws = _values_and_draws([logged], seed=seed, resamples=resamples)
    bounds = _interval(draws[:, 0])
    w = logged.weights
    ess, largest = effective_sample_size(w), float(w.max())
    return [
        Estimate(name, float(values[0, i]), float(bounds[0, i]), float(bounds[1, i]), len(logged), ess, largest)
        for i, name in enumerate(names)
    ]


@dataclass(frozen=True)
class Difference:
    """How much more one target policy is worth than another on the same log (``challenger − baseline``)."""

    estimator: str
    value: float
    low: float
    high: float
    decisions: int


def compare(
    baseline: LoggedDecisions, challenger: LoggedDecisions, *, seed: int = 0, resamples: int = RESAMPLES
) -> list[Difference]:
    """``challenger − baseline`` by each estimator both have, with a paired bootstrap interval.

    Both are evaluated on the same resamples of the same decisions, so what the two share (which customers
    happened to be logged, and with DR the reward model's view of them) cancels: the difference is known far more
    precisely than either value, and two policies whose separate intervals overlap can still be told apart.
    """
    if len(baseline) != len(challenger) or not np.array_equal(baseline.reward, challenger.reward):
        raise ValueError("compare needs two target policies evaluated on the same logged decisions")
    names, values, draws = _values_and_draws([baseline, challenger], seed=seed, resamples=resamples)
    bounds = _interval(draws[:, 1] - draws[:, 0])
    diff = values[1] - values[0]
    return [
        Difference(name, float(diff[i]), float(bounds[0, i]), float(bounds[1, i]), len(baseline))
        for i, name in enumerate(names)
    ]


MIN_OUTCOMES = 200
MIN_ESS = 30.0
PROMOTE, KEEP, MORE = "promote", "keep the champion", "collect more data"


@dataclass(frozen=True)
class Verdict:
    """A promotion recommendation and the rule that produced it, written out for the person who decides."""

    decision: str
    rule: str


def recommend_promotion(
    outcomes: int,
    champion: Estimate | None,
    difference: Difference | None,
    ess: float,
    *,
    min_difference: float | None = None,
) -> Verdict:
    """Promote, keep the champion or collect more data, from the doubly robust value of the champion, the paired
    difference challenger − champion and the effective sample size of the challenger's weights:

    1. fewer than :data:`MIN_OUTCOMES` decisions, or an effective sample size below :data:`MIN_ESS`: collect more;
    2. the difference's interval entirely above 0: promote;
    3. entirely below 0: keep the champion;
    4. otherwise collect more data, unless the interval lies entirely within ± ``min_difference`` (the smallest
       difference per decision worth a change, in the reward's units): keep the champion, whatever the truth is it
       is too small to matter, and a change must earn its place (an equivalence test).

    Why a margin in the reward's units and not a share of the champion's value: a value can carry a large part
    that no policy moves (recommend's reward counts the lifetime value of every customer retained, ~1,900 a
    decision on the demo, while the models' whole gain over doing nothing is ~12), so 2% of it, the rule before,
    would have kept a champion against a challenger whose interval still allowed three times that gain. Without a
    margin rule 4 never keeps.
    """
    if outcomes < MIN_OUTCOMES or champion is None or difference is None:
        return Verdict(MORE, f"rule 1: {outcomes:,} decisions with an outcome, fewer than {MIN_OUTCOMES:,}")
    if ess < MIN_ESS:
        return Verdict(MORE, f"rule 1: effective sample size {ess:,.0f} of the challenger's weights, below {MIN_ESS:g}")
    interval = f"DR difference {difference.value:+.4g}, 95% interval [{difference.low:+.4g}, {difference.high:+.4g}]"
    if difference.low > 0:
        return Verdict(PROMOTE, f"rule 2: {interval}, entirely above 0")
    if difference.high < 0:
        return Verdict(KEEP, f"rule 3: {interval}, entirely below 0")
    if min_difference is not None and -min_difference < difference.low and difference.high < min_difference:
        return Verdict(
            KEEP,
            f"rule 4: {interval} contains 0 and lies within ±{min_difference:g}, the smallest difference that matters",
        )
    return Verdict(MORE, f"rule 4: {interval} contains 0")
