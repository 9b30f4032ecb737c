"""Exploration: now and then serve a candidate other than the champion's best, and log with what probability.

Why: a log in which the champion always served its own best says nothing about what another choice would have
earned, so no off-policy estimate of a challenger's value is possible where the two disagree. With exploration
the served candidate is drawn at random among the best few, and the probability of the draw is logged with the
decision (:mod:`service.decision_log`), so inverse-propensity estimates are unbiased wherever a challenger's
choice is among those few. It is off by default, configured per endpoint (``NBA_EXPLORE_RECOMMEND``,
``NBA_EXPLORE_ASSIGN``), and its price is stated in the shadow report: the champion's expected value given up.

Two schemes, each over the first ``among`` candidates of the champion's order (ranked best first):

- ``epsilon:E``: the best with probability 1 − E + E/n, each other with E/n (n candidates drawn among);
- ``softmax:T``: each with probability ∝ exp((score − best score) / T); T is in the scores' units (recommend:
  expected value in money; assign: P(resolution) plus bonuses), so T = 0 would always serve the best.

Recommend never explores across priority groups (a service action ahead of an offer stays ahead) nor past an
escape action that leads (the customer asked for a person); :mod:`service.decisions` picks the candidates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Scheme = Literal["off", "epsilon", "softmax"]


@dataclass(frozen=True)
class Exploration:
    """How an endpoint explores; :meth:`parse` reads the setting's text."""

    scheme: Scheme = "off"
    rate: float = 0.0
    """epsilon: the share of decisions drawn at random; softmax: the temperature."""
    among: int = 3
    """How many of the champion's best candidates a draw is among."""

    @classmethod
    def parse(cls, text: str, *, among: int) -> Exploration:
        """``off``, ``epsilon:E`` (0 < E ≤ 1) or ``softmax:T`` (T > 0); a ValueError saying what is expected."""
        scheme, _, value = text.strip().lower().partition(":")
        if scheme == "off" and not value:
            return cls(among=among)
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if scheme == "epsilon" and 0 < rate <= 1:
            return cls("epsilon", rate, among)
        if scheme == "softmax" and 0 < rate < math.inf:
            return cls("softmax", rate, among)
        raise ValueError(f"expected off, epsilon:E with 0 < E <= 1, or softmax:T with T > 0; got {text!r}")

    def probabilities(self, scores: Sequence[float]) -> list[float]:
        """The probability of serving each candidate, given the champion's scores of its first candidates (best
        first); candidates past ``among`` get 0."""
        n = min(len(scores), self.among)
        if self.scheme == "off" or n <= 1:
            return [1.0] + [0.0] * (len(scores) - 1) if scores else []
        if self.scheme == "epsilon":
            p = [self.rate / n] * n
            p[0] += 1.0 - self.rate
        else:
            best = max(scores[:n])
            weights = [math.exp((s - best) / self.rate) for s in scores[:n]]
            total = sum(weights)
            p = [w / total for w in weights]
        return p + [0.0] * (len(scores) - n)

    def draw(self, scores: Sequence[float], rng: random.Random) -> tuple[int, list[float]]:
        """The index of the candidate to serve, and every candidate's probability of being the one, up to the last
        that had any (``[1.0]``, the best, when off)."""
        if self.scheme == "off" or len(scores) <= 1:
            return 0, [1.0]
        p = self.probabilities(scores)
        p = p[: max(i for i, pi in enumerate(p) if pi > 0) + 1]
        u, acc = rng.random(), 0.0
        for i, pi in enumerate(p):
            acc += pi
            if u < acc:
                return i, p
        return len(p) - 1, p  # u within rounding of 1
