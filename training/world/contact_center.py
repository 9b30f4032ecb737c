"""The contact center's staff, a month's contacts and their surveys, and the agents' recent results."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from training.world.config import _US_PER_S, CHANNELS, INTENTS, LANGUAGES, intent_skills
from training.world.draws import _sample, _times
from training.world.routing_oracle import (
    CSAT_NOISE,
    SKILLS,
    TALENT_DRIFT,
    TALENT_SPREAD,
    _sigmoid,
    csat_mean,
    handle_time_factor,
    handle_time_scale,
    true_resolution_probability,
    true_transfer_probability,
)

Talent = dict[str, np.ndarray]
"""Each agent's latent skill per intent, ``talent_<skill>`` (log-odds), which no feature holds."""
RESULT_WINDOWS = {"90d": 3, "180d": 6}
"""Months of contacts behind each of an agent's measured per-intent rates (``resolution_rate_<skill>_<window>``).
The 180-day rate is there because an agent takes few contacts of an intent a month (about 7 in the demo world of
5,000 customers it was added for, some 60 in today's 50,000) while its latent skill drifts slowly
(:data:`~training.world.routing_oracle.TALENT_DRIFT` a month): twice the evidence outweighs its staleness, and the
two windows side by side show a recent change."""
RESULT_MONTHS = max(RESULT_WINDOWS.values())
"""Months of per-intent counts the simulation keeps for :func:`_intent_results`."""


def _agents(rng: np.random.Generator, traits: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], Talent]:
    """Agent profiles and their latent skill per intent.

    English is most common, ~20% are retention specialists, and a skill raises the latent skill at hire. The
    profile's ``proficiency_<skill>`` is workforce management's rating, made at onboarding from a noisy look at
    that latent skill and kept on a coarse five-level scale (40% to 80%); the latent skill then moves without
    it (see :mod:`training.world.routing_oracle`). ``traits`` draws what ``rng`` did not before the latent
    skill existed, so the customers' and contacts' draws from ``rng`` stay as they were.
    """
    a: dict[str, np.ndarray] = {}
    for skill, share in (("billing", 0.6), ("technical", 0.5), ("retention", 0.2), ("sales", 0.4)):
        a[f"skill_{skill}"] = rng.random(n) < share
    for lang, share in (("en", 0.9), ("es", 0.3), ("fr", 0.15)):
        a[f"speaks_{lang}"] = rng.random(n) < share
    a["speaks_en"] |= ~(a["speaks_es"] | a["speaks_fr"])
    for i, lang in enumerate(LANGUAGES):  # every language can be routed somewhere, even in tiny worlds
        a[f"speaks_{lang}"][i] = True
    talent: Talent = {}
    for skill in SKILLS:
        at_hire = np.clip(rng.beta(5, 4, n) + 0.15 * a[f"skill_{skill}"], 0.05, 0.97)
        talent[f"talent_{skill}"] = TALENT_SPREAD * np.log(at_hire / (1.0 - at_hire))
        seen = _sigmoid(talent[f"talent_{skill}"] + traits.normal(0.0, 0.35, n))
        a[f"proficiency_{skill}"] = np.clip(np.round(seen, 1), 0.4, 0.8)
    a["available"] = rng.random(n) < 0.7
    a["max_load"] = rng.integers(1, 5, n).astype(np.int64)
    load = rng.integers(0, 5, n) % (a["max_load"] + 1)
    a["current_load"] = np.where(a["available"], load, 0).astype(np.int64)
    a["idle_seconds"] = np.where(a["available"], rng.exponential(120.0, n), 0).astype(np.int64)
    a["experience_months"] = np.minimum(traits.exponential(12.0, n), 120.0).astype(np.int64)
    return a, talent


def _next_month(traits: np.random.Generator, agents: dict[str, np.ndarray], talent: Talent) -> None:
    """A month passes: every agent has a month more experience and each latent skill takes a random step."""
    agents["experience_months"] = agents["experience_months"] + 1
    for name, value in talent.items():
        talent[name] = value + traits.normal(0.0, TALENT_DRIFT, len(value))


def _contacts(
    rng: np.random.Generator,
    who: np.ndarray,
    n_contacts: np.ndarray,
    n_repeat: np.ndarray,
    latent: Mapping[str, np.ndarray],
    agents: Mapping[str, np.ndarray],
    snapshot_us: int,
) -> dict[str, np.ndarray]:
    """A month's contacts of customers ``who``: when, why, routed to whom, resolved, transferred, repeated.

    Contacts come grouped by customer in time order; a customer's last ``n_repeat`` contacts of the month
    are repeats about the first one's issue (same intent). ``agents`` holds each agent's profile and latent
    skill this month; the outcomes come from :mod:`training.world.routing_oracle`, and the customer's hidden
    state it reads (``complaint``, ``mood``) is returned with the contacts, for the oracle's later use.
    """
    counts = n_contacts[who]
    owner = np.repeat(who, counts)
    n = len(owner)
    t = _times(rng, n, snapshot_us)
    order = np.lexsort((t, owner))
    owner, t = owner[order], t[order]
    first = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.arange(n) - first
    repeat = rank >= np.repeat(counts - n_repeat[who], counts)
    lat = {k: v[owner] for k, v in latent.items()}
    weights = np.stack(
        [
            1.0 + 2.0 * (lat["failed"] > 0) + (lat["price_rise"] > 0),
            1.0 + 1.5 * (lat["repeat"] > 0),
            0.3 + 2.0 * lat["complaint"] + (lat["sentiment"] < -0.3),
            np.full(n, 0.6),
        ],
        axis=1,
    )
    intent_code = _sample(rng, weights)
    intent_code = np.where(repeat, intent_code[first], intent_code)
    intent = np.asarray(INTENTS)[intent_code]
    channel = _sample(rng, np.tile([0.5, 0.35, 0.15], (n, 1)))
    language = np.asarray(LANGUAGES)[lat["language"]]
    agent = rng.integers(0, len(agents["available"]), n)
    matched = rng.random(n) < 0.85  # routing usually respects language
    for lang in LANGUAGES:
        pool = np.flatnonzero(agents[f"speaks_{lang}"])
        m = matched & (language == lang)
        agent[m] = pool[rng.integers(0, len(pool), int(m.sum()))]
    pair = {k: v[agent] for k, v in agents.items()}
    truth = {
        "intent": intent,
        "channel": np.asarray(CHANNELS)[channel],
        "language": language,
        "repeat": repeat,
        "complaint": lat["complaint"].astype(bool),
        "mood": lat["sentiment"],
    }
    resolved = rng.random(n) < true_resolution_probability(truth, pair)
    transferred = rng.random(n) < true_transfer_probability(truth, pair)
    noise = rng.lognormal(0.0, 0.4, n)
    handle = handle_time_scale(truth, pair) * noise * handle_time_factor(resolved, transferred)
    return {
        "owner": owner,
        "t": t,
        "intent": intent_code,
        "channel": channel,
        "language": lat["language"],
        "agent": agent,
        "resolved": resolved,
        "transferred": transferred,
        "repeat": repeat,
        "handle_time_s": np.round(handle, 1),
        "complaint": truth["complaint"],
        "mood": truth["mood"],
    }


def _surveys(rng: np.random.Generator, con: Mapping[str, np.ndarray], sentiment: np.ndarray) -> dict[str, np.ndarray]:
    """The post-contact surveys answered: about 30% of contacts, within half an hour of the contact's end.

    CSAT (1 to 5) follows the contact: high when it was resolved, lower after a transfer or with an unhappy
    customer. NPS (0 to 10) is asked in half the surveys and follows the customer's mood more than the
    contact. ``nps`` is NaN where the survey did not ask it.
    """
    answered = np.flatnonzero(rng.random(len(con["owner"])) < 0.3)
    owner, resolved = con["owner"][answered], con["resolved"][answered]
    mood = sentiment[owner]
    m = len(answered)
    centre = csat_mean(resolved, con["transferred"][answered], mood)
    csat = np.clip(np.rint(centre + rng.normal(0, CSAT_NOISE, m)), 1, 5)
    nps = np.clip(np.rint(5.5 + 3.0 * mood + 0.8 * (csat - 3.0) + rng.normal(0.0, 1.5, m)), 0, 10)
    asked = rng.random(m) < 0.5
    return {
        "owner": owner,
        "t": con["t"][answered] + rng.integers(60, 1_801, m) * _US_PER_S,
        "csat": csat,
        "nps": np.where(asked, nps, np.nan),
    }


def _agent_results(con: Mapping[str, np.ndarray], n_agents: int) -> dict[str, np.ndarray]:
    """Each agent's share of contacts resolved and mean handle time over ``con`` (NaN for an agent with none).

    Workforce management computes these daily over the last 30 days; the world takes the last month's contacts.
    """
    handled = np.bincount(con["agent"], minlength=n_agents)
    resolved = np.bincount(con["agent"], weights=con["resolved"].astype(np.float64), minlength=n_agents)
    seconds = np.bincount(con["agent"], weights=con["handle_time_s"], minlength=n_agents)
    some = handled > 0
    safe = np.maximum(handled, 1)
    return {
        "resolution_rate_30d": np.where(some, np.round(resolved / safe, 3), np.nan),
        "handle_time_mean_30d_s": np.where(some, np.round(seconds / safe, 1), np.nan),
    }


def _intent_counts(con: Mapping[str, np.ndarray], n_agents: int) -> np.ndarray:
    """A (2, agents, skills) array: each agent's contacts needing each skill over ``con``, then those resolved."""
    skill_of_intent = np.array([SKILLS.index(intent_skills()[i]) for i in INTENTS])
    cell = con["agent"] * len(SKILLS) + skill_of_intent[con["intent"]]
    size = n_agents * len(SKILLS)
    handled = np.bincount(cell, minlength=size)
    resolved = np.bincount(cell, weights=con["resolved"].astype(np.float64), minlength=size)
    return np.stack([handled, resolved]).reshape(2, n_agents, len(SKILLS))


def _intent_results(months: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each agent's measured resolution rate per skill over each window of :data:`RESULT_WINDOWS` (its newest
    months of :func:`_intent_counts`, oldest first in ``months``), and how many contacts it counts (NaN rate for
    none): what workforce management measures, unlike the rating, and what reveals the latent skill as it drifts."""
    out: dict[str, np.ndarray] = {}
    for window, n_months in RESULT_WINDOWS.items():
        handled, resolved = np.sum(months[-n_months:], axis=0)
        for j, skill in enumerate(SKILLS):
            some = handled[:, j] > 0
            rate = np.round(resolved[:, j] / np.maximum(handled[:, j], 1), 3)
            out[f"resolution_rate_{skill}_{window}"] = np.where(some, rate, np.nan)
            out[f"contacts_{skill}_{window}"] = handled[:, j].astype(np.int64)
    return out
