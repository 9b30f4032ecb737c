"""A simulated contact center with known ground truth, to train and judge the recommender against.

Real logs never tell us what would have happened under another action, so the models are developed on a
world whose causal rules are written down here. Every outcome the simulation draws comes from the oracle
functions below (``true_accept_probability``, ``true_churn_probability``, ``true_resolution_probability``),
so evaluation can compare a policy with the truth instead of with another model.

Churn is a logistic hazard on the observed snapshot features (no hidden terms), so a perfect model is
possible. A latent "drift toward churn" moves those features month to month: drifting customers log in
less, call more, complain and get angrier. Offers act on the churn log-odds:

=================  =========================================  ==============================================
action             accepted mostly by                         effect on churn log-odds
=================  =========================================  ==============================================
no_action          nobody (p=0)                               none
retention_offer    consumers, out-of-contract, unhappy        -1.3 consumer out of contract, -0.6 consumer,
                                                              -0.4 small business; premium segment: +0.35
                                                              when offered (put off), -0.1 if accepted
discount_10        consumers, after a price rise              -1.0 consumer out of contract or after a price
                                                              rise, -0.4 other consumers, -0.3 small
                                                              business; premium segment: +0.35 when offered
tech_callback      repeat callers, open complaints            -0.4 per repeat contact (max 3), -0.5 with an
                                                              open complaint, -0.3 if usage falls >20%
payment_plan       customers with failed payments             -0.5 per failed payment (max 3), -0.3 if >30
                                                              days overdue; none without payment trouble
plan_upgrade       heavy users not yet on premium             -0.05 (little retention; value via cost -80)
loyalty_bonus      long-tenure customers                      -0.02 per month of tenure (max 60)
=================  =========================================  ==============================================

Sales offers (retention_offer, discount_10, plan_upgrade, loyalty_bonus) are accepted ~7x less often by
customers without marketing consent and less often after declined offers. Because the premium segment is
put off by price offers, targeting the riskiest customers with a retention offer is not the best policy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.registry import Registry

ACTIONS: tuple[str, ...] = (
    "no_action",
    "retention_offer",
    "discount_10",
    "plan_upgrade",
    "tech_callback",
    "loyalty_bonus",
    "payment_plan",
)
INTENTS: tuple[str, ...] = ("billing", "technical", "cancel", "sales")
CHANNELS: tuple[str, ...] = ("voice", "chat", "email")
LANGUAGES: tuple[str, ...] = ("en", "es", "fr")
PLANS: tuple[str, ...] = ("basic", "standard", "premium")
CONTRACTS: tuple[str, ...] = ("month_to_month", "one_year", "two_year")
SEGMENTS: tuple[str, ...] = ("consumer", "small_business", "premium")
SALES_ACTIONS: frozenset[str] = frozenset({"retention_offer", "discount_10", "plan_upgrade", "loyalty_bonus"})
# What an accepted action costs the business (reward = lifetime_value * (1 - churned) - cost if accepted).
# plan_upgrade is negative: an accepted upgrade earns extra margin rather than costing anything.
ACTION_COST: dict[str, float] = {
    "no_action": 0.0,
    "retention_offer": 120.0,
    "discount_10": 60.0,
    "plan_upgrade": -80.0,
    "tech_callback": 25.0,
    "loyalty_bonus": 50.0,
    "payment_plan": 15.0,
}
PLAN_PRICE = np.array([25.0, 50.0, 90.0])
_SEGMENT_HORIZON = np.array([20.0, 30.0, 40.0])  # months of expected future revenue behind lifetime_value
_INTENT_SKILL = {"billing": "billing", "technical": "technical", "cancel": "retention", "sales": "sales"}
_WARMUP_MONTHS = 3  # simulated but not written, so the first snapshot already has 90-day histories
_US_PER_DAY = 86_400_000_000

Columns = Mapping[str, np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _num(c: Columns, name: str) -> np.ndarray:
    return np.asarray(c[name], dtype=np.float64)


def _is(c: Columns, name: str, value: str) -> np.ndarray:
    return np.asarray(c[name]) == value


def _out_of_contract(c: Columns) -> np.ndarray:
    """Contract ended or ending within 30 days: the customer can leave without a penalty."""
    return _num(c, "days_to_contract_end") <= 30


def _baseline_logit(c: Columns) -> np.ndarray:
    """Churn log-odds without any offer; the signs are the ground truth the models must recover."""
    return (
        -2.7
        - 0.025 * np.minimum(_num(c, "tenure_months"), 72.0)
        + 0.3 * _is(c, "contract_type", "month_to_month")
        - 0.5 * _is(c, "contract_type", "two_year")
        + 0.8 * _out_of_contract(c)
        - 0.35 * np.log1p(_num(c, "logins_30d"))
        - 0.008 * np.clip(_num(c, "usage_change_pct_30d"), -100.0, 100.0)
        + 0.02 * np.minimum(_num(c, "days_since_last_activity"), 90.0)
        + 0.15 * np.minimum(_num(c, "contacts_30d"), 8.0)
        + 0.3 * np.minimum(_num(c, "repeat_contacts_30d"), 5.0)
        + 0.8 * np.asarray(c["open_complaint"], dtype=np.float64)
        + 0.3 * np.minimum(_num(c, "failed_payments_90d"), 3.0)
        + 0.01 * np.minimum(_num(c, "days_overdue"), 90.0)
        - 1.0 * _num(c, "last_sentiment")
        + 0.06 * _num(c, "price_increase_pct")
        - 0.2 * _is(c, "segment", "small_business")
        - 0.3 * _is(c, "segment", "premium")
        + 0.1 * _num(c, "offers_declined_90d")
    )


def true_accept_probability(customers: Columns, action: str) -> np.ndarray:
    """Probability that each customer accepts ``action`` when it is offered (0 for ``no_action``)."""
    c = customers
    n = len(np.asarray(c["tenure_months"]))
    consumer, premium_seg = _is(c, "segment", "consumer"), _is(c, "segment", "premium")
    if action == "no_action":
        return np.zeros(n)
    if action == "retention_offer":
        logit = -1.0 + 0.8 * consumer - 1.5 * premium_seg + 0.6 * _out_of_contract(c) - 0.8 * _num(c, "last_sentiment")
    elif action == "discount_10":
        logit = -0.7 + 0.8 * consumer - 2.0 * premium_seg + 0.08 * _num(c, "price_increase_pct")
    elif action == "plan_upgrade":
        logit = -2.5 + 0.12 * np.minimum(_num(c, "logins_30d"), 30.0) + 0.5 * premium_seg
        logit = np.where(_is(c, "plan", "premium"), -np.inf, logit)
    elif action == "tech_callback":
        logit = (
            -1.2
            + 0.6 * np.minimum(_num(c, "repeat_contacts_30d"), 4.0)
            + 0.7 * np.asarray(c["open_complaint"], dtype=np.float64)
        )
    elif action == "loyalty_bonus":
        logit = -1.8 + 0.04 * np.minimum(_num(c, "tenure_months"), 60.0)
    elif action == "payment_plan":
        logit = (
            -2.8
            + 1.2 * np.minimum(_num(c, "failed_payments_90d"), 3.0)
            + 0.02 * np.minimum(_num(c, "days_overdue"), 90.0)
        )
    else:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    if action in SALES_ACTIONS:
        logit = logit - 0.3 * _num(c, "offers_declined_90d")
    p = _sigmoid(logit)
    if action in SALES_ACTIONS:
        p = np.where(np.asarray(c["consent_marketing"], dtype=bool), p, 0.15 * p)
    return np.asarray(p, dtype=np.float64)


def _offer_effect(c: Columns, action: str) -> np.ndarray:
    """Churn log-odds shift from merely being offered ``action`` (premium customers resent price offers)."""
    if action in ("retention_offer", "discount_10"):
        return 0.35 * _is(c, "segment", "premium")
    return np.zeros(len(np.asarray(c["tenure_months"])))


def _accept_effect(c: Columns, action: str) -> np.ndarray:
    """Churn log-odds shift when ``action`` is accepted; heterogeneous by design (see module table)."""
    consumer, small = _is(c, "segment", "consumer"), _is(c, "segment", "small_business")
    premium_seg, ooc = _is(c, "segment", "premium"), _out_of_contract(c)
    if action == "retention_offer":
        return -1.3 * (consumer & ooc) - 0.6 * (consumer & ~ooc) - 0.4 * small - 0.1 * premium_seg
    if action == "discount_10":
        sensitive = consumer & (ooc | (_num(c, "price_increase_pct") > 0))
        return -1.0 * sensitive - 0.4 * (consumer & ~sensitive) - 0.3 * small
    if action == "tech_callback":
        return (
            -0.4 * np.minimum(_num(c, "repeat_contacts_30d"), 3.0)
            - 0.5 * np.asarray(c["open_complaint"], dtype=np.float64)
            - 0.3 * (_num(c, "usage_change_pct_30d") < -20)
        )
    if action == "payment_plan":
        return -0.5 * np.minimum(_num(c, "failed_payments_90d"), 3.0) - 0.3 * (_num(c, "days_overdue") > 30)
    if action == "plan_upgrade":
        return np.full(len(consumer), -0.05)
    if action == "loyalty_bonus":
        return -0.02 * np.minimum(_num(c, "tenure_months"), 60.0)
    return np.zeros(len(consumer))


def true_churn_probability(
    customers: Columns, action: str | None = None, accepted: np.ndarray | None = None
) -> np.ndarray:
    """Probability of churning within 30 days.

    Without ``action`` this is the untreated hazard. With ``action`` and ``accepted`` it is the hazard given
    the realised acceptance; with ``action`` alone it is the expectation over the acceptance draw, which is
    what a policy choosing ``action`` actually gets.
    """
    base = _baseline_logit(customers)
    if action is None or action == "no_action":
        return np.asarray(_sigmoid(base), dtype=np.float64)
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    offered = base + _offer_effect(customers, action)
    if_accepted = _sigmoid(offered + _accept_effect(customers, action))
    if accepted is None:
        p_acc = true_accept_probability(customers, action)
        return np.asarray(p_acc * if_accepted + (1.0 - p_acc) * _sigmoid(offered), dtype=np.float64)
    return np.asarray(np.where(np.asarray(accepted, dtype=bool), if_accepted, _sigmoid(offered)), np.float64)


def true_expected_value(customers: Columns, action: str) -> np.ndarray:
    """Expected reward of offering ``action``: retained lifetime value minus the expected cost."""
    p_churn = true_churn_probability(customers, action)
    cost = ACTION_COST[action] * true_accept_probability(customers, action)
    return np.asarray(_num(customers, "lifetime_value") * (1.0 - p_churn) - cost, dtype=np.float64)


def behaviour_probabilities(customers: Columns) -> np.ndarray:
    """The logging policy: an (n, len(ACTIONS)) matrix of action probabilities, each at least 0.04.

    A softmax over hand-written rules (retention for risky-looking customers, callbacks for repeat
    callers...) mixed with a uniform floor, so every action is logged everywhere and off-policy
    evaluation stays unbiased.
    """
    c = customers
    risky = (
        0.8 * np.asarray(c["open_complaint"], dtype=np.float64)
        + 0.6 * _out_of_contract(c)
        + 0.5 * (_num(c, "last_sentiment") < -0.2)
        + 0.2 * np.minimum(_num(c, "contacts_30d"), 3.0)
    )
    scores = np.stack(
        [
            np.full(len(risky), 0.5),
            0.9 * risky,
            0.5 * risky + 0.4 * (_num(c, "price_increase_pct") > 0),
            0.05 * np.minimum(_num(c, "logins_30d"), 30.0) - 0.5,
            0.5 * np.minimum(_num(c, "repeat_contacts_30d"), 3.0),
            0.02 * np.minimum(_num(c, "tenure_months"), 60.0) - 0.5,
            0.8 * np.minimum(_num(c, "failed_payments_90d"), 3.0) - 0.5,
        ],
        axis=1,
    )
    soft = np.exp(scores - scores.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    floor = 0.04
    return np.asarray((1.0 - floor * len(ACTIONS)) * soft + floor, dtype=np.float64)


def true_resolution_probability(intent: np.ndarray, language: np.ndarray, agents: Columns) -> np.ndarray:
    """First-contact resolution probability of (contact, agent) pairs, aligned row by row.

    The agent's proficiency for the intent is the rate when skills and language fit; an unskilled agent
    resolves 20% less and one who does not speak the customer's language half as often.
    """
    intent, language = np.asarray(intent), np.asarray(language)
    p = np.zeros(len(intent))
    for name, skill in _INTENT_SKILL.items():
        m = intent == name
        skilled = np.asarray(agents[f"skill_{skill}"], dtype=bool)[m]
        p[m] = np.asarray(agents[f"proficiency_{skill}"], dtype=np.float64)[m] * np.where(skilled, 1.0, 0.8)
    for lang in LANGUAGES:
        m = language == lang
        p[m] *= np.where(np.asarray(agents[f"speaks_{lang}"], dtype=bool)[m], 1.0, 0.5)
    return np.clip(p, 0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Size, length and seed of a simulated world; ``end`` is the date of the last monthly snapshot."""

    customers: int = 5000
    agents: int = 100
    months: int = 6
    seed: int = 7
    end: dt.date

    def __post_init__(self) -> None:
        for name, low, high in (("customers", 1_000, 1_000_000), ("agents", 5, 5000), ("months", 3, 36)):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        if not isinstance(self.end, dt.date):
            raise ValueError(f"end must be a date, got {self.end!r}")


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`simulate` wrote: the directory and the row count of each table."""

    out: Path
    customer_snapshots: int
    churn_labels: int
    offers: int
    agent_snapshots: int
    contacts: int


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    text = pc.utf8_lpad(pa.array(numbers, pa.int64()).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, text, "")


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(us, dtype="datetime64[us]"), type=pa.timestamp("us", tz="UTC"))


def _sample(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (vectorised inverse-CDF)."""
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    return np.minimum((rng.random((len(probs), 1)) > cdf).sum(axis=1), probs.shape[1] - 1)


def _agents(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Agent profiles: English is most common, ~20% are retention specialists, skills raise proficiency."""
    a: dict[str, np.ndarray] = {}
    for skill, share in (("billing", 0.6), ("technical", 0.5), ("retention", 0.2), ("sales", 0.4)):
        a[f"skill_{skill}"] = rng.random(n) < share
    for lang, share in (("en", 0.9), ("es", 0.3), ("fr", 0.15)):
        a[f"speaks_{lang}"] = rng.random(n) < share
    a["speaks_en"] |= ~(a["speaks_es"] | a["speaks_fr"])
    for i, lang in enumerate(LANGUAGES):  # every language can be routed somewhere, even in tiny worlds
        a[f"speaks_{lang}"][i] = True
    for skill in ("billing", "technical", "retention", "sales"):
        a[f"proficiency_{skill}"] = np.clip(rng.beta(5, 4, n) + 0.15 * a[f"skill_{skill}"], 0.05, 0.97)
    a["available"] = rng.random(n) < 0.7
    a["max_load"] = rng.integers(1, 5, n).astype(np.int64)
    load = rng.integers(0, 5, n) % (a["max_load"] + 1)
    a["current_load"] = np.where(a["available"], load, 0).astype(np.int64)
    a["idle_seconds"] = np.where(a["available"], rng.exponential(120.0, n), 0).astype(np.int64)
    return a


def _check(reg: Registry, entity: str, cols: Mapping[str, np.ndarray]) -> list[str]:
    """Fail loudly if the world drifted from the feature contract; return the contract's column order."""
    schema = reg.entity(entity)
    if set(cols) != set(schema.names):
        diff = sorted(set(cols) ^ set(schema.names))
        raise ValueError(f"{entity} columns differ from the registry: {diff}")
    for f in schema.features:
        if f.dtype == "category" and not set(np.unique(cols[f.name])) <= set(f.categories or ()):
            raise ValueError(f"{entity} feature {f.name!r} has values outside the registry's categories")
    return list(schema.names)


def _contacts(
    rng: np.random.Generator,
    c: Columns,
    cust_id: pa.Array,
    ts_us: int,
    agents: dict[str, np.ndarray],
    agent_ids: pa.Array,
) -> pa.Table:
    """The contacts counted in a snapshot's ``contacts_30d``, each routed to an agent and resolved or not."""
    rows = np.repeat(np.arange(len(cust_id)), np.asarray(c["contacts_30d"]))
    sub = {k: np.asarray(v)[rows] for k, v in c.items()}
    weights = np.stack(
        [
            1.0 + 2.0 * (sub["failed_payments_90d"] > 0) + (sub["price_increase_pct"] > 0),
            1.0 + 1.5 * (sub["repeat_contacts_30d"] > 0),
            0.3 + 2.0 * sub["open_complaint"] + (sub["last_sentiment"] < -0.3),
            np.full(len(rows), 0.6),
        ],
        axis=1,
    )
    intent = np.asarray(INTENTS)[_sample(rng, weights)]
    channel_code = _sample(rng, np.tile([0.5, 0.35, 0.15], (len(rows), 1)))
    language = sub["language"]
    agent = rng.integers(0, len(agents["available"]), len(rows))
    matched = rng.random(len(rows)) < 0.85  # routing usually respects language
    for lang in LANGUAGES:
        pool = np.flatnonzero(agents[f"speaks_{lang}"])
        m = matched & (language == lang)
        agent[m] = pool[rng.integers(0, len(pool), int(m.sum()))]
    pair = {k: v[agent] for k, v in agents.items()}
    resolved = rng.random(len(rows)) < true_resolution_probability(intent, language, pair)
    base_time = np.array([420.0, 600.0, 900.0])[channel_code]
    handle = base_time * rng.lognormal(0.0, 0.4, len(rows)) * np.where(resolved, 1.0, 1.3)
    return pa.table(
        {
            "customer_id": cust_id.take(pa.array(rows)),
            "ts": _ts(ts_us - rng.integers(0, 30 * _US_PER_DAY, len(rows))),
            "intent": pa.array(intent, pa.string()),
            "channel": pa.array(np.asarray(CHANNELS)[channel_code], pa.string()),
            "language": pa.array(language, pa.string()),
            "agent_id": agent_ids.take(pa.array(agent)),
            "resolved": resolved.astype(np.int8),
            "handle_time_s": np.round(handle, 1),
        }
    )


def simulate(config: WorldConfig, out: Path) -> WorldSummary:
    """Simulate the world month by month and write its parquet tables into ``out``.

    Each month the latent drift moves, the observable features follow it, ~40% of active customers get a
    decision from the logging policy, and one churn draw per customer-month (under the treatment actually
    given) decides who is gone by the next snapshot. Churn labels and offers share that draw.
    """
    reg = Registry.load()
    rng = np.random.default_rng(config.seed)
    n = config.customers
    segment = _sample(rng, np.tile([0.7, 0.2, 0.1], (n, 1)))
    plan = _sample(rng, np.array([[0.5, 0.35, 0.15], [0.2, 0.5, 0.3], [0.05, 0.25, 0.7]])[segment])
    language = _sample(rng, np.tile([0.7, 0.2, 0.1], (n, 1)))
    consent = rng.random(n) < 0.7
    tenure = np.minimum(rng.exponential(24.0, n).astype(np.int64) + 1, 120)
    contract = _sample(rng, np.tile([0.5, 0.3, 0.2], (n, 1)))
    length = np.array([0, 365, 730])[contract]
    days_end = np.where(
        contract == 0, -(rng.random(n) * np.minimum(tenure, 24) * 30), rng.integers(-180, length + 1)
    ).astype(np.int64)
    charge_noise, price_factor = rng.lognormal(0.0, 0.08, n), np.ones(n)
    ltv_noise = rng.lognormal(0.0, 0.25, n)
    usage_base = rng.normal(np.log(8.0) + 0.3 * plan, 0.5)
    pay_trait = rng.normal(-3.8, 0.9, n)
    drift = np.where(rng.random(n) < 0.15, 0.25, 0.0)  # customers sliding toward churn
    z = rng.normal(0.0, 0.75, n)
    u_prev = np.exp(usage_base - 0.6 * z)
    rise_pct, months_since_rise = np.zeros(n), np.full(n, 99)
    fail_hist, decline_hist = np.zeros((3, n), dtype=bool), np.zeros((3, n), dtype=np.int64)
    complaint, overdue = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    inactive, sentiment = np.zeros(n, dtype=np.int64), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    agents = _agents(rng, config.agents)
    agent_ids = _ids("A", np.arange(1, config.agents + 1), 4)
    customer_ids = _ids("C", np.arange(1, n + 1), 6)
    cost = np.array([ACTION_COST[a] for a in ACTIONS])
    end_us = int(np.datetime64(config.end, "D").astype("datetime64[us]").astype(np.int64))
    snaps: list[pa.Table] = []
    labels: list[pa.Table] = []
    offers: list[pa.Table] = []
    contacts: list[pa.Table] = []
    order: list[str] = []
    total = _WARMUP_MONTHS + config.months
    for step in range(total):
        k = total - 1 - step  # months before `end`; only the last `months` are written
        ts_us = end_us - k * 30 * _US_PER_DAY
        if step > 0:
            tenure += 1
            days_end -= 30
        z = 0.8 * z + drift + rng.normal(0.0, 0.45, n)
        rise = rng.random(n) < 0.04
        rise_now = rng.choice(np.array([5.0, 8.0, 10.0, 15.0]), n)
        price_factor = np.where(rise, price_factor * (1 + rise_now / 100), price_factor)
        rise_pct = np.where(rise, rise_now, rise_pct)
        months_since_rise = np.where(rise, 0, months_since_rise + 1)
        u = np.exp(usage_base - 0.6 * z + rng.normal(0.0, 0.2, n))
        logins = rng.poisson(u)
        usage_change = np.round(np.clip(100.0 * (u / u_prev - 1.0), -100.0, 300.0), 1)
        u_prev = u
        recent = np.minimum(rng.geometric(np.minimum(1.0, (logins + 1) / 30.0)) - 1, 29)
        idle = np.where(inactive >= 30, inactive + 30, 30 + rng.integers(0, 30, n))
        inactive = np.where(logins > 0, recent, idle)
        fail_hist = np.roll(fail_hist, 1, axis=0)
        fail_hist[0] = rng.random(n) < _sigmoid(pay_trait + 0.5 * z)
        paid = np.where(rng.random(n) < 0.6, 0, overdue)
        overdue = np.where(fail_hist[0], np.minimum(overdue + rng.integers(5, 31, n), 180), paid)
        n_contacts = rng.poisson(0.25 + 0.6 * _sigmoid(1.5 * z - 0.5) + 0.4 * complaint + 0.5 * fail_hist[0])
        repeat = rng.binomial(np.maximum(n_contacts - 1, 0), _sigmoid(z - 0.3))
        opens, closes = rng.random(n) < _sigmoid(-3.5 + 1.2 * z + 0.5 * repeat), rng.random(n) < 0.45
        complaint = np.where(complaint, ~closes, opens)
        mood = np.tanh(0.4 - 0.7 * z - 0.4 * complaint)
        sentiment = np.clip(0.5 * sentiment + 0.5 * mood + rng.normal(0.0, 0.15, n), -1.0, 1.0)
        decline_hist = np.roll(decline_hist, 1, axis=0)
        decline_hist[0] = 0
        charge = PLAN_PRICE[plan] * charge_noise * price_factor
        ltv = charge * _SEGMENT_HORIZON[segment] * ltv_noise * (1.0 + np.minimum(tenure, 60) / 60.0)
        idx = np.flatnonzero(alive)
        full: dict[str, np.ndarray] = {
            "tenure_months": tenure,
            "plan": np.asarray(PLANS)[plan],
            "contract_type": np.asarray(CONTRACTS)[contract],
            "days_to_contract_end": days_end,
            "monthly_charge": np.round(charge, 2),
            "price_increase_pct": np.where(months_since_rise < 3, rise_pct, 0.0),
            "lifetime_value": np.round(ltv, 2),
            "segment": np.asarray(SEGMENTS)[segment],
            "language": np.asarray(LANGUAGES)[language],
            "consent_marketing": consent,
            "logins_30d": logins,
            "usage_change_pct_30d": usage_change,
            "days_since_last_activity": inactive,
            "contacts_30d": n_contacts,
            "repeat_contacts_30d": repeat,
            "open_complaint": complaint,
            "failed_payments_90d": fail_hist.sum(axis=0),
            "days_overdue": overdue,
            "last_sentiment": np.round(sentiment, 3),
            "offers_declined_90d": decline_hist[1:].sum(axis=0),
        }
        c = {name: np.asarray(v)[idx] for name, v in full.items()}
        m = len(idx)
        decided = rng.random(m) < np.clip(0.3 + 0.08 * c["contacts_30d"], 0.0, 0.8)
        probs = behaviour_probabilities(c)
        choice = _sample(rng, probs)
        accept_u, churn_u = rng.random(m), rng.random(m)
        accepted = np.zeros(m, dtype=bool)
        p_churn = true_churn_probability(c)
        for code, action in enumerate(ACTIONS[1:], start=1):
            sel = decided & (choice == code)
            sub = {name: v[sel] for name, v in c.items()}
            accepted[sel] = accept_u[sel] < true_accept_probability(sub, action)
            p_churn[sel] = true_churn_probability(sub, action, accepted[sel])
        churned = churn_u < p_churn
        # Accepted offers change the customer's future, not just this month's churn draw.
        took = {a: idx[decided & accepted & (choice == i)] for i, a in enumerate(ACTIONS)}
        contract[took["retention_offer"]], days_end[took["retention_offer"]] = 1, 365
        price_factor[took["discount_10"]] *= 0.9
        plan[took["plan_upgrade"]] = np.minimum(plan[took["plan_upgrade"]] + 1, 2)
        z[took["tech_callback"]] -= 0.5
        overdue[took["payment_plan"]] = 0
        pay_trait[took["payment_plan"]] -= 0.5
        decline_hist[0, idx[decided & (choice > 0) & ~accepted]] += 1
        if k >= config.months:
            continue
        order = order or _check(reg, "customer", c)
        ids = customer_ids.take(pa.array(idx))
        feature_ts, decision_ts = _ts(np.full(m, ts_us)), _ts(np.full(m, ts_us + _US_PER_DAY))
        snaps.append(pa.table({"customer_id": ids, "feature_ts": feature_ts, **{f: c[f] for f in order}}))
        labels.append(pa.table({"customer_id": ids, "ts": decision_ts, "churned": churned.astype(np.int8)}))
        d = pa.array(decided)
        offers.append(
            pa.table(
                {
                    "decision_id": pc.binary_join_element_wise(f"D{step - _WARMUP_MONTHS:02d}-", ids.filter(d), ""),
                    "customer_id": ids.filter(d),
                    "ts": decision_ts.filter(d),
                    "action_id": pa.array(np.asarray(ACTIONS)[choice[decided]], pa.string()),
                    "propensity": probs[np.arange(m), choice][decided],
                    "accepted": accepted[decided].astype(np.int8),
                    "churned": churned[decided].astype(np.int8),
                    "reward": (c["lifetime_value"] * ~churned - cost[choice] * accepted)[decided],
                }
            )
        )
        contacts.append(_contacts(rng, c, ids, ts_us, agents, agent_ids))
        alive[idx[churned]] = False
    agent_order = _check(reg, "agent", agents)
    agent_table = pa.table(
        {
            "agent_id": agent_ids,
            "feature_ts": _ts(np.full(config.agents, end_us)),
            **{f: agents[f] for f in agent_order},
        }
    )
    contact_table = pa.concat_tables(contacts)
    contact_table = contact_table.add_column(0, "contact_id", _ids("T", np.arange(1, contact_table.num_rows + 1), 8))
    tables = {
        "customer_snapshots": pa.concat_tables(snaps),
        "churn_labels": pa.concat_tables(labels),
        "offers": pa.concat_tables(offers),
        "agent_snapshots": agent_table,
        "contacts": contact_table,
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet")
    return WorldSummary(out=out, **{name: t.num_rows for name, t in tables.items()})
