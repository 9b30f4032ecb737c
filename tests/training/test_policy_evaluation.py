"""The policy evaluation on a fresh simulated world, against the oracle's truth, with the session's champions."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import OfflineStore, Registry
from training import CHAMPION, ModelRegistry
from training.policy_evaluation import (
    DecisionPoints,
    Evaluation,
    Truth,
    decision_points,
    evaluate_policies,
    oracle_policy,
    rules_policy,
)
from training.world import WorldConfig, simulate
from training.world.config import ACTIONS, SALES_ACTIONS

POLICIES = ["random", "no_action", "rules", "champion", "oracle"]


@pytest.fixture(scope="module")
def points(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> DecisionPoints:
    """A fresh world the models never saw: another seed than the session's (7)."""
    world = tmp_path_factory.mktemp("test-world")
    simulate(WorldConfig(customers=2_000, months=3, seed=1007, end=date(2026, 11, 30)), world)
    return decision_points(OfflineStore(world, registry))


@pytest.fixture(scope="module")
def evaluation(points: DecisionPoints, model_registry: ModelRegistry, champions: dict[str, str]) -> Evaluation:
    churn, _ = model_registry.load("churn", CHAMPION)
    propensity, _ = model_registry.load("propensity", CHAMPION)
    return evaluate_policies(points, (churn, propensity), None, seed=3)


def test_every_policy_is_scored_and_the_challenger_skipped(evaluation: Evaluation, points: DecisionPoints) -> None:
    assert [r.policy for r in evaluation.results] == POLICIES
    assert evaluation.decisions == len(points) > 2_000  # every customer-month of 3 months
    assert evaluation.notes == [
        "challenger: skipped, neither the churn nor the propensity model has a challenger alias"
    ]


def test_oracle_is_worth_at_least_every_other_policy(evaluation: Evaluation) -> None:
    oracle = evaluation.of("oracle")
    for result in evaluation.results:
        assert oracle.value >= result.value, result.policy
    assert evaluation.share_of_oracle("oracle") == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_no_allowed_choice_beats_the_oracle_at_any_decision(seed: int, points: DecisionPoints) -> None:
    truth = _truth(points)
    best = oracle_policy(truth, points)
    rng = np.random.default_rng(seed)
    allowed_codes = [np.flatnonzero(row) for row in points.allowed]
    other = np.array([rng.choice(codes) for codes in allowed_codes])
    rows = np.arange(len(points))
    assert np.all(truth.value[rows, best] >= truth.value[rows, other])
    assert truth.result("oracle", best).value >= truth.result("other", other).value


_TRUTH: dict[int, Truth] = {}


def _truth(points: DecisionPoints) -> Truth:
    """The oracle's expectations, asked once per decision-point set (hypothesis calls the test many times)."""
    return _TRUTH.setdefault(id(points), Truth.of(points))


def test_no_action_costs_nothing_and_offers_nothing(evaluation: Evaluation) -> None:
    none = evaluation.of("no_action")
    assert (none.offer_cost, none.offered) == (0.0, 0.0)
    assert evaluation.gain("no_action") == 0.0
    # Its churn rate is the untreated hazard, which the offers of the oracle lower.
    assert evaluation.of("oracle").churn_rate < none.churn_rate


def test_the_champion_gains_over_no_action_and_beats_the_rules(evaluation: Evaluation) -> None:
    assert evaluation.gain("random") < 0 < evaluation.gain("rules") < evaluation.gain("champion")
    assert 0.5 < evaluation.share_of_oracle("champion") <= 1.0
    lines = evaluation.goal_lines()
    assert lines[0].startswith(f"goal: champion captures {evaluation.share_of_oracle('champion'):.1%} of the oracle")
    assert "champion beats the rules by +" in lines[1]


def test_sales_offers_only_to_those_who_consent(points: DecisionPoints, evaluation: Evaluation) -> None:
    consent = np.asarray(points.columns["consent_marketing"], dtype=bool)
    assert 0 < consent.mean() < 1
    for action in ACTIONS:
        allowed = points.allowed[:, ACTIONS.index(action)]
        assert np.array_equal(allowed, consent) if action in SALES_ACTIONS else allowed.all()
    choice = oracle_policy(_truth(points), points)
    sales = np.isin(choice, [ACTIONS.index(a) for a in SALES_ACTIONS])
    assert sales.any()
    assert consent[sales].all()


def test_rules_follow_the_documented_order(points: DecisionPoints) -> None:
    c = points.columns
    choice = np.asarray(ACTIONS)[rules_policy(points)]

    def num(name: str) -> np.ndarray:
        return np.nan_to_num(np.asarray(c[name], dtype=np.float64))

    consent = np.asarray(c["consent_marketing"], dtype=bool)
    retention = (num("days_to_contract_end") <= 0) & (num("contacts_30d") >= 3) & consent
    payment = ~retention & (num("failed_payments_90d") >= 1)
    callback = ~retention & ~payment & ((num("repeat_contacts_30d") >= 2) | (num("open_complaint") == 1))
    expected = np.select(
        [retention, payment, callback], ["retention_offer", "payment_plan", "tech_callback"], "no_action"
    )
    assert np.array_equal(choice, expected)
    assert {"retention_offer", "payment_plan", "tech_callback", "no_action"} <= set(choice)


def test_metrics_name_every_policy_and_figure(evaluation: Evaluation) -> None:
    metrics = evaluation.metrics()
    figures = (
        "value_per_1000",
        "gain_per_1000",
        "share_of_oracle_gain",
        "churn_rate",
        "offer_cost_per_1000",
        "offered",
    )
    assert set(metrics) == {"decisions"} | {f"{p}.{f}" for p in POLICIES for f in figures}
    assert metrics["champion.value_per_1000"] == evaluation.of("champion").value
