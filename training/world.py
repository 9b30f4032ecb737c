"""A simulated contact center with known ground truth, to train and judge the recommender against.

Real logs never tell us what would have happened under another action, so the models are developed on a
world whose causal rules are written down here. Every outcome the simulation draws comes from the oracle
functions below (``true_accept_probability``, ``true_churn_probability``, ``true_resolution_probability``),
so evaluation can compare a policy with the truth instead of with another model.

The world writes what a real contact center would hold: monthly snapshots of the batch features (profile,
usage, billing standing) and a stream of events (logins, ended contacts, complaints, failed payments,
sentiment scores, offers presented and answered) from which the other customer features are aggregated,
exactly as the feature contract says. The oracles read the features as the models see them at decision
time (the label's ``ts``, a day after the snapshot): the snapshot's values and the event aggregates
computed by :func:`event_features_at` from the events that happened by then. Churn is a logistic hazard on
those observed features (no hidden terms), so a perfect model is possible. A latent "drift toward churn"
moves the customer month to month: drifting customers log in less, call more, complain and get angrier,
and the events they produce say so. Missing aggregates are neutral: no sentiment measured in 90 days reads
as 0, no open complaint on record as none, no login in 90 days as 90 days inactive, no offer in 180 days
as no offer fatigue. Offers act on the churn log-odds:

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
customers without marketing consent, less often after declined offers, after offers accepted in the last 90
days, and within 30 days of the last offer. Because the premium segment is put off by price offers,
targeting the riskiest customers with a retention offer is not the best policy.

Timeline of a simulated month ending with the snapshot at midnight ``S``: the month's events fall in
``[S - 28 days, S)``, the snapshot is taken at ``S``, the decision (and label) is at ``S + 1 day``, and the
decision's offer is presented a minute later and answered a few minutes after that, so it only shows in
the next month's features. Nothing happens after ``end`` midnight: the last month's decisions are logged
in ``offers.parquet`` but their offer events would fall after the world's end and are not written.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
EVENT_ENVELOPE: tuple[str, ...] = ("event_id", "customer_id", "occurred_at", "type")
"""The columns every row of ``customer_events.parquet`` starts with; the payload columns follow."""
_SEGMENT_HORIZON = np.array([20.0, 30.0, 40.0])  # months of expected future revenue behind lifetime_value
_INTENT_SKILL = {"billing": "billing", "technical": "technical", "cancel": "retention", "sales": "sales"}
_WARMUP_MONTHS = 3  # simulated but not written, so the first snapshot already has 90-day histories
_US_PER_S = 1_000_000
_US_PER_DAY = 86_400 * _US_PER_S
_ACTIVE_DAYS = 28  # a month's events fall in the 28 days before its snapshot, all inside its 30-day windows
_LABELS: dict[str, tuple[str, ...]] = {"intent": INTENTS, "action_id": ACTIONS}  # codes of string fields

Columns = Mapping[str, np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _num(c: Columns, name: str, missing: float = 0.0) -> np.ndarray:
    """A column as floats, with nulls (None or NaN) read as ``missing``."""
    raw = np.asarray(c[name])
    if raw.dtype == object:
        raw = pa.array(raw, from_pandas=True).cast(pa.float64()).to_numpy(zero_copy_only=False)
    values = raw.astype(np.float64)
    return np.where(np.isnan(values), missing, values)


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
        + 0.02 * np.minimum(_num(c, "days_since_last_activity", missing=90.0), 90.0)
        + 0.15 * np.minimum(_num(c, "contacts_30d"), 8.0)
        + 0.3 * np.minimum(_num(c, "repeat_contacts_30d"), 5.0)
        + 0.15 * np.minimum(_num(c, "transfers_30d"), 3.0)
        + 0.8 * _num(c, "open_complaint")
        + 0.3 * np.minimum(_num(c, "failed_payments_90d"), 3.0)
        + 0.01 * np.minimum(_num(c, "days_overdue"), 90.0)
        - 0.8 * _num(c, "last_sentiment")
        - 0.4 * _num(c, "sentiment_mean_30d")
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
        logit = -1.2 + 0.6 * np.minimum(_num(c, "repeat_contacts_30d"), 4.0) + 0.7 * _num(c, "open_complaint")
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
        logit = (
            logit
            - 0.3 * _num(c, "offers_declined_90d")
            - 0.5 * np.minimum(_num(c, "offers_accepted_90d"), 2.0)
            - 0.4 * (_num(c, "days_since_last_offer", missing=math.inf) < 30)
        )
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
            - 0.5 * _num(c, "open_complaint")
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
        0.8 * _num(c, "open_complaint")
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


# --------------------------------------------------------------------------------------------------------
# Event aggregation: the contract's semantics in numpy, shared by the simulation and event_features_at.
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Typed:
    """The events of one type, as numbers: key index, time (µs since the epoch), tie order, payload.

    Payload fields are float64 with NaN for null; string and category fields hold codes into ``labels``.
    """

    key: np.ndarray
    t: np.ndarray
    seq: np.ndarray
    fields: dict[str, np.ndarray]
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _aggregate(
    reg: Registry, events: Mapping[str, _Typed], q_key: np.ndarray, q_at: np.ndarray, entity: str = "customer"
) -> dict[str, np.ndarray]:
    """Every event-derived feature of ``entity`` for the queries (``q_key[i]`` read at ``q_at[i]`` µs).

    Windows hold the events with ``t <= at`` whose UTC day is one of the ``window_days`` days ending on the
    day of ``at``; ``last``/``days_since`` take the newest event with ``t <= at`` (ties: larger ``seq``)
    and are null (NaN/None) when it is more than the view's TTL older than ``at``.
    """
    schema = reg.entity(entity)
    n_q = len(q_key)
    q_key, q_at = np.asarray(q_key, dtype=np.int64), np.asarray(q_at, dtype=np.int64)
    q_day = q_at // _US_PER_DAY
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out: dict[str, np.ndarray] = {}
    for feature in schema.event_features:
        agg = feature.aggregation
        assert agg is not None
        typed = events.get(agg.event)
        if typed is None:
            empty = np.zeros(0, dtype=np.int64)
            typed = _Typed(empty, empty, empty, fields={})
        if agg.event not in pairs:
            pairs[agg.event] = _pairs(typed, q_key, q_at)
        pq_, pe = pairs[agg.event]
        match = np.ones(len(pq_), dtype=bool)
        for name, wanted in agg.where.items():
            values = typed.fields.get(name, np.full(len(typed.t), np.nan))[pe]
            labels = typed.labels.get(name)
            if labels is not None:
                code = labels.index(str(wanted)) if str(wanted) in labels else -1
                match &= values == code
            else:
                match &= values == float(wanted)
        if agg.kind in ("count", "sum", "mean"):
            assert agg.window_days is not None
            match &= typed.t[pe] // _US_PER_DAY > q_day[pq_] - agg.window_days
            if agg.kind == "count":
                out[feature.name] = np.bincount(pq_[match], minlength=n_q).astype(np.int64)
                continue
            assert agg.field is not None
            values = typed.fields.get(agg.field, np.full(len(typed.t), np.nan))[pe][match]
            carried = ~np.isnan(values)
            rows = pq_[match][carried]
            total = np.bincount(rows, weights=values[carried], minlength=n_q).astype(np.float64)
            if agg.kind == "sum":
                out[feature.name] = total
            else:
                count = np.bincount(rows, minlength=n_q)
                out[feature.name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            continue
        # last / days_since: each query's newest matching event (latest t, then largest seq).
        rows, ev = _newest(pq_[match], pe[match], typed, n_q)
        age = q_at[rows] - typed.t[ev]
        ttl_us = round(reg.views[schema.view_of[feature.name]].ttl_days * _US_PER_DAY)
        fresh = age <= ttl_us
        rows, ev, age = rows[fresh], ev[fresh], age[fresh]
        if agg.kind == "days_since":
            result = np.full(n_q, np.nan)
            result[rows] = age // _US_PER_DAY
            out[feature.name] = result
            continue
        assert agg.field is not None
        values = typed.fields.get(agg.field, np.full(len(typed.t), np.nan))[ev]
        labels = typed.labels.get(agg.field)
        if labels is None:
            result = np.full(n_q, np.nan)
            result[rows] = values
        else:
            result = np.full(n_q, None, dtype=object)
            known = ~np.isnan(values)
            result[rows[known]] = np.asarray(labels, dtype=object)[values[known].astype(np.int64)]
        out[feature.name] = result
    return out


def _pairs(typed: _Typed, q_key: np.ndarray, q_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query row, event index) for every event of the query's key at or before the query's time."""
    if len(np.unique(q_key)) == len(q_key):  # one query per key (the simulation): a lookup, no expansion
        by_key = np.argsort(q_key, kind="stable")
        sorted_keys = q_key[by_key]
        pos = np.minimum(np.searchsorted(sorted_keys, typed.key), max(len(q_key) - 1, 0))
        found = sorted_keys[pos] == typed.key if len(q_key) else np.zeros(len(typed.key), dtype=bool)
        pe = np.flatnonzero(found)
        pq_ = by_key[pos[pe]]
    else:
        order = np.argsort(typed.key, kind="stable")
        keys = typed.key[order]
        starts = np.searchsorted(keys, q_key, side="left")
        counts = np.searchsorted(keys, q_key, side="right") - starts
        pq_ = np.repeat(np.arange(len(q_key)), counts)
        offsets = np.arange(len(pq_)) - np.repeat(np.cumsum(counts) - counts, counts)
        pe = order[np.repeat(starts, counts) + offsets]
    keep = typed.t[pe] <= q_at[pq_]
    return pq_[keep], pe[keep]


def _newest(rows: np.ndarray, ev: np.ndarray, typed: _Typed, n_q: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query row, its newest event among the pairs: the latest ``t``, ties to the largest ``seq``."""
    low = np.iinfo(np.int64).min
    t, seq = typed.t[ev], typed.seq[ev]
    latest = np.full(n_q, low, dtype=np.int64)
    np.maximum.at(latest, rows, t)
    tied = t == latest[rows]
    top = np.full(n_q, low, dtype=np.int64)
    np.maximum.at(top, rows[tied], seq[tied])
    pick = tied & (seq == top[rows])
    return rows[pick], ev[pick]


def _to_us(at: dt.datetime | Sequence[dt.datetime] | np.ndarray | pa.Array | pa.ChunkedArray, n: int) -> np.ndarray:
    """Read times as µs since the epoch (UTC; naive datetimes are taken as UTC), broadcast to ``n`` rows."""
    if isinstance(at, dt.datetime):
        moment = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
        delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        us = (delta.days * 86_400 + delta.seconds) * _US_PER_S + delta.microseconds
        return np.full(n, us, dtype=np.int64)
    if isinstance(at, pa.Array | pa.ChunkedArray):
        arr = at
    else:
        raw = np.asarray(at)
        if raw.dtype.kind == "M":
            values = raw.astype("datetime64[us]").astype(np.int64)
            return np.broadcast_to(values, (n,)).copy() if values.ndim == 0 else values
        arr = pa.array(list(raw))
    ts = pc.cast(arr, pa.timestamp("us", tz=getattr(arr.type, "tz", None) or "UTC"))
    values = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    if len(values) != n:
        raise ValueError(f"'at' has {len(values)} times for {n} ids")
    return values


def _as_float(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """A payload column as floats (NaN for null); strings become codes into the returned labels."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        encoded = pc.dictionary_encode(column)
        codes = encoded.indices.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return codes, tuple(encoded.dictionary.to_pylist())
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False), None


def event_features_at(
    events: pa.Table,
    registry: Registry,
    ids: np.ndarray | Sequence[str],
    at: dt.datetime | Sequence[dt.datetime] | np.ndarray | pa.Array | pa.ChunkedArray,
) -> dict[str, np.ndarray]:
    """Every event-derived customer feature of the contract, for each id read at ``at``.

    ``events`` is a ``customer_events`` table (``event_id``, ``customer_id``, ``occurred_at``, ``type`` and
    the payload columns); ``at`` is one moment for all ids or one per id (ids may repeat with different
    times). Semantics, the same as the offline and online stores':

    - a window of N days at T holds the events with ``occurred_at <= T`` whose UTC day number
      ``floor(epoch_seconds / 86400)`` is greater than T's day number minus N;
    - ``count`` counts the window's events of the type whose ``where`` fields equal the given values;
      ``sum``/``mean`` run over the field's non-null values (mean is null with none);
    - ``last`` is the field of the newest event of the type (and ``where``) at or before T, ties broken by
      the larger ``event_id``, whether or not that field is null; ``days_since`` is the whole days
      ``floor((T - occurred_at) / 1 day)`` since it; both are null when it is more than the view's
      ``ttl_days`` older than T, or when there is none.

    Returns one array per feature aligned with ``ids``: counts as int64; sums, means, ``days_since`` and
    ``last`` of numbers or bools as float64 with NaN for null (bools as 1.0/0.0); ``last`` of strings as
    object arrays with None.
    """
    schema = registry.entity("customer")
    query = pa.array(np.asarray(ids, dtype=object), pa.string())
    keys = pc.unique(query)
    q_key = pc.index_in(query, value_set=keys).to_numpy(zero_copy_only=False).astype(np.int64)
    q_at = _to_us(at, len(q_key))
    seq = np.empty(events.num_rows, dtype=np.int64)
    seq[pc.sort_indices(events, [("event_id", "ascending")]).to_numpy()] = np.arange(events.num_rows)
    key = pc.index_in(events.column(schema.join_key), value_set=keys).to_numpy(zero_copy_only=False)
    t = pc.cast(pc.cast(events.column("occurred_at"), pa.timestamp("us", tz="UTC")), pa.int64())
    t_us = t.to_numpy().astype(np.int64)
    type_col = events.column("type")
    typed: dict[str, _Typed] = {}
    for name, spec in registry.events.items():
        if spec.entity != "customer":
            continue
        is_type = pc.fill_null(pc.equal(type_col, name), False).to_numpy(zero_copy_only=False)
        mask = np.asarray(is_type, dtype=bool) & ~np.isnan(key.astype(np.float64))
        fields: dict[str, np.ndarray] = {}
        labels: dict[str, tuple[str, ...]] = {}
        rows = pa.array(np.flatnonzero(mask))
        for field_name in spec.fields:
            if field_name not in events.column_names:
                continue
            values, names = _as_float(events.column(field_name).take(rows))
            fields[field_name] = values
            if names is not None:
                labels[field_name] = names
        typed[name] = _Typed(key[mask].astype(np.int64), t_us[mask], seq[mask], fields, labels)
    return _aggregate(registry, typed, q_key, q_at)


# --------------------------------------------------------------------------------------------------------
# The simulation.
# --------------------------------------------------------------------------------------------------------


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
    events: int


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


def _check(entity: str, expected: Sequence[str], cols: Mapping[str, np.ndarray], reg: Registry) -> list[str]:
    """Fail loudly if the world drifted from the feature contract; return the contract's column order."""
    if set(cols) != set(expected):
        diff = sorted(set(cols) ^ set(expected))
        raise ValueError(f"{entity} columns differ from the registry: {diff}")
    for name in expected:
        f = reg.entity(entity).feature(name)
        if f.dtype == "category" and not set(np.unique(cols[name])) <= set(f.categories or ()):
            raise ValueError(f"{entity} feature {name!r} has values outside the registry's categories")
    return list(expected)


def _check_events(reg: Registry, produced: Mapping[str, Sequence[str]]) -> None:
    """Fail loudly if the events the world emits are not the contract's (types, fields, categories)."""
    declared = {name: tuple(spec.fields) for name, spec in reg.events.items() if spec.entity == "customer"}
    if {k: set(v) for k, v in declared.items()} != {k: set(v) for k, v in produced.items()}:
        raise ValueError(f"customer events differ from the registry: {declared} vs {dict(produced)}")
    for name, spec in reg.events.items():
        for field_name, field_spec in spec.fields.items():
            if field_spec.dtype == "category" and set(_LABELS[field_name]) != set(field_spec.categories or ()):
                raise ValueError(f"event field {name}.{field_name} has categories the registry does not declare")


class _EventLog:
    """The events emitted so far, per month and type, numbered in the order they were made."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, str, dict[str, np.ndarray]]] = []
        self.made = 0

    def add(self, step: int, kind: str, key: np.ndarray, t: np.ndarray, **fields: np.ndarray) -> None:
        n = len(key)
        seq = np.arange(self.made, self.made + n, dtype=np.int64)
        self.made += n
        arrays = {"key": np.asarray(key, np.int64), "t": np.asarray(t, np.int64), "seq": seq}
        self.chunks.append((step, kind, arrays | {f: np.asarray(v, np.float64) for f, v in fields.items()}))

    def typed(self, reg: Registry, since: Mapping[str, int]) -> dict[str, _Typed]:
        """Each type's events from the months at or after ``since[type]``, for :func:`_aggregate`."""
        out: dict[str, _Typed] = {}
        for name, spec in reg.events.items():
            parts = [a for step, kind, a in self.chunks if kind == name and step >= since.get(name, 0)]
            if not parts:
                continue
            cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            fields = {f: cat[f] for f in spec.fields}
            out[name] = _Typed(
                cat["key"], cat["t"], cat["seq"], fields, {f: _LABELS[f] for f in fields if f in _LABELS}
            )
        return out

    def table(self, reg: Registry, customer_ids: pa.Array) -> pa.Table:
        """The ``customer_events`` table: envelope, then every payload column, sorted by (time, event_id)."""
        names = [name for name, spec in reg.events.items() if spec.entity == "customer"]
        chunks = [(names.index(kind), arrays) for _, kind, arrays in self.chunks]  # in seq order
        sizes = np.array([len(arrays["key"]) for _, arrays in chunks], dtype=np.int64)
        total = int(sizes.sum())

        def gather(column: str) -> np.ndarray:
            return np.concatenate([arrays[column] for _, arrays in chunks] or [np.zeros(0, np.int64)])

        t = gather("t")
        order = np.argsort(t, kind="stable")  # chunks are in seq order, so ties stay in seq order
        kind = np.repeat(np.array([code for code, _ in chunks], dtype=np.int64), sizes)[order]
        columns: dict[str, pa.Array] = {
            "event_id": _ids("E", np.arange(1, total + 1), 10),
            "customer_id": customer_ids.take(pa.array(gather("key")[order])),
            "occurred_at": _ts(t[order]),
            "type": pa.array(names, pa.string()).take(pa.array(kind)),
        }
        ends = np.cumsum(sizes)
        for column, dtype in reg.event_columns("customer").items():
            values = np.full(total, np.nan)
            for (_, arrays), stop, size in zip(chunks, ends, sizes, strict=True):
                if column in arrays:
                    values[stop - size : stop] = arrays[column]
            values = values[order]
            null = np.isnan(values)
            if dtype in ("category", "str"):
                codes = pa.array(np.where(null, 0, values).astype(np.int32), mask=null)
                columns[column] = pa.array(_LABELS[column], pa.string()).take(codes)
            elif dtype == "bool":
                columns[column] = pa.array(values == 1.0, pa.bool_(), mask=null)
            elif dtype == "int":
                columns[column] = pa.array(np.where(null, 0, values).astype(np.int64), pa.int64(), mask=null)
            else:
                columns[column] = pa.array(values, pa.float64(), mask=null)
        return pa.table(columns)


def _times(rng: np.random.Generator, n: int, snapshot_us: int) -> np.ndarray:
    """``n`` whole-second moments in the month's active period ``[snapshot - 28 days, snapshot - 1 hour)``."""
    span = _ACTIVE_DAYS * 86_400 - 3_600
    start: int = snapshot_us - _ACTIVE_DAYS * _US_PER_DAY
    return start + rng.integers(0, span, n).astype(np.int64) * _US_PER_S


def _contacts(
    rng: np.random.Generator,
    who: np.ndarray,
    n_contacts: np.ndarray,
    n_repeat: np.ndarray,
    latent: Mapping[str, np.ndarray],
    agents: dict[str, np.ndarray],
    snapshot_us: int,
) -> dict[str, np.ndarray]:
    """A month's contacts of customers ``who``: when, why, routed to whom, resolved, transferred, repeated.

    Contacts come grouped by customer in time order; a customer's last ``n_repeat`` contacts of the month
    are repeats about the first one's issue (same intent).
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
    resolved = rng.random(n) < true_resolution_probability(intent, language, pair)
    skill = np.asarray([_INTENT_SKILL[i] for i in INTENTS])[intent_code]
    skilled = np.zeros(n, dtype=bool)
    speaks = np.zeros(n, dtype=bool)
    for s in set(_INTENT_SKILL.values()):
        skilled |= (skill == s) & pair[f"skill_{s}"]
    for lang in LANGUAGES:
        speaks |= (language == lang) & pair[f"speaks_{lang}"]
    transfer_logit = -2.6 + 1.0 * ~skilled + 1.2 * ~speaks + 0.5 * (intent_code == INTENTS.index("cancel"))
    transferred = rng.random(n) < _sigmoid(transfer_logit)
    base_time = np.array([420.0, 600.0, 900.0])[channel]
    handle = base_time * rng.lognormal(0.0, 0.4, n) * np.where(resolved, 1.0, 1.3) * np.where(transferred, 1.4, 1.0)
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
    }


def _lookback(reg: Registry) -> dict[str, int]:
    """Per event type, how many earlier months can still shape a feature (the longest window or TTL)."""
    schema = reg.entity("customer")
    horizon: dict[str, float] = {}
    for f in schema.event_features:
        agg = f.aggregation
        assert agg is not None
        days = agg.window_days + 1 if agg.window_days is not None else reg.views[schema.view_of[f.name]].ttl_days
        horizon[agg.event] = max(horizon.get(agg.event, 0.0), float(days))
    return {name: math.ceil(days / 30) + 1 for name, days in horizon.items()}


def simulate(config: WorldConfig, out: Path) -> WorldSummary:
    """Simulate the world month by month and write its parquet tables into ``out``.

    Each month the latent drift moves, the customer's events for the month follow it, ~40% of active
    customers get a decision from the logging policy on the features observed at that moment (snapshot plus
    event aggregates), and one churn draw per customer-month (under the treatment actually given) decides
    who is gone by the next snapshot. Churn labels and offers share that draw.
    """
    reg = Registry.load()
    schema = reg.entity("customer")
    produced = {
        "login": (),
        "contact_ended": ("intent", "resolved", "transferred", "repeat", "handle_time_s"),
        "complaint": ("open",),
        "payment_failed": ("amount",),
        "sentiment": ("score",),
        "offer_presented": ("action_id",),
        "offer_accepted": ("action_id",),
        "offer_declined": ("action_id",),
    }
    _check_events(reg, produced)
    lookback = _lookback(reg)
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
    fail_hist = np.zeros((3, n), dtype=bool)
    complaint, overdue = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    sentiment = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    agents = _agents(rng, config.agents)
    agent_ids = _ids("A", np.arange(1, config.agents + 1), 4)
    customer_ids = _ids("C", np.arange(1, n + 1), 6)
    cost = np.array([ACTION_COST[a] for a in ACTIONS])
    end_us = int(np.datetime64(config.end, "D").astype("datetime64[us]").astype(np.int64))
    log = _EventLog()
    snaps: list[pa.Table] = []
    labels: list[pa.Table] = []
    offers: list[pa.Table] = []
    contacts: list[pa.Table] = []
    order: list[str] = []
    total = _WARMUP_MONTHS + config.months
    for step in range(total):
        k = total - 1 - step  # months before `end`; only the last `months` are written
        ts_us = end_us - k * 30 * _US_PER_DAY
        decision_us = ts_us + _US_PER_DAY
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
        fail_hist = np.roll(fail_hist, 1, axis=0)
        fail_hist[0] = rng.random(n) < _sigmoid(pay_trait + 0.5 * z)
        paid = np.where(rng.random(n) < 0.6, 0, overdue)
        overdue = np.where(fail_hist[0], np.minimum(overdue + rng.integers(5, 31, n), 180), paid)
        n_contacts = rng.poisson(0.25 + 0.6 * _sigmoid(1.5 * z - 0.5) + 0.4 * complaint + 0.5 * fail_hist[0])
        repeat = rng.binomial(np.maximum(n_contacts - 1, 0), _sigmoid(z - 0.3))
        opens, closes = rng.random(n) < _sigmoid(-3.5 + 1.2 * z + 0.5 * repeat), rng.random(n) < 0.45
        was_open = complaint
        complaint = np.where(complaint, ~closes, opens)
        mood = np.tanh(0.4 - 0.7 * z - 0.4 * complaint)
        sentiment = np.clip(0.5 * sentiment + 0.5 * mood + rng.normal(0.0, 0.15, n), -1.0, 1.0)
        charge = PLAN_PRICE[plan] * charge_noise * price_factor
        ltv = charge * _SEGMENT_HORIZON[segment] * ltv_noise * (1.0 + np.minimum(tenure, 60) / 60.0)
        price_increase = np.where(months_since_rise < 3, rise_pct, 0.0)
        idx = np.flatnonzero(alive)

        # The month's events, in [snapshot - 28 days, snapshot): all inside the decision's 30-day windows.
        who = np.repeat(idx, logins[idx])
        log.add(step, "login", who, _times(rng, len(who), ts_us))
        latent = {
            "failed": fail_hist.sum(axis=0),
            "price_rise": price_increase,
            "repeat": repeat,
            "complaint": complaint,
            "sentiment": sentiment,
            "language": language,
        }
        con = _contacts(rng, idx, n_contacts, repeat, latent, agents, ts_us)
        log.add(
            step,
            "contact_ended",
            con["owner"],
            con["t"],
            intent=con["intent"],
            resolved=con["resolved"],
            transferred=con["transferred"],
            repeat=con["repeat"],
            handle_time_s=con["handle_time_s"],
        )
        # Speech analytics scores most conversations; the month's last score is close to the latent mood.
        scored = np.flatnonzero(rng.random(len(con["owner"])) < 0.75)
        owner = con["owner"][scored]
        last = np.r_[owner[1:] != owner[:-1], True] if len(owner) else np.zeros(0, dtype=bool)
        noise = rng.normal(0.0, 1.0, len(owner)) * np.where(last, 0.05, 0.25)
        score = np.round(np.clip(sentiment[owner] + noise, -1.0, 1.0), 3)
        log.add(step, "sentiment", owner, con["t"][scored] + rng.integers(1, 121, len(owner)) * _US_PER_S, score=score)
        changed = idx[was_open[idx] != complaint[idx]]
        log.add(step, "complaint", changed, _times(rng, len(changed), ts_us), open=complaint[changed])
        failed = idx[fail_hist[0][idx]]
        amount = np.round(charge[failed] * rng.uniform(1.0, 1.2, len(failed)), 2)
        log.add(step, "payment_failed", failed, _times(rng, len(failed), ts_us), amount=amount)

        # What the models see at the decision: the snapshot taken at ts_us and the events so far.
        since = {name: step - back for name, back in lookback.items()}
        observed = _aggregate(reg, log.typed(reg, since), idx, np.full(len(idx), decision_us))
        snapshot: dict[str, np.ndarray] = {
            "tenure_months": tenure,
            "plan": np.asarray(PLANS)[plan],
            "contract_type": np.asarray(CONTRACTS)[contract],
            "days_to_contract_end": days_end,
            "monthly_charge": np.round(charge, 2),
            "price_increase_pct": price_increase,
            "lifetime_value": np.round(ltv, 2),
            "segment": np.asarray(SEGMENTS)[segment],
            "language": np.asarray(LANGUAGES)[language],
            "consent_marketing": consent,
            "usage_change_pct_30d": usage_change,
            "days_overdue": overdue,
        }
        snap = {name: np.asarray(v)[idx] for name, v in snapshot.items()}
        c = snap | observed
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
        # The offer is presented a minute after the decision and answered within minutes; never after `end`.
        made = np.flatnonzero(decided & (choice > 0))
        presented_us = decision_us + 60 * _US_PER_S
        answered = presented_us + rng.integers(60, 601, len(made)) * _US_PER_S
        if k > 0:
            given = choice[made]
            log.add(step, "offer_presented", idx[made], np.full(len(made), presented_us), action_id=given)
            yes = accepted[made]
            log.add(step, "offer_accepted", idx[made][yes], answered[yes], action_id=given[yes])
            log.add(step, "offer_declined", idx[made][~yes], answered[~yes], action_id=given[~yes])
        if k >= config.months:
            continue
        order = order or _check("customer", schema.snapshot_names, snap, reg)
        _check("customer", schema.names, c, reg)
        ids = customer_ids.take(pa.array(idx))
        feature_ts, decision_ts = _ts(np.full(m, ts_us)), _ts(np.full(m, decision_us))
        snaps.append(pa.table({"customer_id": ids, "feature_ts": feature_ts, **{f: snap[f] for f in order}}))
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
        contacts.append(
            pa.table(
                {
                    "customer_id": customer_ids.take(pa.array(con["owner"])),
                    "ts": _ts(con["t"]),
                    "intent": pa.array(np.asarray(INTENTS)[con["intent"]], pa.string()),
                    "channel": pa.array(np.asarray(CHANNELS)[con["channel"]], pa.string()),
                    "language": pa.array(np.asarray(LANGUAGES)[con["language"]], pa.string()),
                    "agent_id": agent_ids.take(pa.array(con["agent"])),
                    "resolved": con["resolved"].astype(np.int8),
                    "transferred": con["transferred"].astype(np.int8),
                    "repeat": con["repeat"].astype(np.int8),
                    "handle_time_s": con["handle_time_s"],
                }
            )
        )
        alive[idx[churned]] = False
    agent_order = _check("agent", reg.entity("agent").names, agents, reg)
    agent_table = pa.table(
        {
            "agent_id": agent_ids,
            "feature_ts": _ts(np.full(config.agents, end_us)),
            **{f: agents[f] for f in agent_order},
        }
    )
    contact_table = pa.concat_tables(contacts)
    contact_table = contact_table.add_column(0, "contact_id", _ids("T", np.arange(1, contact_table.num_rows + 1), 8))
    events = log.table(reg, customer_ids)
    if events.column_names != [*EVENT_ENVELOPE, *reg.event_columns("customer")]:
        raise ValueError(f"customer_events columns differ from the registry: {events.column_names}")
    tables = {
        "customer_snapshots": pa.concat_tables(snaps),
        "churn_labels": pa.concat_tables(labels),
        "offers": pa.concat_tables(offers),
        "agent_snapshots": agent_table,
        "contacts": contact_table,
        "customer_events": events,
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet")
    rows = {name: t.num_rows for name, t in tables.items()}
    return WorldSummary(
        out=out,
        customer_snapshots=rows["customer_snapshots"],
        churn_labels=rows["churn_labels"],
        offers=rows["offers"],
        agent_snapshots=rows["agent_snapshots"],
        contacts=rows["contacts"],
        events=rows["customer_events"],
    )
