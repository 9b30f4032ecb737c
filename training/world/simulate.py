"""The simulation: month by month, the customers' drift, their events, the decisions and the churn draw.

The world writes what a real contact center would hold: monthly snapshots of the batch features (profile,
usage trend, billing standing), a monthly agent snapshot with each agent's results over the month just ended
(from the month before the first written one, so every written contact has an agent snapshot before it), and a
stream of events (logins, usage records, started and ended contacts, post-contact surveys, complaints,
failed payments, sentiment scores, offers presented and answered, abandoned carts, consents given and changed) from
which the other customer features are aggregated, exactly as the feature contract says. A latent "drift
toward churn" moves the customer month to month: drifting customers log in and use less, call more,
complain, get angrier and rate their contacts lower, and the events they produce say so.

Timeline of a simulated month ending with the snapshot at midnight ``S``: the month's events fall in
``[S - 28 days, S)``, the snapshot is taken at ``S``, the decision (and label) is at ``S + 1 day``, and the
decision's offer is presented a minute later and answered a few minutes after that, so it only shows in
the next month's features. Nothing happens after ``end`` midnight: the last month's decisions are logged
in ``offers.parquet`` but their offer events would fall after the world's end and are not written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.registry import Registry
from training.world.aggregate import _aggregate
from training.world.config import (
    _ACTIVE_DAYS,
    _SEGMENT_HORIZON,
    _US_PER_DAY,
    _US_PER_S,
    _WARMUP_MONTHS,
    ACTION_COST,
    ACTIONS,
    CHANNELS,
    CONTRACTS,
    EVENT_ENVELOPE,
    INTENTS,
    LANGUAGES,
    PLAN_PRICE,
    PLANS,
    PURPOSES,
    SEGMENTS,
    WorldConfig,
    WorldSummary,
)
from training.world.contact_center import (
    RESULT_MONTHS,
    _agent_results,
    _agents,
    _contacts,
    _intent_counts,
    _intent_results,
    _next_month,
    _surveys,
)
from training.world.contract import _check, _check_events, _derived, _lookback
from training.world.customer_life import _carts, _consent_changes, _initial_consent, _usage
from training.world.draws import _sample, _times
from training.world.event_log import _EventLog
from training.world.oracle import _sigmoid, behaviour_probabilities, true_accept_probability, true_churn_probability
from training.world.routing_oracle import AGENT_TRUTH, CONTACT_TRUTH, TRUTH_PROFILE
from training.world.tables import _ids, _ts

TABLES: tuple[str, ...] = (
    "customer_snapshots",
    "churn_labels",
    "offers",
    "agent_snapshots",
    "contacts",
    "customer_events",
    CONTACT_TRUTH,
    AGENT_TRUTH,
)
"""The tables :func:`simulate` writes, each as ``<name>.parquet``."""


def simulate(config: WorldConfig, out: Path, *, progress: Callable[[int, int], None] | None = None) -> WorldSummary:
    """Simulate the world month by month and write its parquet tables into ``out``.

    ``progress(done, total)`` is called after each simulated month (warm-up months included) and after
    the tables are written, so a command can draw a bar over a run that takes minutes at a million customers.

    Each month the latent drift moves, the customer's events for the month follow it, ~40% of active
    customers get a decision from the logging policy on the features observed at that moment (snapshot plus
    event aggregates), and one churn draw per customer-month (under the treatment actually given) decides
    who is gone by the next snapshot. Churn labels and offers share that draw.
    """
    reg = Registry.load()
    schema = reg.entity("customer")
    produced = {
        "login": (),
        "usage": ("units",),
        "contact_started": ("intent", "channel"),
        "contact_ended": ("intent", "resolved", "transferred", "repeat", "handle_time_s"),
        "complaint": ("open",),
        "payment_failed": ("amount",),
        "sentiment": ("score",),
        "offer_presented": ("action_id",),
        "offer_accepted": ("action_id",),
        "offer_declined": ("action_id",),
        "survey_answered": ("csat", "nps"),
        "cart_abandoned": ("cart_value",),
        "consent_changed": ("purpose", "granted"),
    }
    _check_events(reg, produced)
    lookback = _lookback(reg)
    rng = np.random.default_rng(config.seed)
    # Usage, carts, consents and surveys draw from a stream of their own, so adding them left every draw of
    # the churn, offer and contact outcomes as it was.
    life = np.random.default_rng([config.seed, 1])
    n = config.customers
    segment = _sample(rng, np.tile([0.7, 0.2, 0.1], (n, 1)))
    plan = _sample(rng, np.array([[0.5, 0.35, 0.15], [0.2, 0.5, 0.3], [0.05, 0.25, 0.7]])[segment])
    language = _sample(rng, np.tile([0.7, 0.2, 0.1], (n, 1)))
    consent = _initial_consent(life, rng.random(n) < 0.7)
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
    # The agents' latent skills, their drift, experience and ratings draw from a stream of their own too.
    traits = np.random.default_rng([config.seed, 2])
    agents, talent = _agents(rng, traits, config.agents)
    intent_months: list[np.ndarray] = []
    agent_ids = _ids("A", np.arange(1, config.agents + 1), 4)
    customer_ids = _ids("C", np.arange(1, n + 1), 6)
    cost = np.array([ACTION_COST[a] for a in ACTIONS])
    end_us = int(np.datetime64(config.end, "D").astype("datetime64[us]").astype(np.int64))
    log = _EventLog()
    snaps: list[pa.Table] = []
    labels: list[pa.Table] = []
    offers: list[pa.Table] = []
    contacts: list[pa.Table] = []
    contact_truth: list[pa.Table] = []
    agent_truth: list[pa.Table] = []
    agent_snaps: list[pa.Table] = []
    agent_order: list[str] = []
    order: list[str] = []
    total = _WARMUP_MONTHS + config.months
    report = progress or (lambda done, of: None)
    for step in range(total):
        report(step, total + 1)
        k = total - 1 - step  # months before `end`; only the last `months` are written
        ts_us = end_us - k * 30 * _US_PER_DAY
        decision_us = ts_us + _US_PER_DAY
        if step > 0:
            tenure += 1
            days_end -= 30
            _next_month(traits, agents, talent)
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
        owner, t, units = _usage(life, idx, u, ts_us)
        log.add(step, "usage", owner, t, units=units)
        latent = {
            "failed": fail_hist.sum(axis=0),
            "price_rise": price_increase,
            "repeat": repeat,
            "complaint": complaint,
            "sentiment": sentiment,
            "language": language,
        }
        con = _contacts(rng, idx, n_contacts, repeat, latent, agents | talent, ts_us)
        intent_months = [*intent_months[1 - RESULT_MONTHS :], _intent_counts(con, config.agents)]
        started = con["t"] - np.rint(con["handle_time_s"]).astype(np.int64) * _US_PER_S
        log.add(step, "contact_started", con["owner"], started, intent=con["intent"], channel=con["channel"])
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
        # Scores on a grid of 1/256 add up exactly in any order, so a mean is the same bits whichever store sums
        # it (per day then per window online, all at once offline); three decimals would differ in the last bit.
        score = np.round(np.clip(sentiment[owner] + noise, -1.0, 1.0) * 256.0) / 256.0
        log.add(step, "sentiment", owner, con["t"][scored] + rng.integers(1, 121, len(owner)) * _US_PER_S, score=score)
        survey = _surveys(life, con, sentiment)
        log.add(step, "survey_answered", survey["owner"], survey["t"], csat=survey["csat"], nps=survey["nps"])
        changed = idx[was_open[idx] != complaint[idx]]
        log.add(step, "complaint", changed, _times(rng, len(changed), ts_us), open=complaint[changed])
        failed = idx[fail_hist[0][idx]]
        amount = np.round(charge[failed] * rng.uniform(1.0, 1.2, len(failed)), 2)
        log.add(step, "payment_failed", failed, _times(rng, len(failed), ts_us), amount=amount)
        owner, t, value = _carts(life, idx, PLAN_PRICE[plan], ts_us)
        log.add(step, "cart_abandoned", owner, t, cart_value=value)
        if step == 0:
            # The consent platform's first record of what each customer consented to, before any change: consent
            # is an event feature that never expires, so this record stands until a change replaces it.
            first = np.full(n, ts_us - _ACTIVE_DAYS * _US_PER_DAY - _US_PER_S)
            everyone = np.arange(n)
            for code, name in enumerate(PURPOSES):
                log.add(step, "consent_changed", everyone, first, purpose=np.full(n, code), granted=consent[name])
        owner, t, purpose, granted = _consent_changes(life, idx, consent, sentiment < -0.3, ts_us)
        log.add(step, "consent_changed", owner, t, purpose=purpose, granted=granted)

        # What the models see at the decision: the snapshot taken at ts_us and the events so far.
        since = {name: step - back for name, back in lookback.items()}
        observed = _aggregate(reg, log.typed(reg, since), idx, np.full(len(idx), decision_us))
        snapshot: dict[str, np.ndarray] = {
            "tenure_months": tenure,
            "plan": np.asarray(PLANS)[plan],
            "contract_type": np.asarray(CONTRACTS)[contract],
            # The snapshot states the date; the days to it are derived at the decision (see _derived).
            "contract_end_day": ts_us // _US_PER_DAY + days_end,
            "monthly_charge": np.round(charge, 2),
            "price_increase_pct": price_increase,
            "lifetime_value": np.round(ltv, 2),
            "segment": np.asarray(SEGMENTS)[segment],
            "language": np.asarray(LANGUAGES)[language],
            "usage_change_pct_30d": usage_change,
            "days_overdue": overdue,
        }
        snap = {name: np.asarray(v)[idx] for name, v in snapshot.items()}
        c = snap | observed | _derived(reg, "customer", snap, decision_us // _US_PER_DAY)
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
        if k <= config.months:
            # Workforce management's snapshot at the month's end: the agents' results over its contacts. The next
            # month's contacts are routed knowing these, never their own outcomes.
            profile = agents | _agent_results(con, config.agents) | _intent_results(intent_months)
            agent_order = agent_order or _check("agent", reg.entity("agent").names, profile, reg)
            agent_snaps.append(
                pa.table(
                    {
                        "agent_id": agent_ids,
                        "feature_ts": _ts(np.full(config.agents, ts_us)),
                        **{f: pa.array(profile[f], from_pandas=True) for f in agent_order},  # NaN: no contact, null
                    }
                )
            )
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
                    # When the contact was routed: a model deciding who takes it sees only what happened before.
                    "started_at": _ts(started),
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
        # The oracle's hidden state of the month (never a feature): each contact's customer, each agent's skill.
        contact_truth.append(pa.table({"complaint": con["complaint"], "mood": con["mood"]}))
        agent_truth.append(
            pa.table(
                {
                    "agent_id": agent_ids,
                    "month_end": _ts(np.full(config.agents, ts_us)),
                    **{name: agents[name] for name in TRUTH_PROFILE},
                    **talent,
                }
            )
        )
        alive[idx[churned]] = False
    contact_table = pa.concat_tables(contacts)
    contact_ids = _ids("T", np.arange(1, contact_table.num_rows + 1), 8)
    contact_table = contact_table.add_column(0, "contact_id", contact_ids)
    events = log.table(reg, customer_ids)
    if events.column_names != [*EVENT_ENVELOPE, *reg.event_columns("customer")]:
        raise ValueError(f"customer_events columns differ from the registry: {events.column_names}")
    tables = {
        "customer_snapshots": pa.concat_tables(snaps),
        "churn_labels": pa.concat_tables(labels),
        "offers": pa.concat_tables(offers),
        "agent_snapshots": pa.concat_tables(agent_snaps),
        "contacts": contact_table,
        "customer_events": events,
        CONTACT_TRUTH: pa.concat_tables(contact_truth).add_column(0, "contact_id", contact_ids),
        AGENT_TRUTH: pa.concat_tables(agent_truth),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        table = tables[name]
        # Unique ids and times gain nothing from dictionary encoding, and the events table is the bulk of the write.
        unique = ("event_id", "contact_id", "occurred_at")
        pq.write_table(
            table, out / f"{name}.parquet", use_dictionary=[c for c in table.column_names if c not in unique]
        )
    report(total + 1, total + 1)
    rows = {name: t.num_rows for name, t in tables.items()}
    return WorldSummary(
        out=out,
        customer_snapshots=rows["customer_snapshots"],
        churn_labels=rows["churn_labels"],
        offers=rows["offers"],
        agent_snapshots=rows["agent_snapshots"],
        contacts=rows["contacts"],
        events=rows["customer_events"],
        contact_truth=rows[CONTACT_TRUTH],
        agent_truth=rows[AGENT_TRUTH],
    )
