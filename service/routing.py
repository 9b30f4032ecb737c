"""Predictive routing: which of the candidate agents should take this contact.

Hard constraints first (the agent is known to the store, available, under capacity, speaks the contact's
language, holds the skill the intent needs); the eligible are then ranked by

    score = P(first-contact resolution) + retention_bonus − occupancy_penalty

where P(resolution) is the agent's measured first-contact resolution rate for this intent (from the
feature store; the learned resolution model of issue 6 replaces it), the retention bonus sends customers
at high churn risk to retention-skilled agents, and the occupancy penalty spreads work so the best agents
are not flooded. Ties go to the longest-idle agent, then the id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from features import EntitySchema, EntityVector

# Which skill (and which proficiency feature) a contact's intent needs.
INTENT_SKILL = {"billing": "billing", "technical": "technical", "cancel": "retention", "sales": "sales"}
HIGH_RISK = 0.30
RETENTION_BONUS = 0.15
OCCUPANCY_PENALTY = 0.10


@dataclass(frozen=True)
class RankedAgent:
    """An eligible agent with its score and the numbers behind it."""

    agent_id: str
    score: float
    p_resolution: float
    reasons: list[str]


@dataclass(frozen=True)
class ExcludedAgent:
    """A candidate that failed a hard constraint, and which."""

    agent_id: str
    reason: str


def _constraint_failure(agent: EntityVector, schema: EntitySchema, skill: str, language: str) -> str | None:
    if not agent.found:
        return "unknown agent"
    v = dict(zip(schema.names, agent.values.tolist(), strict=True))
    if v["available"] != 1.0:
        return "not available"
    if not v["current_load"] < v["max_load"]:
        return "at capacity"
    if v.get(f"speaks_{language}") != 1.0:
        return f"does not speak {language}"
    if v[f"skill_{skill}"] != 1.0:
        return f"lacks the {skill} skill"
    return None


def rank_agents(
    agents: Sequence[EntityVector], *, schema: EntitySchema, intent: str, language: str, churn_risk: float | None
) -> tuple[list[RankedAgent], list[ExcludedAgent]]:
    """Eligible agents best first, and the excluded with their reason."""
    skill = INTENT_SKILL[intent]
    proficiency = schema.feature(f"proficiency_{skill}")
    ranked: list[tuple[RankedAgent, float]] = []
    excluded: list[ExcludedAgent] = []
    for agent in agents:
        failure = _constraint_failure(agent, schema, skill, language)
        if failure is not None:
            excluded.append(ExcludedAgent(agent.entity_id, failure))
            continue
        v = dict(zip(schema.names, agent.values.tolist(), strict=True))
        p = v[proficiency.name]
        reasons = [proficiency.phrase(p)]
        bonus = 0.0
        if churn_risk is not None and churn_risk >= HIGH_RISK and v["skill_retention"] == 1.0:
            bonus = RETENTION_BONUS
            reasons.append("retention specialist for a customer at high churn risk")
        occupancy = v["current_load"] / max(v["max_load"], 1.0)
        if occupancy > 0:
            reasons.append(schema.feature("current_load").phrase(v["current_load"]))
        score = p + bonus - OCCUPANCY_PENALTY * occupancy
        ranked.append((RankedAgent(agent.entity_id, score, p, reasons), v["idle_seconds"]))
    ranked.sort(key=lambda pair: (-pair[0].score, -pair[1], pair[0].agent_id))
    return [r for r, _ in ranked], excluded
