"""The shadow report's figures and its promotion rule, on results built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from service.shadow import ShadowResult
from service.shadow_report import (
    REWARDS,
    Outcome,
    acceptance_reward_of,
    endpoint_report,
    outcome_of,
    reward_of,
    similarity,
)
from training.off_policy import DR, KEEP, MIN_OUTCOMES, MORE, PROMOTE, Difference, Estimate, recommend_promotion


def _result(i: int, champion: list[str], challenger: list[str], served: str, p: float, **kw: object) -> ShadowResult:
    n = len(champion)
    fields: dict[str, object] = {
        "v": 2,
        "decision_id": f"d{i}",
        "kind": "recommend",
        "at": 0.0,
        "served": served,
        "served_propensity": p,
        "policy": [p] if served == champion[0] else [1 - p, p],
        "champion": champion,
        "champion_scores": [float(n - j) for j in range(n)],
        "challenger": challenger,
        "challenger_scores": [float(n - j) for j in range(n)],
        "expected_reward": [0.5] * n,
        "payoff": [100.0] * n,
        "champion_models": {"nba-churn": "1"},
        "challenger_models": {"nba-churn": "2"},
        "challenger_us": 120.0,
        "lifetime_value": 1_000.0,
    }
    return ShadowResult(**(fields | kw))  # type: ignore[arg-type]


def test_similarity_of_identical_and_reversed_rankings() -> None:
    same = similarity([_result(0, ["a", "b", "c", "d"], ["a", "b", "c", "d"], "a", 1.0)])
    assert (same.top_agreement, same.overlap_at_k, same.rank_correlation) == (1.0, 1.0, 1.0)
    reversed_ = similarity([_result(0, ["a", "b", "c", "d"], ["d", "c", "b", "a"], "a", 1.0)])
    assert reversed_.top_agreement == 0.0
    assert reversed_.overlap_at_k == pytest.approx(2 / 3)
    assert reversed_.rank_correlation == pytest.approx(-1.0)


def test_outcomes_and_rewards_follow_the_served_candidate() -> None:
    r = _result(0, ["retention_offer", "no_action"], ["no_action", "retention_offer"], "retention_offer", 0.9,
                payoff=[-120.0, 0.0])  # fmt: skip
    accepted, declined = {"retention_offer": {"outcome": "accepted"}}, {"retention_offer": {"outcome": "declined"}}
    stayed, left = {"retained": {"retained": True}}, {"retained": {"retained": False}}
    assert outcome_of(r, accepted | stayed) == Outcome(accepted=True, retained=True)
    assert reward_of(r, Outcome(accepted=True, retained=True)) == 1_000.0 - 120.0, "kept, and the offer paid for"
    assert acceptance_reward_of(r, Outcome(accepted=True, retained=True)) == -120.0
    assert outcome_of(r, declined | left) == Outcome(accepted=False, retained=False)
    assert reward_of(r, Outcome(accepted=False, retained=False)) == 0.0
    assert reward_of(r, Outcome(accepted=False, retained=True)) == 1_000.0
    assert outcome_of(r, accepted) == Outcome(accepted=True), "no retained answer yet"
    assert reward_of(r, Outcome(accepted=True)) is None, "not known until the churn horizon's end"
    assert acceptance_reward_of(r, Outcome(accepted=True)) == -120.0, "the offers-alone figure does not wait"
    assert outcome_of(r, stayed) == Outcome(retained=True), "the offer's own answer is missing"
    assert reward_of(r, Outcome(retained=True)) is None
    assert outcome_of(r, {"no_action": {"outcome": "accepted"}} | stayed) == Outcome(accepted=False, retained=True)
    assert outcome_of(r, {}) == Outcome()
    assert reward_of(r, Outcome()) is None
    nothing = _result(0, ["retention_offer", "no_action"], ["no_action", "retention_offer"], "no_action", 0.1,
                      payoff=[-120.0, 0.0])  # fmt: skip
    assert outcome_of(nothing, {}) == Outcome(accepted=False), "nothing offered: nothing accepted"
    assert reward_of(nothing, outcome_of(nothing, {})) is None, "but whether the customer stayed is not known yet"
    assert acceptance_reward_of(nothing, outcome_of(nothing, {})) == 0.0
    assert reward_of(nothing, outcome_of(nothing, stayed)) == 1_000.0
    assert reward_of(nothing, outcome_of(nothing, left)) == 0.0
    old = _result(0, ["retention_offer", "no_action"], ["no_action", "retention_offer"], "no_action", 0.1, v=1,
                  lifetime_value=None)  # fmt: skip
    assert reward_of(old, outcome_of(old, stayed)) is None, "a format-1 result has no lifetime value"
    a = _result(1, ["A1", "A2"], ["A2", "A1"], "A1", 1.0, kind="assign", lifetime_value=None)
    assert outcome_of(a, {"resolved": {"resolved": True, "agent": "A1"}}) == Outcome(resolved=True)
    assert outcome_of(a, {"resolved": {"resolved": True, "agent": "A2"}}) == Outcome(), "another agent took it"
    assert reward_of(a, Outcome(resolved=False)) == 0.0


def _estimate(value: float) -> Estimate:
    return Estimate(DR, value, value - 1, value + 1, 1_000, 500.0, 3.0)


@pytest.mark.parametrize(
    ("outcomes", "low", "high", "ess", "decision", "rule"),
    [
        (MIN_OUTCOMES - 1, 1.0, 2.0, 500.0, MORE, "rule 1"),
        (1_000, 1.0, 2.0, 5.0, MORE, "rule 1: effective sample size"),
        (1_000, 0.5, 2.0, 500.0, PROMOTE, "rule 2"),
        (1_000, -2.0, -0.5, 500.0, KEEP, "rule 3"),
        (1_000, -0.5, 0.5, 500.0, MORE, "rule 4"),  # wider than the margin of 0.1 each way
        (1_000, -0.05, 0.15, 500.0, MORE, "rule 4"),  # narrower than it, but a difference that matters is possible
        (1_000, -0.05, 0.05, 500.0, KEEP, "rule 4"),  # within it: too small to matter, whatever the truth
    ],
)
def test_the_promotion_rule(outcomes: int, low: float, high: float, ess: float, decision: str, rule: str) -> None:
    difference = Difference(DR, (low + high) / 2, low, high, outcomes)
    verdict = recommend_promotion(outcomes, _estimate(10.0), difference, ess, min_difference=0.1)
    assert verdict.decision == decision
    assert verdict.rule.startswith(rule)
    if rule == "rule 4":  # without a margin, rule 4 never keeps the champion
        assert recommend_promotion(outcomes, _estimate(10.0), difference, ess).decision == MORE


def test_a_challenger_that_picks_worse_actions_is_not_promoted() -> None:
    """Logged with epsilon-greedy among two actions: the champion's pick is accepted 30% of the time, the other
    10%, every customer stays; a challenger that always picks the other must come out worse, and be kept out."""
    rng = np.random.default_rng(5)
    results, outcomes = [], {}
    for i in range(4_000):
        explore = rng.random() < 0.3
        served = "b" if explore else "a"
        p = 0.3 if explore else 0.7
        r = _result(i, ["a", "b"], ["b", "a"], served, p, expected_reward=[1_030.0, 1_010.0], policy=[0.7, 0.3])
        results.append(r)
        outcomes[r.decision_id] = Outcome(accepted=bool(rng.random() < (0.1 if explore else 0.3)), retained=True)
    report = endpoint_report("recommend", results, outcomes, seed=1)
    by = {e.estimator: e for e in report.champion}
    theirs = {e.estimator: e for e in report.challenger}
    assert by[DR].value == pytest.approx(1_030.0, abs=3.0)
    assert theirs[DR].value == pytest.approx(1_010.0, abs=3.0)
    assert report.verdict.decision == KEEP
    assert report.exploration_cost == pytest.approx(0.3 * 20.0)
    assert (report.outcomes, report.awaiting) == (4_000, 0)


def test_a_challenger_that_offers_less_but_loses_customers_is_kept_out() -> None:
    """The issue's case. The champion makes a costly retention offer (accepted 30% of the time, −120 to the business
    each time) that keeps 95% of customers worth 1,000; doing nothing keeps 85%. Valued by acceptances alone, a
    challenger that never offers looks better (0 against −36 a decision); valued by what the models serve for,
    it loses 64 a decision (1,000 × 0.95 − 0.3 × 120 = 914 against 850), and the report must keep the champion."""
    rng = np.random.default_rng(11)
    results, outcomes = [], {}
    for i in range(4_000):
        explore = rng.random() < 0.3
        served = "no_action" if explore else "retention_offer"
        r = _result(i, ["retention_offer", "no_action"], ["no_action", "retention_offer"], served,
                    0.3 if explore else 0.7, policy=[0.7, 0.3], payoff=[-120.0, 0.0],
                    expected_reward=[914.0, 850.0])  # fmt: skip
        results.append(r)
        accepted = not explore and bool(rng.random() < 0.3)
        outcomes[r.decision_id] = Outcome(accepted=accepted, retained=bool(rng.random() < (0.85 if explore else 0.95)))
    waiting = [_result(4_000 + i, ["retention_offer", "no_action"], ["retention_offer", "no_action"], "no_action",
                       0.3, policy=[0.7, 0.3]) for i in range(25)]  # fmt: skip
    for r in waiting:
        outcomes[r.decision_id] = Outcome(accepted=False)  # no retained answer yet
    report = endpoint_report("recommend", results + waiting, outcomes, seed=3)
    assert report.reward == REWARDS["recommend"]
    assert report.reward.startswith("lifetime value × retained 30 days after the decision")
    assert (report.similarity.decisions, report.outcomes, report.awaiting) == (4_025, 4_000, 25)
    rewards = [1_000.0 * bool(o.retained) - 120.0 * bool(o.accepted) for o in list(outcomes.values())[:4_000]]
    assert report.logged_value == pytest.approx(np.mean(rewards))
    # Offers alone, on policy, over every decision whose acceptance is known (the waiting ones too): about
    # 0.7 × 0.3 × −120 = −25.2; what a challenger that never offers would beat.
    assert report.acceptance_outcomes == 4_025
    assert report.acceptance_value == pytest.approx(-25.2, abs=3.0)
    by = {e.estimator: e for e in report.champion}
    theirs = {e.estimator: e for e in report.challenger}
    assert by[DR].value == pytest.approx(914.0, abs=10.0)
    assert theirs[DR].value == pytest.approx(850.0, abs=15.0)
    difference = {d.estimator: d for d in report.difference}[DR]
    assert difference.high < 0
    assert report.verdict.decision == KEEP
    assert report.verdict.rule.startswith("rule 3")
