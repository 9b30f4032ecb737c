"""The ground truth of routing: first-contact resolution, handle time and CSAT of (contact, agent) pairs.

Each agent has a latent skill per intent (``talent_<skill>``, a log-odds) that nothing in the feature contract
holds. Workforce management's rating of it, the contract's ``proficiency_<skill>``, is noisy, coarse (five
levels) and stale: it was set at onboarding, and ignores how the agent learned since, how the skill drifted,
and who is calling. Every outcome the simulation draws about a contact comes from these functions, and the
routing evaluation scores each policy's pick with them. What moves the log-odds of resolving a contact:

=====================  ===========================================  ==========================================
term                   effect on the resolution log-odds            what a model can see of it
=====================  ===========================================  ==========================================
latent skill           ``talent_<skill>`` of the intent's skill:    the rating (its noisy view at hire, 5
                       0.4 x the log-odds of a Beta(5, 4) draw      levels, never updated); the measured rate
                       (+0.15 with the skill) at hire, then a       for the intent's skill over 90 and 180
                       N(0, 0.05) step a month                      days and how many contacts each counts
experience             +2.0 x (1 - exp(-months / 18)) - 1.0: a      ``experience_months`` (at the world's
                       novice -1.0, a year in -0.03, three +0.73    start exponential, mean 12 months)
difficult customer     -(0.8 open complaint + 0.5 repeat contact    the customer's ``open_complaint``,
                       + 0.8 x max(0, -mood)), softened by          ``repeat_contacts_30d``, sentiment features
                       experience (by 23% a year, 70% at three)     (the mood itself is hidden)
skill not held         -0.8                                         ``skill_<skill>`` (a hard constraint)
language not spoken    -2.0                                         ``speaks_<lang>`` (a hard constraint)
=====================  ===========================================  ==========================================

Handle time is the channel's base (420 s voice, 600 s chat, 900 s email) times a lognormal(0, 0.4) draw, 1.3x
when unresolved, 1.4x when transferred, faster with experience (a three-year agent by 23%) and up to 30% slower
for a difficult customer. A transfer happens with log-odds -2.6, +1.0 without the skill, +1.2 without the
language, +0.5 for a cancellation. CSAT (1 to 5) is ``rint(2.2 + 1.8 resolved - 0.6 transferred + 0.8 mood +
N(0, 0.6))``, clipped: the agent moves it through resolution and transfer. Expected values are exact (no
sampling): what a policy choosing that agent gets on average.

``contacts`` columns: ``intent``, ``channel``, ``language`` (names as in the contacts table), ``repeat``, and
the hidden ``complaint`` and ``mood`` (the customer's latent state that month). ``agents`` columns, aligned
row by row: ``skill_<skill>``, ``speaks_<lang>``, ``talent_<skill>`` and ``experience_months``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from training.world.config import LANGUAGES, Columns, intent_skills

CONTACT_TRUTH = "contact_truth"
"""The table (``.parquet``) of the customer's hidden state at each written contact (``contact_id``,
``complaint``, ``mood``)."""
AGENT_TRUTH = "agent_truth"
"""The table of each agent's :data:`TRUTH_PROFILE` and latent skill per written month (``agent_id``, ``month_end``: the
snapshot closing the month whose contacts it holds for)."""
SKILLS: tuple[str, ...] = ("billing", "technical", "retention", "sales")
"""The agents' skills; each intent needs one (:func:`~training.world.config.intent_skills`)."""
TRUTH_PROFILE: tuple[str, ...] = (
    *(f"skill_{s}" for s in SKILLS),
    *(f"speaks_{lang}" for lang in LANGUAGES),
    "experience_months",
)
"""The agent profile features the oracle reads besides the latent ``talent_<skill>``."""
TALENT_SPREAD = 0.4
"""The latent skill at hire is this share of the log-odds of the agent's skill draw: agents differ at hire less
than a novice differs from a three-year agent."""
TALENT_DRIFT = 0.05
"""Standard deviation of a month's random step of each latent skill."""
CSAT_NOISE = 0.6
_BASE_SECONDS = {"voice": 420.0, "chat": 600.0, "email": 900.0}
_HANDLE_SIGMA = 0.4


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def _flags(agents: Columns, prefix: str, key: np.ndarray, values: tuple[str, ...]) -> np.ndarray:
    """Per row, the agent's ``{prefix}{key}`` flag (skill held, language spoken)."""
    out = np.zeros(len(key), dtype=bool)
    for value in values:
        m = key == value
        out[m] = np.asarray(agents[f"{prefix}{value}"], dtype=bool)[m]
    return out


def _skill_of(contacts: Columns) -> np.ndarray:
    """The skill each contact's intent needs."""
    intent = np.asarray(contacts["intent"])
    skill = np.full(len(intent), "", dtype=object)
    for name, needed in intent_skills().items():
        skill[intent == name] = needed
    return skill


def seasoning(experience_months: np.ndarray) -> np.ndarray:
    """How far an agent has learned the job: 0 at hire, 0.49 after a year, 0.86 after three."""
    return np.asarray(1.0 - np.exp(-np.asarray(experience_months, dtype=np.float64) / 18.0))


def difficulty(contacts: Columns) -> np.ndarray:
    """How hard the customer makes the contact: an open complaint, a repeat contact, a bad mood."""
    mood = np.asarray(contacts["mood"], dtype=np.float64)
    return np.asarray(
        0.8 * np.asarray(contacts["complaint"], dtype=np.float64)
        + 0.5 * np.asarray(contacts["repeat"], dtype=np.float64)
        + 0.8 * np.maximum(0.0, -mood)
    )


def true_resolution_probability(contacts: Columns, agents: Columns) -> np.ndarray:
    """P(first-contact resolution) of each (contact, agent) row pair (see the module's table)."""
    skill = _skill_of(contacts)
    talent = np.zeros(len(skill))
    for s in SKILLS:
        m = skill == s
        talent[m] = np.asarray(agents[f"talent_{s}"], dtype=np.float64)[m]
    experience = np.asarray(agents["experience_months"], dtype=np.float64)
    calm = 1.0 - 0.7 * np.minimum(experience, 36.0) / 36.0
    logit = (
        talent
        + 2.0 * seasoning(experience)
        - 1.0
        - difficulty(contacts) * calm
        - 0.8 * ~_flags(agents, "skill_", skill, SKILLS)
        - 2.0 * ~_flags(agents, "speaks_", np.asarray(contacts["language"]), LANGUAGES)
    )
    return _sigmoid(logit)


def true_transfer_probability(contacts: Columns, agents: Columns) -> np.ndarray:
    """P(the agent transfers the contact): mostly when it lacks the skill or the language."""
    skilled = _flags(agents, "skill_", _skill_of(contacts), SKILLS)
    speaks = _flags(agents, "speaks_", np.asarray(contacts["language"]), LANGUAGES)
    cancel = np.asarray(contacts["intent"]) == "cancel"
    return _sigmoid(-2.6 + 1.0 * ~skilled + 1.2 * ~speaks + 0.5 * cancel)


def handle_time_scale(contacts: Columns, agents: Columns) -> np.ndarray:
    """Seconds a contact takes before the draw's noise and the unresolved and transfer factors."""
    channel = np.asarray(contacts["channel"])
    base = np.zeros(len(channel))
    for name, seconds in _BASE_SECONDS.items():
        base[channel == name] = seconds
    speed = np.exp(-0.3 * seasoning(np.asarray(agents["experience_months"])))
    return np.asarray(base * speed * (1.0 + 0.3 * np.minimum(difficulty(contacts), 1.0)), dtype=np.float64)


def handle_time_factor(resolved: np.ndarray, transferred: np.ndarray) -> np.ndarray:
    """How much longer an unresolved (1.3x) or transferred (1.4x) contact takes."""
    return np.asarray(np.where(resolved, 1.0, 1.3) * np.where(transferred, 1.4, 1.0), dtype=np.float64)


def true_handle_time(contacts: Columns, agents: Columns) -> np.ndarray:
    """Expected handle time in seconds of each (contact, agent) row pair."""
    p = true_resolution_probability(contacts, agents)
    q = true_transfer_probability(contacts, agents)
    noise = np.exp(_HANDLE_SIGMA**2 / 2.0)  # the mean of lognormal(0, sigma)
    return handle_time_scale(contacts, agents) * noise * (p + 1.3 * (1.0 - p)) * (1.0 + 0.4 * q)


def csat_mean(resolved: np.ndarray, transferred: np.ndarray, mood: np.ndarray) -> np.ndarray:
    """The centre of a survey's CSAT before its N(0, 0.6) noise, rounding and clipping to 1-5."""
    return np.asarray(2.2 + 1.8 * resolved - 0.6 * transferred + 0.8 * mood, dtype=np.float64)


def _expected_score(centre: np.ndarray) -> np.ndarray:
    """E[clip(rint(centre + N(0, sd)), 1, 5)] = 1 + sum over k of P(centre + noise >= k + 0.5), k = 1..4."""
    return np.asarray(1.0 + sum(ndtr((centre - k - 0.5) / CSAT_NOISE) for k in range(1, 5)), dtype=np.float64)


def true_csat(contacts: Columns, agents: Columns) -> np.ndarray:
    """Expected CSAT (1 to 5) of each (contact, agent) row pair, over its resolution and transfer."""
    p = true_resolution_probability(contacts, agents)
    q = true_transfer_probability(contacts, agents)
    mood = np.asarray(contacts["mood"], dtype=np.float64)
    out = np.zeros(len(p))
    for resolved, p_r in ((1.0, p), (0.0, 1.0 - p)):
        for transferred, p_t in ((1.0, q), (0.0, 1.0 - q)):
            out += p_r * p_t * _expected_score(csat_mean(np.full(len(p), resolved), np.full(len(p), transferred), mood))
    return out
