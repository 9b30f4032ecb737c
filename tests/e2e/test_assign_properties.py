"""Assign's hard constraints, for any contact and any candidates: through HTTP, against the materialized store."""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import OfflineStore, Registry

INTENTS = ["billing", "technical", "cancel", "sales"]


@cache
def _agents(offline: OfflineStore) -> dict[str, dict[str, Any]]:
    return {a["agent_id"]: a for a in offline.latest("agent").to_pylist()}


@cache
def _customers(offline: OfflineStore) -> list[str]:
    return offline.latest("customer").column("customer_id").to_pylist()[:200]


def _first_failure(agent: dict[str, Any] | None, skill: str, language: str) -> str | None:
    """What the service must say of a candidate, from the snapshot the store was given: its first failed check."""
    if agent is None:
        return "unknown agent"
    checks = [
        (agent["available"] != 1, "not available"),
        (not agent["current_load"] < agent["max_load"], "at capacity"),
        (agent.get(f"speaks_{language}") != 1, f"does not speak {language}"),
        (agent[f"skill_{skill}"] != 1, f"lacks the {skill} skill"),
    ]
    return next((reason for failed, reason in checks if failed), None)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_assign_returns_only_agents_that_meet_every_hard_constraint(
    http: httpx.Client, offline: OfflineStore, registry: Registry, data: st.DataObject
) -> None:
    """Every candidate is either ranked (and then meets the skill, language, availability and capacity rules) or
    excluded with its first failed rule; the ranked come best first. Unknown agents and customers included."""
    agents = _agents(offline)
    languages = sorted(registry.entity("customer").feature("language").categories or ())
    intent = data.draw(st.sampled_from(INTENTS), label="intent")
    language = data.draw(st.sampled_from(languages), label="language")
    customer = data.draw(st.sampled_from([*_customers(offline), "C999999"]), label="customer")
    candidates = data.draw(
        st.lists(st.sampled_from([*sorted(agents), "A9998", "A9999"]), min_size=1, max_size=40), label="candidates"
    )
    response = http.post(
        "/v1/assign",
        json={
            "customer_id": customer,
            "intent": intent,
            "channel": "voice",
            "language": language,
            "agent_ids": candidates,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    skill = registry.intent_skills[intent]
    ranked = [a["agent_id"] for a in body["agents"]]
    excluded = {e["agent_id"]: e["reason"] for e in body["excluded"]}
    assert sorted([*ranked, *excluded]) == sorted(set(candidates))  # each candidate once, ranked or excluded
    for agent_id in ranked:
        assert _first_failure(agents.get(agent_id), skill, language) is None, (agent_id, agents.get(agent_id))
    for agent_id, reason in excluded.items():
        assert reason == _first_failure(agents.get(agent_id), skill, language), agent_id
    scores = [a["score"] for a in body["agents"]]
    assert all(a >= b for a, b in itertools.pairwise(scores))
    assert all(0.0 <= a["p_resolution"] <= 1.0 for a in body["agents"])
    assert body["degraded"] is False
