"""Routing's rules over any candidates: the hard constraints and the first failed one, the order (score, then the
longest idle, then the id), the retention bonus, and the reasons, remembered or not, phrased as the contract says."""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features import EntityBatch, EntitySchema, Registry
from service.routing import (
    HIGH_RISK,
    OCCUPANCY_PENALTY,
    RETENTION_BONUS,
    RETENTION_REASON,
    AgentReasons,
    fallback_resolution,
    order_agents,
    rank_agents,
)

SKILLS = ["billing", "technical", "retention", "sales"]


@cache
def _schema() -> EntitySchema:
    return Registry.load().entity("agent")


# Few distinct values, so that ties in score and idle time, zero and missing rates, and repeated agents (the
# reasons' memory) all come up.
_rating = st.sampled_from([0.0, -0.0, 0.4, 0.6, 0.8])
_rate = st.sampled_from([math.nan, 0.0, -0.0, 0.4, 0.6, 0.8, 0.8125])
_flag = st.sampled_from([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, math.nan])
_agent = st.fixed_dictionaries(
    {
        "found": st.sampled_from([True, True, True, True, False]),
        "flags": st.lists(_flag, min_size=8, max_size=8),
        "ratings": st.lists(_rating, min_size=4, max_size=4),
        "rates": st.lists(_rate, min_size=4, max_size=4),
        "contacts": st.lists(st.sampled_from([0.0, 3.0, 40.0]), min_size=4, max_size=4),
        "load": st.sampled_from([0.0, 1.0, 2.0, 3.0, math.nan]),
        "max_load": st.sampled_from([1.0, 3.0, 4.0]),
        "idle": st.sampled_from([0.0, 30.0, 600.0]),
        "handle": st.sampled_from([math.nan, 300.0, 420.5]),
    }
)


def _batch(agents: list[dict[str, object]]) -> EntityBatch:
    """A batch of ``agents`` (ids A0000, A0001, ... in a shuffled order), every other feature 0."""
    schema = _schema()
    values = np.zeros((len(agents), len(schema.names)))
    column = schema.index
    flags = [*(f"skill_{s}" for s in SKILLS), "speaks_en", "speaks_es", "speaks_fr", "available"]
    ratings = [f"proficiency_{s}" for s in SKILLS]
    rates = [f"resolution_rate_{s}_180d" for s in SKILLS]
    for row, agent in zip(values, agents, strict=True):
        for names, key in ((flags, "flags"), (ratings, "ratings"), (rates, "rates")):
            for name, value in zip(names, agent[key], strict=True):  # type: ignore[call-overload]
                row[column[name]] = value
        for skill, value in zip(SKILLS, agent["contacts"], strict=True):  # type: ignore[call-overload]
            row[column[f"contacts_{skill}_180d"]] = value
        for name, key in (("current_load", "load"), ("max_load", "max_load"), ("idle_seconds", "idle")):
            row[column[name]] = agent[key]
        row[column["handle_time_mean_30d_s"]] = agent["handle"]
    ids = [f"A{i:04d}" for i in reversed(range(len(agents)))]
    found = np.array([a["found"] for a in agents], dtype=bool)
    return EntityBatch(schema, ids, values, ~np.isnan(values), found, np.zeros((len(agents), len(schema.view_names))))


def _first_failure(batch: EntityBatch, i: int, skill: str, language: str) -> str | None:
    """The constraint a candidate fails first, by hand."""
    row = dict(zip(_schema().names, batch.values[i].tolist(), strict=True))
    checks = [
        (not batch.found[i], "unknown agent"),
        (row["available"] != 1.0, "not available"),
        (not row["current_load"] < row["max_load"], "at capacity"),
        (row.get(f"speaks_{language}") != 1.0, f"does not speak {language}"),
        (row[f"skill_{skill}"] != 1.0, f"lacks the {skill} skill"),
    ]
    return next((reason for failed, reason in checks if failed), None)


def _reasons(row: dict[str, float], skill: str, bonus: bool) -> list[str]:
    """An agent's reasons, by hand from the contract's phrases."""
    schema = _schema()
    rate = row[f"resolution_rate_{skill}_180d"]
    out = [] if math.isnan(rate) else [schema.feature(f"resolution_rate_{skill}_180d").phrase(rate)]
    out.append(schema.feature(f"proficiency_{skill}").phrase(row[f"proficiency_{skill}"]))
    if bonus:
        out.append(RETENTION_REASON)
    if row["current_load"] > 0:
        out.append(schema.feature("current_load").phrase(row["current_load"]))
    return out


_reasons_kept = {skill: AgentReasons(_schema(), skill) for skill in SKILLS}
"""Kept across examples, as the service keeps them across requests: later examples meet remembered agents."""


@st.composite
def _agents(draw: st.DrawFn) -> list[dict[str, object]]:
    """Agents, some of them twins of another but for their idle time (ties in score)."""
    agents = draw(st.lists(_agent, max_size=30))
    twins = draw(st.lists(st.tuples(st.integers(0, 29), st.sampled_from([0.0, 30.0, 600.0])), max_size=10))
    return agents + [{**agents[i], "idle": idle} for i, idle in twins if i < len(agents)]


@settings(max_examples=300)
@given(
    agents=_agents(),
    skill=st.sampled_from(SKILLS),
    language=st.sampled_from(["en", "es", "fr", "de"]),
    churn_risk=st.sampled_from([None, 0.1, HIGH_RISK, 0.9]),
    scored=st.booleans(),
)
def test_rank_agents_keeps_every_rule_for_any_candidates(
    agents: list[dict[str, object]], skill: str, language: str, churn_risk: float | None, scored: bool
) -> None:
    batch = _batch(agents)
    schema = _schema()

    def score(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # A stand-in model with ties: P(resolution) from the rating alone, a fixed handle time.
        assert x.shape == (len(x), len(schema.model_at))
        return x[:, list(schema.model_names).index(f"proficiency_{skill}")], np.full(len(x), 400.0)

    ranking = rank_agents(
        batch,
        schema=schema,
        skill=skill,
        language=language,
        churn_risk=churn_risk,
        score=score if scored else None,
        reasons=_reasons_kept[skill],
    )
    ids = list(batch.ids)
    # Each candidate once: ranked when it fails nothing, else excluded with its first failure, in the batch's order.
    failures = {ids[i]: _first_failure(batch, i, skill, language) for i in range(len(ids))}
    assert sorted(r.agent_id for r in ranking.agents) == sorted(a for a, f in failures.items() if f is None)
    assert [(e.agent_id, e.reason) for e in ranking.excluded] == [(a, f) for a, f in failures.items() if f is not None]
    assert [ids[i] for i in ranking.rows.tolist()] == [r.agent_id for r in ranking.agents]
    bonus_given = churn_risk is not None and churn_risk >= HIGH_RISK
    keys = []
    for r, i in zip(ranking.agents, ranking.rows.tolist(), strict=True):
        row = dict(zip(schema.names, batch.values[i].tolist(), strict=True))
        bonus = bonus_given and row["skill_retention"] == 1.0
        if scored:
            p, handle = row[f"proficiency_{skill}"], 400.0
        else:
            p = float(fallback_resolution(batch.values[i : i + 1], schema, skill)[0])
            handle = row["handle_time_mean_30d_s"]
        occupancy = row["current_load"] / max(row["max_load"], 1.0)
        assert r.p_resolution == p
        assert r.score == (p + (RETENTION_BONUS if bonus else 0.0)) - OCCUPANCY_PENALTY * occupancy
        assert r.expected_handle_time_s == (None if math.isnan(handle) else handle)
        assert r.reasons == _reasons(row, skill, bonus)
        keys.append((-r.score, -row["idle_seconds"], r.agent_id))
    assert keys == sorted(keys), "best score first, then the longest idle, then the id"
    # The order is order_agents' (what the shadow worker replays).
    order = order_agents(
        batch, schema=schema, skill=skill, language=language, churn_risk=churn_risk, score=score if scored else None
    )
    assert order.rows.tolist() == ranking.rows.tolist()


def test_agent_reasons_phrase_the_contract_and_remember_them_exactly() -> None:
    reasons = AgentReasons(_schema(), "billing")
    first = reasons(0.8125, 0.6, 2.0, True)
    assert first == [
        "resolved 81% of billing contacts in 180 days",
        "rated to resolve 60% of billing contacts",
        RETENTION_REASON,
        "handling 2 contacts",
    ]
    first.append("changed by the caller")
    assert reasons(0.8125, 0.6, 2.0, True) == first[:-1], "each call gets its own list"
    assert reasons(math.nan, 0.6, 0.0, False) == ["rated to resolve 60% of billing contacts"]
    assert reasons(math.nan, 0.6, 0.0, False) == ["rated to resolve 60% of billing contacts"]
    # 0.0 and -0.0 are one key of a dict yet two phrases: neither is remembered for the other.
    assert reasons(0.0, 0.4, 0.0, False)[0] == "resolved 0% of billing contacts in 180 days"
    assert reasons(-0.0, 0.4, 0.0, False)[0] == "resolved -0% of billing contacts in 180 days"
    assert reasons(0.5, -0.0, 0.0, False)[1] == "rated to resolve -0% of billing contacts"
    assert reasons(0.5, 0.0, 0.0, False)[1] == "rated to resolve 0% of billing contacts"
    assert reasons(0.5, math.nan, 0.0, False)[1] == f"{_schema().feature('proficiency_billing').description} unknown"


def test_agent_reasons_start_again_when_full() -> None:
    reasons = AgentReasons(_schema(), "sales", kept=4)
    phrased = {}
    for rate, load in itertools.product([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], [0.0, 1.0]):
        phrased[rate, load] = reasons(rate, 0.6, load, False)
    # Asked again in another order, the memory having started again several times: the same.
    for (rate, load), expected in reversed(phrased.items()):
        assert reasons(rate, 0.6, load, False) == expected
        assert expected[0] == f"resolved {rate:.0%} of sales contacts in 180 days"
