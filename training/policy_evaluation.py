"""Which next-best-action policy is worth most, measured against the simulated world's truth.

On a fresh simulated world (never trained on), every labelled customer-month is one decision point: the
features as the models see them at the decision. Each policy picks one action per decision point and is
scored with the oracle's TRUE expectations for that action (:mod:`training.world.oracle`), not with the
world's realised draws, so two policies are compared without the noise of who happened to churn:

- expected retained value per 1,000 customers: ``lifetime_value × (1 − P(churn | action)) − cost × P(accept)``,
  summed over decisions and scaled to 1,000 of them (an accepted plan upgrade earns margin: a negative cost);
- churn rate: the mean true P(churn within 30 days | action);
- offer cost per 1,000 customers: the expected cost of the accepted offers (upgrades' margin counted against it).

The policies:

- ``random``: an allowed action drawn uniformly (``no_action`` included), seeded.
- ``no_action``: never offer anything; the baseline every gain is measured from.
- ``rules``: the documented rule set a contact center starts with before any model; the first rule that
  matches decides:

  1. contract expired (``days_to_contract_end`` ≤ 0) and 3 or more support contacts in 30 days →
     ``retention_offer`` (the retention specialist's offer);
  2. a failed payment in 90 days → ``payment_plan``;
  3. 2 or more repeat contacts in 30 days, or an open complaint → ``tech_callback``;
  4. otherwise ``no_action``.

- ``champion`` / ``challenger``: the registered models' policy, the one the service serves: the action with the
  highest :func:`~training.action_value.expected_gain`, ``no_action`` (gain 0) when none is positive. The
  challenger policy takes each model from the ``challenger`` alias when there is one, else the champion's.
- ``oracle``: the action with the highest true expected value; no policy can do better on these decisions.

Every policy chooses among the same allowed actions: sales offers (retention offer, discount, plan upgrade,
loyalty bonus) only to customers who consent to marketing, as the service's catalog requires. The catalog's
other eligibility rules and channels belong to the service and are not applied here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features import EntitySchema, OfflineStore
from training.action_value import NO_ACTION, churn_by_action, expected_gain
from training.bundle import ModelBundle
from training.world.config import ACTION_COST, ACTIONS, SALES_ACTIONS
from training.world.oracle import true_accept_probability, true_churn_probability

RANDOM, NONE, RULES, CHAMPION_POLICY, CHALLENGER_POLICY, ORACLE = (
    "random",
    "no_action",
    "rules",
    "champion",
    "challenger",
    "oracle",
)
GOAL_SHARE = 0.85
"""The champion must capture this share of the oracle's value gain over no action (issue 6)."""
PER = 1_000
_PAYOFF = np.array([-ACTION_COST[a] for a in ACTIONS])
"""What an accepted action earns the world's business (value − cost), in ``ACTIONS`` order."""


@dataclass(frozen=True)
class DecisionPoints:
    """The test world's decisions: features as the oracle reads them, model inputs, and the allowed actions."""

    columns: dict[str, np.ndarray]
    inputs: np.ndarray
    allowed: np.ndarray
    """Shape (decisions, ``ACTIONS``): whether each action may be offered at each decision."""

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class PolicyResult:
    """One policy's outcome on the decision points, in the oracle's true expectations."""

    policy: str
    value: float
    """Expected retained value per 1,000 customers."""
    churn_rate: float
    offer_cost: float
    """Expected cost of accepted offers per 1,000 customers."""
    offered: float
    """Share of decisions with an offer (anything but ``no_action``)."""


@dataclass(frozen=True)
class Truth:
    """The oracle's expectations of every action at every decision point, each of shape (decisions, ``ACTIONS``)."""

    churn: np.ndarray
    accept: np.ndarray
    value: np.ndarray

    @classmethod
    def of(cls, points: DecisionPoints) -> Truth:
        """Ask the oracle about every action of every decision point."""
        churn = np.column_stack([true_churn_probability(points.columns, a) for a in ACTIONS])
        accept = np.column_stack([true_accept_probability(points.columns, a) for a in ACTIONS])
        ltv = np.nan_to_num(np.asarray(points.columns["lifetime_value"], dtype=np.float64)).reshape(-1, 1)
        return cls(churn, accept, ltv * (1.0 - churn) + accept * _PAYOFF)

    def result(self, policy: str, choice: np.ndarray) -> PolicyResult:
        """What choosing ``choice`` (an index into ``ACTIONS`` per decision) is truly worth."""
        rows = np.arange(len(choice))
        return PolicyResult(
            policy,
            float(self.value[rows, choice].mean() * PER),
            float(self.churn[rows, choice].mean()),
            float((-_PAYOFF[choice] * self.accept[rows, choice]).mean() * PER),
            float((choice != ACTIONS.index(NO_ACTION)).mean()),
        )


def decision_points(offline: OfflineStore) -> DecisionPoints:
    """Every labelled customer-month of the world in ``offline``, with its features at the decision."""
    labels = pq.read_table(offline.root / "churn_labels.parquet", columns=["customer_id", "ts"])
    return points_of(offline.point_in_time("customer", labels), offline.registry.entity("customer"))


def points_of(frame: pa.Table, schema: EntitySchema) -> DecisionPoints:
    """The decision points of ``frame``, one per row, which holds the model inputs of ``schema`` by name as the
    offline store's point-in-time join types them (a logged file joined with the features at each decision, say).
    The models and the oracle read nothing else."""
    columns = {name: frame.column(name).to_numpy(zero_copy_only=False) for name in schema.model_names}
    consent = np.asarray(columns["consent_marketing"], dtype=bool)
    allowed = np.column_stack([consent if a in SALES_ACTIONS else np.ones(len(consent), bool) for a in ACTIONS])
    return DecisionPoints(columns, schema.model_matrix(frame), allowed)


def _best(gain: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The allowed action of highest gain per row; ties go to the earliest in ``ACTIONS`` (``no_action`` first)."""
    return np.asarray(np.where(allowed, gain, -np.inf).argmax(axis=1))


def random_policy(points: DecisionPoints, *, seed: int) -> np.ndarray:
    """An allowed action drawn uniformly at each decision."""
    return _best(np.random.default_rng(seed).random(points.allowed.shape), points.allowed)


def rules_policy(points: DecisionPoints) -> np.ndarray:
    """The module's documented rule set, first match wins; a rule whose action is not allowed does not match."""
    c = points.columns

    def num(name: str) -> np.ndarray:
        return np.nan_to_num(np.asarray(c[name], dtype=np.float64))

    rules = (
        ("retention_offer", (num("days_to_contract_end") <= 0) & (num("contacts_30d") >= 3)),
        ("payment_plan", num("failed_payments_90d") >= 1),
        ("tech_callback", (num("repeat_contacts_30d") >= 2) | (num("open_complaint") == 1)),
    )
    choice = np.full(len(points), ACTIONS.index(NO_ACTION))
    decided = np.zeros(len(points), dtype=bool)
    for action, match in rules:
        code = ACTIONS.index(action)
        hit = match & points.allowed[:, code] & ~decided
        choice[hit] = code
        decided |= hit
    return choice


@dataclass(frozen=True)
class ModelPolicy:
    """What the two models make of each decision point: the action they choose and every action's worth."""

    choice: np.ndarray
    """The allowed action of highest expected gain, an index into ``ACTIONS`` per decision."""
    expected_reward: np.ndarray
    """Shape (decisions, ``ACTIONS``): the models' expected reward of each action, ``lifetime_value × (1 −
    P(churn | a)) − cost × P(accept | a)``, the expectation of the world's realised reward (a reward model)."""


def score_policy(points: DecisionPoints, churn: ModelBundle, propensity: ModelBundle) -> ModelPolicy:
    """The service's policy on ``points`` and the expected rewards it ranks by, scored by the two models."""
    offers = ACTIONS[1:]
    accept = propensity.predict(propensity.with_actions(points.inputs, offers)).reshape(len(points), len(offers))
    accept = np.column_stack([np.zeros(len(points)), accept])  # no_action is never "accepted"
    p_churn = churn_by_action(churn, points.inputs, ACTIONS, accept)
    ltv = np.nan_to_num(np.asarray(points.columns["lifetime_value"], dtype=np.float64))
    gain = expected_gain(p_churn[:, 0], p_churn, accept, ltv, _PAYOFF)
    return ModelPolicy(_best(gain, points.allowed), gain + (ltv * (1.0 - p_churn[:, 0])).reshape(-1, 1))


def model_policy(points: DecisionPoints, churn: ModelBundle, propensity: ModelBundle) -> np.ndarray:
    """The service's policy: the allowed action of highest expected gain, scored by the two models."""
    return score_policy(points, churn, propensity).choice


def oracle_policy(truth: Truth, points: DecisionPoints) -> np.ndarray:
    """The allowed action of highest true expected value."""
    return _best(truth.value, points.allowed)


@dataclass(frozen=True)
class Evaluation:
    """Every policy's result on one test world, and what the goal line says of them."""

    results: list[PolicyResult]
    decisions: int
    notes: list[str]

    def of(self, policy: str) -> PolicyResult:
        """The result of ``policy``; a KeyError if it was not evaluated."""
        found = [r for r in self.results if r.policy == policy]
        if not found:
            raise KeyError(f"{policy!r} was not evaluated")
        return found[0]

    def gain(self, policy: str) -> float:
        """Value gained over no action per 1,000 customers."""
        return self.of(policy).value - self.of(NONE).value

    def share_of_oracle(self, policy: str) -> float:
        """``policy``'s share of the oracle's value gain over no action (NaN when the oracle gains nothing)."""
        best = self.gain(ORACLE)
        return self.gain(policy) / best if best > 0 else float("nan")

    def goal_lines(self) -> list[str]:
        """The issue's goals, measured: the champion's share of the oracle's gain, and the champion against rules."""
        share = self.share_of_oracle(CHAMPION_POLICY)
        over_rules = self.gain(CHAMPION_POLICY) - self.gain(RULES)
        met = "met" if share >= GOAL_SHARE else "NOT met"
        beats = "beats" if over_rules > 0 else "does NOT beat"
        return [
            f"goal: champion captures {share:.1%} of the oracle's value gain over no action "
            f"(≥ {GOAL_SHARE:.0%}: {met})",
            f"goal: champion {beats} the rules by {over_rules:+,.0f} per {PER:,} customers "
            f"(champion {self.gain(CHAMPION_POLICY):+,.0f}, rules {self.gain(RULES):+,.0f} over no action)",
        ]

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: ``<policy>.<figure>``, and the goal figures."""
        out: dict[str, float] = {"decisions": float(self.decisions)}
        for r in self.results:
            out |= {
                f"{r.policy}.value_per_{PER}": r.value,
                f"{r.policy}.gain_per_{PER}": self.gain(r.policy),
                f"{r.policy}.share_of_oracle_gain": self.share_of_oracle(r.policy),
                f"{r.policy}.churn_rate": r.churn_rate,
                f"{r.policy}.offer_cost_per_{PER}": r.offer_cost,
                f"{r.policy}.offered": r.offered,
            }
        return out


def evaluate_policies(
    points: DecisionPoints,
    champion: tuple[ModelBundle, ModelBundle],
    challenger: tuple[ModelBundle, ModelBundle] | None,
    *,
    seed: int,
) -> Evaluation:
    """Every policy on ``points``: (churn, propensity) bundles of the champion and, if any, the challenger."""
    truth = Truth.of(points)
    choices: list[tuple[str, np.ndarray]] = [
        (RANDOM, random_policy(points, seed=seed)),
        (NONE, np.full(len(points), ACTIONS.index(NO_ACTION))),
        (RULES, rules_policy(points)),
        (CHAMPION_POLICY, model_policy(points, *champion)),
    ]
    notes = []
    if challenger is not None:
        choices.append((CHALLENGER_POLICY, model_policy(points, *challenger)))
    else:
        notes.append("challenger: skipped, neither the churn nor the propensity model has a challenger alias")
    choices.append((ORACLE, oracle_policy(truth, points)))
    return Evaluation([truth.result(name, choice) for name, choice in choices], len(points), notes)
