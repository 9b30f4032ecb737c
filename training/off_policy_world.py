"""The off-policy estimators checked against the simulated world's truth.

The world logs its offers from a known stochastic behaviour policy with their propensities (``offers.parquet``).
Joined with the customer's features at each decision (the offline store's point-in-time join), that is exactly
the file ``nba shadow evaluate --model`` reads. The target policies are deterministic:

- ``models``: the service's policy of a churn and a propensity model (the challenger one would shadow);
- ``retention_offer``: a retention offer to every customer who consents to marketing (``no_action`` to the others),
  the naive "save everyone" policy: truly worse than a good model's policy, since premium customers resent price
  offers and the offer costs 120 when accepted (~40 less per decision than the demo models' policy).

The truth a policy is compared with is the oracle's expectation of the logged reward column itself: ``reward =
lifetime_value × (1 − churned) − cost × accepted`` has, for action ``a`` at context ``x``, the expectation
``lifetime_value × (1 − P(churn | x, a)) − cost_a × P(accept | x, a)``, which is
:attr:`~training.policy_evaluation.Truth.value`, averaged over the logged decisions. The DR estimate's reward model
is the models' own expected rewards (:func:`~training.policy_evaluation.score_policy`), as with ``--model``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from features import OfflineStore, Registry
from training.bundle import ModelBundle
from training.off_policy import DR, Difference, Estimate, LoggedDecisions, compare, estimate, one_hot, per_action
from training.policy_evaluation import Truth, points_of, score_policy
from training.world import WorldConfig, simulate
from training.world.config import ACTIONS

MODELS, RETAIN_ALL = "models", "retention_offer"
END = date(2026, 11, 30)


@dataclass(frozen=True)
class PolicyCheck:
    """One target policy on one world: its true value per decision and the estimates of it."""

    policy: str
    truth: float
    estimates: dict[str, Estimate]
    """By estimator (IPS, SNIPS, DR)."""

    def of(self, estimator: str) -> Estimate:
        """The estimate by ``estimator``."""
        return self.estimates[estimator]

    def covered(self, estimator: str = DR) -> bool:
        """Whether the estimator's interval holds the true value."""
        e = self.of(estimator)
        return e.low <= self.truth <= e.high


@dataclass(frozen=True)
class WorldCheck:
    """Both target policies on one world, and the paired estimate of how much worse the worse one is."""

    seed: int
    policies: dict[str, PolicyCheck]
    worse_minus_models: list[Difference]
    true_difference: float

    def difference(self, estimator: str = DR) -> Difference:
        """The paired ``retention_offer − models`` estimate by ``estimator``."""
        return next(d for d in self.worse_minus_models if d.estimator == estimator)


def check_world(
    seed: int,
    churn: ModelBundle,
    propensity: ModelBundle,
    registry: Registry,
    *,
    customers: int = 1_000,
    months: int = 3,
    resamples: int = 1_000,
) -> WorldCheck:
    """Simulate a world of ``seed``, log its offers with their features, and estimate each target policy."""
    with tempfile.TemporaryDirectory(prefix="nba-off-policy-") as tmp:
        world = Path(tmp)
        simulate(WorldConfig(customers=customers, months=months, seed=seed, end=END), world)
        log = OfflineStore(world, registry).point_in_time("customer", pq.read_table(world / "offers.parquet"))
    points = points_of(log, registry.entity("customer"))
    truth = Truth.of(points).value
    logged = np.array([ACTIONS.index(a) for a in log.column("action_id").to_pylist()], dtype=np.intp)
    reward = log.column("reward").to_numpy()
    behaviour = log.column("propensity").to_numpy()
    policy = score_policy(points, churn, propensity)
    retain = np.where(points.allowed[:, ACTIONS.index(RETAIN_ALL)], ACTIONS.index(RETAIN_ALL), 0)
    choices = {MODELS: policy.choice, RETAIN_ALL: retain}
    decisions, checks = {}, {}
    for name, choice in choices.items():
        target, model_logged, model_target = per_action(logged, one_hot(choice, len(ACTIONS)), policy.expected_reward)
        decisions[name] = LoggedDecisions(reward, behaviour, target, model_logged, model_target)
        true_value = float(truth[np.arange(len(choice)), choice].mean())
        estimates = {e.estimator: e for e in estimate(decisions[name], seed=seed, resamples=resamples)}
        checks[name] = PolicyCheck(name, true_value, estimates)
    paired = compare(decisions[MODELS], decisions[RETAIN_ALL], seed=seed, resamples=resamples)
    return WorldCheck(seed, checks, paired, checks[RETAIN_ALL].truth - checks[MODELS].truth)
