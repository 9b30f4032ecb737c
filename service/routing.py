"""Predictive routing: which of the candidate agents should take this contact.

Hard constraints first (the agent is known to the store, available, under capacity, speaks the contact's
language, holds the skill the intent needs); the eligible are then ranked by

    score = P(first-contact resolution) + retention_bonus − occupancy_penalty

where P(resolution) and the expected handle time come from the resolution model, which scores every eligible
agent for this contact and customer in one call (``score``). Without it (the fallback, which the answer flags)
P(resolution) is the agent's measured resolution rate for the intent's skill over :data:`MEASURED_WINDOW`,
pulled toward workforce management's rating of the agent (``proficiency_<skill>``) as if the rating were
:data:`RATING_WEIGHT` contacts more: an agent with few measured contacts keeps close to its rating, one with
many is judged on its results; the expected handle time is the agent's 30-day mean. The retention bonus sends
customers at high churn risk to retention-skilled agents, and the occupancy penalty spreads work so the best
agents are not flooded. Ties go to the longest-idle agent, then the id.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import numpy as np

from features import EntityBatch, EntitySchema

HIGH_RISK = 0.30
RETENTION_BONUS = 0.15
OCCUPANCY_PENALTY = 0.10
RATING_WEIGHT = 20.0
"""In the fallback, how many contacts' worth of evidence the rating counts for beside the measured rate."""
MEASURED_WINDOW = "180d"
"""The window of the measured rate the fallback reads and the reasons quote. Of the contract's two (90 and 180
days), the longer one: an agent takes few contacts of an intent a month, so the 90-day rate is noisy. Routing the
simulated test worlds (seeds 1007-1012, 2024-2029, of 5,000 customers and 100 agents) by the fallback captured 72%
of the oracle's FCR gain over skills-only routing with it, 60% with the 90-day rate."""
RETENTION_REASON = "retention specialist for a customer at high churn risk"
RETENTION_SKILL = "retention"
"""The skill of the agents the retention bonus goes to."""
REASONS_KEPT = 4_096
"""How many agents' reasons :class:`AgentReasons` remembers before it starts again: the values of a few thousand
agents (a few hundred bytes each)."""

Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Agents' model inputs (one row each, ``schema.model_at`` columns) → (P(resolution), expected handle time s)."""


# msgspec Structs, not dataclasses: an assign builds one per candidate, and a frozen dataclass cost ~0.6 us each
# (~60 us with 100 candidates), a Struct ~0.08 us.
class RankedAgent(msgspec.Struct, frozen=True):
    """An eligible agent with its score and the numbers behind it."""

    agent_id: str
    score: float
    p_resolution: float
    expected_handle_time_s: float | None
    reasons: list[str]


class ExcludedAgent(msgspec.Struct, frozen=True):
    """A candidate that failed a hard constraint, and which."""

    agent_id: str
    reason: str


def _check(
    agents: EntityBatch, schema: EntitySchema, skill: str, language: str
) -> tuple[np.ndarray, list[ExcludedAgent]]:
    """The eligible candidates' rows, and the others with their first failed hard constraint; over the batch's matrix
    at once (the rows of the excluded, their first failure and its reason in whole-array steps, no loop per agent)."""
    v = agents.values
    index = schema.index
    speaks = f"speaks_{language}"
    checks = [  # in this order: the first failed check names the reason
        (~agents.found, "unknown agent"),
        (v[:, index["available"]] != 1.0, "not available"),
        (~(v[:, index["current_load"]] < v[:, index["max_load"]]), "at capacity"),
        (v[:, index[speaks]] != 1.0 if speaks in index else np.ones(len(v), bool), f"does not speak {language}"),
        (v[:, index[f"skill_{skill}"]] != 1.0, f"lacks the {skill} skill"),
    ]
    failed = np.array([c for c, _ in checks])
    failing = failed.any(axis=0)
    out = np.flatnonzero(failing)
    first = failed[:, out].argmax(axis=0).tolist()  # argmax of booleans: the first True
    ids, reasons = agents.ids, [r for _, r in checks]
    excluded = [ExcludedAgent(ids[i], reasons[k]) for i, k in zip(out.tolist(), first, strict=True)]
    return np.flatnonzero(~failing), excluded


@dataclass(frozen=True)
class Order:
    """The eligible candidates best first, as arrays over them (no reasons: :func:`rank_agents` adds those)."""

    rows: np.ndarray
    """Their rows in the batch, best first."""
    score: np.ndarray
    p_resolution: np.ndarray
    handle_time_s: np.ndarray
    """NaN where unknown."""
    excluded: list[ExcludedAgent]


def order_agents(
    agents: EntityBatch,
    *,
    schema: EntitySchema,
    skill: str,
    language: str,
    churn_risk: float | None,
    score: Scorer | None,
) -> Order:
    """The eligible agents best first by the module's score, ties to the longest idle then the id, and the excluded
    with their reason; over the batch's matrix at once (the shadow worker needs no more than this).

    ``score`` is the resolution model's (None: :func:`fallback_resolution` and the 30-day handle time stand in).
    """
    at, excluded = _check(agents, schema, skill, language)
    values = agents.values[at]
    if score is not None and len(at):
        p, seconds = score(values[:, schema.model_at])
    else:
        p = fallback_resolution(values, schema, skill)
        seconds = values[:, schema.index["handle_time_mean_30d_s"]]
    p, seconds = np.asarray(p, dtype=np.float64), np.asarray(seconds, dtype=np.float64)
    column = schema.index
    # Without a customer at high risk nobody gets the bonus: adding 0.0 gives the bits adding zeros would.
    high_risk = churn_risk is not None and churn_risk >= HIGH_RISK
    retention = values[:, column[f"skill_{RETENTION_SKILL}"]]
    bonus = np.where(retention == 1.0, RETENTION_BONUS, 0.0) if high_risk else 0.0
    occupancy = values[:, column["current_load"]] / np.maximum(values[:, column["max_load"]], 1.0)
    scores = (p + bonus) - OCCUPANCY_PENALTY * occupancy
    # The ids' ranks stand in for the ids as the last key: a numpy array of strings cost more than sorting them.
    ids = [agents.ids[i] for i in at.tolist()]
    id_rank = np.empty(len(ids), dtype=np.intp)
    id_rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
    best = np.lexsort((id_rank, -values[:, column["idle_seconds"]], -scores))  # the last key sorts first
    return Order(at[best], scores[best], p[best], seconds[best], excluded)


class AgentReasons:
    """The reasons an agent is shown with for contacts of one skill: its measured rate (when it has one), its
    rating, the retention bonus when it applied, its load.

    Remembered per agent's values: the same agents are candidates on every assign and their values change only
    with events, and formatting three phrases cost ~5 us an agent (~150 us an assign of 100 candidates, a third of
    them eligible). Exact: the phrases are a function of the values. Values that compare equal yet phrase
    differently (0.0 and -0.0: "0%" and "-0%") or never compare equal (NaN) are phrased every time.
    """

    def __init__(self, schema: EntitySchema, skill: str, *, kept: int = REASONS_KEPT) -> None:
        self._kept = kept
        self._measured = schema.feature(f"resolution_rate_{skill}_{MEASURED_WINDOW}")
        self._rating = schema.feature(f"proficiency_{skill}")
        self._load = schema.feature("current_load")
        names = (self._measured.name, self._rating.name, self._load.name, f"skill_{RETENTION_SKILL}")
        self.columns = np.array([schema.index[n] for n in names], dtype=np.intp)
        """Where the values the reasons read sit in an agent's vector: the measured rate, the rating, the load, and
        whether the agent is retention-skilled."""
        self._known: dict[tuple[float | None, float, float, bool], list[str]] = {}

    def __call__(self, rate: float, rating: float, load: float, retention_bonus: bool) -> list[str]:
        """The reasons for an agent with these values (a new list each call)."""
        measured = not math.isnan(rate)
        key = (rate if measured else None, rating, load, retention_bonus)
        reasons = self._known.get(key)
        if reasons is None:
            reasons = [self._rating.phrase(rating)]
            if measured:
                reasons.insert(0, self._measured.phrase(rate))
            if retention_bonus:
                reasons.append(RETENTION_REASON)
            if load > 0:
                reasons.append(self._load.phrase(load))
            if (rate != 0.0 or not measured) and rating != 0.0 and not math.isnan(rating) and not math.isnan(load):
                if len(self._known) >= self._kept:
                    self._known.clear()
                self._known[key] = reasons
        return list(reasons)


@dataclass(frozen=True)
class Ranking:
    """The eligible agents best first with their reasons, their rows in the batch, and the excluded."""

    agents: list[RankedAgent]
    rows: np.ndarray
    excluded: list[ExcludedAgent]


def rank_agents(
    agents: EntityBatch,
    *,
    schema: EntitySchema,
    skill: str,
    language: str,
    churn_risk: float | None,
    score: Scorer | None,
    reasons: AgentReasons,
) -> Ranking:
    """Eligible agents best first (:func:`order_agents`), each with its reasons (``reasons``, for ``skill``), and
    the excluded with theirs."""
    order = order_agents(agents, schema=schema, skill=skill, language=language, churn_risk=churn_risk, score=score)
    # The columns the reasons read, as Python floats, in one gather: per-agent numpy scalar indexing cost more than
    # the rest of the loop, and a gather and a conversion per column ~10 us.
    rates, ratings, load, retention = agents.values[order.rows[:, None], reasons.columns].T.tolist()
    bonus_given = churn_risk is not None and churn_risk >= HIGH_RISK
    ids = agents.ids
    ranked = [
        RankedAgent(
            ids[i],
            s,
            p,
            None if math.isnan(handle) else handle,
            reasons(rate, rating, busy, bonus_given and skilled == 1.0),
        )
        for i, s, p, handle, rate, rating, busy, skilled in zip(
            order.rows.tolist(),
            order.score.tolist(),
            order.p_resolution.tolist(),
            order.handle_time_s.tolist(),
            rates,
            ratings,
            load,
            retention,
            strict=True,
        )
    ]
    return Ranking(ranked, order.rows, order.excluded)


def fallback_resolution(values: np.ndarray, schema: EntitySchema, skill: str) -> np.ndarray:
    """P(resolution) without the model, for agents' rows ``values``: the measured rate for ``skill`` over its
    contacts and the rating as :data:`RATING_WEIGHT` contacts more (the rating alone when none were measured)."""
    rating = values[:, schema.index[f"proficiency_{skill}"]]
    rate = values[:, schema.index[f"resolution_rate_{skill}_{MEASURED_WINDOW}"]]
    contacts = np.where(np.isnan(rate), 0.0, values[:, schema.index[f"contacts_{skill}_{MEASURED_WINDOW}"]])
    return np.asarray(
        (RATING_WEIGHT * rating + contacts * np.nan_to_num(rate)) / (RATING_WEIGHT + contacts), dtype=np.float64
    )
