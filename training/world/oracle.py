"""The ground truth: the churn, acceptance and logging-policy probabilities the world draws from.

Every outcome the simulation draws comes from these functions, so evaluation can compare a policy with the
truth instead of with another model. They read the features as the models see them at decision time (the
label's ``ts``, a day after the snapshot): the snapshot's values and the event aggregates computed by
:func:`~training.world.event_features.event_features_at` from the events that happened by then. Churn is a
logistic hazard on those observed features (no hidden terms), so a perfect model is possible. Missing
aggregates are neutral: no sentiment measured in 90 days reads as 0, no open complaint on record as none, no
login in 90 days as 90 days inactive, no offer in 180 days as no offer fatigue. Offers act on the churn
log-odds:

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
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from training.world.config import ACTION_COST, ACTIONS, SALES_ACTIONS, Columns


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
