"""The shadow report: champion against challenger on the same live decisions, and whether to promote.

Built from the shadow worker's results (:mod:`service.shadow`) and the outcomes ``POST /v1/feedback`` recorded
for the same decisions (:mod:`service.decision_records`), per endpoint:

- how alike the two are: agreement of the top choice, overlap of the top :data:`K`, Spearman's rank correlation
  of the two orders of the same candidates (mean over decisions), the distribution of each one's top score, and
  the challenger's latency;
- what each is worth, from the decisions whose reward is known: IPS, self-normalised IPS and doubly robust
  estimates (:mod:`training.off_policy`) of each model's greedy policy (its top choice served), each with a
  bootstrap 95% interval, the decisions it rests on, the effective sample size and the largest weight; and the
  paired difference challenger − champion;
- what exploration cost: the champion's expected reward given up by not always serving its best, per decision.

The reward is what the decision earned, in the terms the models serve by:

- recommend: ``lifetime_value × retained + (value − cost) × accepted``, where ``retained`` is feedback's answer
  whether the customer was still one :data:`~service.decision_records.RETENTION_HORIZON_DAYS` after the decision
  and ``accepted`` whether they accepted the served action. The models rank by expected retained value plus the
  offer's own payoff (:mod:`service.decisioning`), so valuing acceptances alone would favour a challenger that
  makes fewer costly retention offers however many customers it loses. A decision's reward is known once it has
  a ``retained`` answer and, for an offer, an answer to it (or to another of its actions, which says the served one
  was not taken); a served ``no_action`` needs only the ``retained`` answer (nothing was offered, its payoff is 0).
  Until then it is counted as awaiting its outcome. Beside it, a secondary figure values acceptances alone
  (``(value − cost) × accepted`` of what was served, on policy, over the decisions whose acceptance is known): it
  says whether offers land, and the verdict does not read it;
- assign: 1 when the contact was resolved at first contact, so its value is the resolution rate.

The doubly robust estimate's reward model is the champion's expected reward of each candidate under the same
reward (:mod:`service.shadow`: ``lifetime_value × (1 − P(churn | a)) + P(accept | a) × (value − cost)``;
P(resolution)). A recommend result replayed before the full reward (format 1, no lifetime value) counts in the
similarity figures only: its expected rewards value acceptances alone.

Only decisions served with exploration can tell the two apart where they disagree: without it every logged
propensity is 1 and a challenger that disagrees gets weight 0 on those decisions, which the effective sample size
shows.

The recommendation (:func:`training.off_policy.recommend_promotion`), per endpoint, from the doubly robust
difference:

1. fewer than :data:`MIN_OUTCOMES` decisions with an outcome, or an effective sample size of the challenger's
   weights below :data:`MIN_ESS`: **collect more data**;
2. the difference's 95% interval entirely above 0: **promote**;
3. entirely below 0: **keep the champion**;
4. otherwise (it contains 0): **collect more data**, unless it lies entirely within ± the endpoint's smallest
   difference that matters (:data:`MIN_DIFFERENCE`, ``nba shadow report --min-difference-recommend/-assign``), in
   which case **keep the champion**: whatever the truth, it is too small to be worth a change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from features.decision_log_keys import Kind
from service.catalog import NO_ACTION
from service.decision_records import RETAINED, RETENTION_HORIZON_DAYS
from service.shadow import ShadowResult
from training.off_policy import (
    DR,
    MORE,
    Difference,
    Estimate,
    LoggedDecisions,
    Verdict,
    compare,
    estimate,
    recommend_promotion,
)

K = 3
MIN_DIFFERENCE: dict[Kind, float] = {"recommend": 1.0, "assign": 0.005}
"""The smallest difference per decision worth a change (rule 4), in each reward's units: 1 of money a recommend (the
demo's models gain ~12 a decision over doing nothing), half a point of first-contact resolution an assign."""


@dataclass(frozen=True)
class Outcome:
    """What feedback recorded for a decision: the served action's answer and the customer's retention (recommend),
    or the contact's end (assign); None where nothing is known yet."""

    accepted: bool | None = None
    retained: bool | None = None
    resolved: bool | None = None


@dataclass(frozen=True)
class Similarity:
    """How alike the two rankings are."""

    decisions: int
    top_agreement: float
    overlap_at_k: float
    rank_correlation: float
    champion_top_score: dict[str, float]
    challenger_top_score: dict[str, float]
    challenger_latency_us: dict[str, float]


@dataclass(frozen=True)
class EndpointReport:
    """One endpoint's part of the report."""

    kind: Kind
    similarity: Similarity
    outcomes: int
    """Decisions whose reward is known: what the values and the verdict rest on."""
    reward: str
    """The reward the values and the verdict are of."""
    logged_value: float | None
    """The mean reward of what was served (the logging policy's own value, on policy)."""
    exploration_cost: float | None
    """The champion's expected reward given up per decision by exploring."""
    awaiting: int = 0
    """Decisions whose reward is not known yet (recommend: no retained answer, or the served offer unanswered)."""
    acceptance_outcomes: int = 0
    """Recommend: decisions whose served action's acceptance is known."""
    acceptance_value: float | None = None
    """Recommend: the mean (value − cost) × accepted of what was served over those, on policy: whether offers land,
    a secondary figure the verdict does not read."""
    champion: list[Estimate] = field(default_factory=list)
    challenger: list[Estimate] = field(default_factory=list)
    difference: list[Difference] = field(default_factory=list)
    verdict: Verdict = field(default_factory=lambda: Verdict(MORE, "no decisions"))
    models: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Everything by name, for ``--format json`` and MLflow."""
        out = asdict(self)
        out["champion"] = [e.as_dict() for e in self.champion]
        out["challenger"] = [e.as_dict() for e in self.challenger]
        return out


REWARDS: dict[Kind, str] = {
    "recommend": f"lifetime value × retained {RETENTION_HORIZON_DAYS} days after the decision "
    "+ (value − cost) of the served action when accepted",
    "assign": "1 when the contact was resolved at first contact, else 0 (the resolution rate)",
}


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    q = np.quantile(np.asarray(values, dtype=np.float64), [0.1, 0.5, 0.9, 0.99])
    return {"p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2]), "p99": float(q[3])}


def _spearman(a: Sequence[str], b: Sequence[str]) -> float:
    """Spearman's correlation of two orders of the same items (NaN with fewer than two)."""
    common = [x for x in a if x in set(b)]
    n = len(common)
    if n < 2:
        return math.nan
    rank_b = {x: i for i, x in enumerate(y for y in b if y in set(common))}
    d2 = sum((i - rank_b[x]) ** 2 for i, x in enumerate(common))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


def similarity(results: Sequence[ShadowResult]) -> Similarity:
    """How alike the champion's and the challenger's rankings are over ``results``."""
    tops = [r.champion[:1] == r.challenger[:1] for r in results]
    overlap = [len(set(r.champion[:K]) & set(r.challenger[:K])) / max(1, min(K, len(r.champion))) for r in results]
    rho = [c for r in results if not math.isnan(c := _spearman(r.champion, r.challenger))]
    return Similarity(
        decisions=len(results),
        top_agreement=float(np.mean(tops)) if tops else math.nan,
        overlap_at_k=float(np.mean(overlap)) if overlap else math.nan,
        rank_correlation=float(np.mean(rho)) if rho else math.nan,
        champion_top_score=_quantiles([r.champion_scores[0] for r in results if r.champion_scores]),
        challenger_top_score=_quantiles([r.challenger_scores[0] for r in results if r.challenger_scores]),
        challenger_latency_us=_quantiles([r.challenger_us for r in results]),
    )


def outcome_of(result: ShadowResult, answers: Mapping[str, Mapping[str, Any]]) -> Outcome:
    """The outcome of the served candidate from the feedback recorded for the decision
    (:mod:`service.decision_records`): recommend's answers are keyed by action id and :data:`RETAINED`, assign's
    by ``resolved`` (with the agent who took the contact). An answer about another action, or a contact another
    agent took, says the served one was not taken up (recommend) or says nothing of it (assign)."""
    if result.kind == "assign":
        resolved = answers.get("resolved")
        if resolved is None or resolved.get("agent", result.served) != result.served:
            return Outcome()
        return Outcome(resolved=bool(resolved.get("resolved")))
    kept = answers.get(RETAINED)
    return Outcome(accepted=_accepted(result, answers), retained=None if kept is None else bool(kept.get("retained")))


def _accepted(result: ShadowResult, answers: Mapping[str, Mapping[str, Any]]) -> bool | None:
    """Whether the served action was accepted; None when nothing says."""
    served = answers.get(result.served)
    if served is not None:
        return served.get("outcome") == "accepted"
    if result.served == NO_ACTION:
        return False  # nothing offered, nothing to accept: known without feedback
    others = [a for name, a in answers.items() if name in result.champion and "outcome" in a]
    return False if any(a.get("outcome") == "accepted" for a in others) else None


def reward_of(result: ShadowResult, outcome: Outcome) -> float | None:
    """What the decision earned, the reward the verdict rests on (see the module); None when it is not known yet,
    or never will be (a recommend result of format 1 has no lifetime value)."""
    if result.kind == "assign":
        return None if outcome.resolved is None else float(outcome.resolved)
    offer = acceptance_reward_of(result, outcome)
    if offer is None or outcome.retained is None or result.lifetime_value is None:
        return None
    return result.lifetime_value * outcome.retained + offer


def acceptance_reward_of(result: ShadowResult, outcome: Outcome) -> float | None:
    """Recommend's secondary reward, acceptances alone: the served action's value − cost when it was accepted, 0
    when not (or when ``no_action`` was served); None when its answer is not known."""
    if outcome.accepted is None:
        return None
    return result.payoff[result.champion.index(result.served)] if outcome.accepted else 0.0


def _logged(results: Sequence[ShadowResult], rewards: np.ndarray, choose: str) -> LoggedDecisions:
    """The decisions as the estimators see them, for the greedy policy of ``choose`` (champion or challenger)."""
    target, model_logged, model_target = [], [], []
    for r in results:
        pick = r.champion[0] if choose == "champion" else r.challenger[0]
        expected = dict(zip(r.champion, r.expected_reward, strict=True))
        target.append(1.0 if pick == r.served else 0.0)
        model_logged.append(expected[r.served])
        model_target.append(expected[pick])
    return LoggedDecisions(
        reward=rewards,
        propensity=np.array([r.served_propensity for r in results]),
        target=np.array(target),
        model_logged=np.array(model_logged),
        model_target=np.array(model_target),
    )


def exploration_cost(results: Sequence[ShadowResult]) -> float:
    """The champion's expected reward given up per decision by the serving policy's draws."""
    lost = [
        r.expected_reward[0] - sum(p * e for p, e in zip(r.policy, r.expected_reward, strict=False)) for r in results
    ]
    return float(np.mean(lost)) if lost else math.nan


def endpoint_report(
    kind: Kind,
    results: Sequence[ShadowResult],
    outcomes: Mapping[str, Outcome],
    *,
    seed: int = 0,
    min_difference: float | None = None,
) -> EndpointReport:
    """One endpoint's report from its results and the outcomes known by decision id."""
    kept = [r for r in results if r.champion and r.challenger and r.served in r.champion]
    sim = similarity(kept)
    models = {"champion": kept[-1].champion_models, "challenger": kept[-1].challenger_models} if kept else {}
    valued = [r for r in kept if r.kind == "assign" or r.lifetime_value is not None]  # see the module: format 1
    known = [(r, outcomes.get(r.decision_id, Outcome())) for r in valued]
    judged = [(r, rw) for r, o in known if (rw := reward_of(r, o)) is not None]
    offers = [rw for r, o in known if kind == "recommend" and (rw := acceptance_reward_of(r, o)) is not None]
    report = EndpointReport(
        kind,
        sim,
        len(judged),
        REWARDS[kind],
        float(np.mean([rw for _, rw in judged])) if judged else None,
        exploration_cost(valued) if valued else None,
        awaiting=len(valued) - len(judged),
        acceptance_outcomes=len(offers),
        acceptance_value=float(np.mean(offers)) if offers else None,
        models=models,
    )
    if not judged:
        return report
    rows = [r for r, _ in judged]
    rewards = np.array([rw for _, rw in judged])
    champion, challenger = _logged(rows, rewards, "champion"), _logged(rows, rewards, "challenger")
    difference = compare(champion, challenger, seed=seed)
    mine = estimate(champion, seed=seed)
    theirs = estimate(challenger, seed=seed)
    dr = {e.estimator: e for e in mine}.get(DR)
    diff = {d.estimator: d for d in difference}.get(DR)
    ess = next((e.effective_sample_size for e in theirs), 0.0)
    return replace(
        report,
        champion=mine,
        challenger=theirs,
        difference=difference,
        verdict=recommend_promotion(len(judged), dr, diff, ess, min_difference=min_difference),
    )
