"""Next-best-action arbitration: which eligible actions to put in front of the agent, and why.

For each eligible action a (see :mod:`training.action_value`):

    expected_value(a) = lifetime_value × (P(churn | no_action) − P(churn | a offered))
                        + P(accept | customer, a) × (value_a − cost_a)
    score(a)          = expected_value(a) × lever_a × context_weight(group_a)   (see service.arbitration)

P(accept) comes from the propensity model (one predict call for all offers). P(churn | a offered) comes from
the action-aware churn model, scored for "no_action" and every eligible offer, accepted and declined, in one
predict call and mixed by P(accept) (:func:`training.action_value.churn_by_action`): the gap to "no_action" is
the action's learned effect on churn, not an assumed save rate. Value, cost and lever come from the catalog.
An action the models never learned (added to the catalog since they were trained) is scored on its catalog
prior: P(accept) = ``prior_accept`` and no effect on churn, until a retrained model knows it.
"no_action" is always a candidate at 0. :func:`service.arbitration.arbitrate` then applies levers and context
weights, ranks by group priority and score (ties on the action id) and adds the escape action when it is called
for. Reasons are LightGBM's per-feature
contributions (``pred_contrib``) turned into the contract's phrases; an offer whose learned effect lowers the
churn risk also cites the risk's top driver.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features import EntitySchema
from service.arbitration import arbitrate
from service.catalog import NO_ACTION, Action, Catalog, Situation
from service.model_holder import Models
from training import churn_by_action, expected_gain, untreated_rows

MAX_REASONS = 3
RISK_BANDS = ((0.30, "high"), (0.10, "medium"), (0.0, "low"))
PRIOR_REASON = "not yet learned by the models: scored on the catalog's prior acceptance rate"


@dataclass(frozen=True)
class ScoredAction:
    """One ranked action and the numbers behind its rank."""

    action: Action
    score: float
    propensity: float
    expected_value: float
    reasons: list[str]
    churn_if_offered: float | None = None
    """The churn model's P(churn within 30 days | this action offered); None when no model scored it."""
    context_weight: float = 1.0
    """The context weight arbitration applied to the action's group (1: none)."""

    # These two build the copy directly: dataclasses.replace costs ~5 us a call (it inspects the fields each time),
    # and a recommend copies every candidate once and every shown action again.
    def weighted(self, score: float, context_weight: float) -> ScoredAction:
        """This action at ``score`` under ``context_weight``."""
        return ScoredAction(
            self.action,
            score,
            self.propensity,
            self.expected_value,
            self.reasons,
            self.churn_if_offered,
            context_weight,
        )

    def explained(self, reasons: list[str]) -> ScoredAction:
        """This action with ``reasons``."""
        return ScoredAction(
            self.action,
            self.score,
            self.propensity,
            self.expected_value,
            reasons,
            self.churn_if_offered,
            self.context_weight,
        )


@dataclass(frozen=True)
class CustomerView:
    """What the agent should know about the customer at a glance."""

    churn_risk: float | None
    risk_band: str | None
    lifetime_value: float | None
    sentiment: float | None


def risk_band(churn_risk: float) -> str:
    """low / medium / high churn risk, the bands the agent desktop colours."""
    return next(name for floor, name in RISK_BANDS if churn_risk >= floor)


def _drivers(contrib: np.ndarray, x: np.ndarray, known: np.ndarray, schema: EntitySchema, limit: int) -> list[str]:
    """Phrases for the model inputs that pushed the prediction up most.

    ``contrib`` is in model-input order (``schema.model_features``), ``x`` and ``known`` in contract order.
    Only values the store actually holds become reasons: a default filled in for a missing value says
    nothing true about this customer.
    """
    n = len(schema.model_features)
    order = np.argsort(-contrib[:n], kind="stable")
    out: list[str] = []
    for i in order:
        if contrib[i] <= 0 or len(out) == limit:
            break
        at = schema.model_at[i]
        if known[at]:
            out.append(schema.model_features[i].phrase(float(x[at])))
    return out


def _value(x: np.ndarray, schema: EntitySchema, name: str) -> float | None:
    v = float(x[schema.index[name]])
    return None if np.isnan(v) else v


def lifetime_value(x: np.ndarray, schema: EntitySchema) -> float:
    """The customer's lifetime value as the expected values weigh it: 0 when unknown, so an unknown worth adds no
    retained value to any action. The shadow worker reads it from the logged vector the same way."""
    return _value(x, schema, "lifetime_value") or 0.0


@dataclass(frozen=True)
class ScoredCandidates:
    """The models' numbers for one customer's candidates, before arbitration."""

    actions: list[ScoredAction]
    churn_risk: float
    offers: list[Action]
    """The candidates the models learned, in the order of ``matrix``'s rows."""
    matrix: np.ndarray
    """The propensity model's inputs for ``offers`` (their reasons are its contributions)."""


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` decided, with what the decision log keeps for a challenger to replay it."""

    ranked: list[ScoredAction]
    """Every candidate, best first; the first ``top_k`` carry their reasons (the answer shows those)."""
    view: CustomerView
    candidates: list[Action]
    """The actions eligible at the decision, before arbitration."""
    escape: Action | None
    """The escape action when its own rules allowed it (arbitration decided whether it leads)."""


def score_candidates(
    x: np.ndarray, candidates: Sequence[Action], *, catalog: Catalog, models: Models, schema: EntitySchema
) -> ScoredCandidates:
    """Each candidate's P(accept), P(churn | offered) and expected value (see the module), in one predict call per
    model; ``no_action`` added at 0 when the catalog has it. Reasons are left to :func:`recommend`, which gives them
    only to the actions it shows."""
    learned = set(models.propensity.actions) & set(models.churn.actions)
    offers = [a for a in candidates if a.id != NO_ACTION and a.id in learned]
    unlearned = [a for a in candidates if a.id != NO_ACTION and a.id not in learned]
    inputs = x[schema.model_at]
    matrix = models.propensity.with_actions(inputs, [a.id for a in offers])
    accept = models.propensity.predict(matrix) if offers else np.zeros(0)
    churn = churn_by_action(models.churn, inputs, [NO_ACTION, *(a.id for a in offers)], np.r_[0.0, accept])[0]
    churn_risk = float(churn[0])
    ltv = lifetime_value(x, schema)
    scored: list[ScoredAction] = []
    if offers:
        payoff = np.array([a.value - a.cost for a in offers])
        gains = expected_gain(churn[:1], churn[1:], accept, np.array([ltv]), payoff)[0]
        for action, p, if_offered, ev in zip(offers, accept, churn[1:], gains, strict=True):
            scored.append(ScoredAction(action, float(ev) * action.lever, float(p), float(ev), [], float(if_offered)))
    for action in unlearned:
        ev = action.prior_accept * (action.value - action.cost)
        scored.append(ScoredAction(action, ev, action.prior_accept, ev, [PRIOR_REASON], churn_risk))
    if NO_ACTION in catalog.by_id:
        scored.append(ScoredAction(catalog.by_id[NO_ACTION], 0.0, 1.0, 0.0, [], churn_risk))
    return ScoredCandidates(scored, churn_risk, offers, matrix)


def recommend(
    x: np.ndarray,
    *,
    known: np.ndarray,
    catalog: Catalog,
    channel: str,
    models: Models,
    schema: EntitySchema,
    top_k: int,
    situation: Situation | None = None,
) -> Recommendation:
    """Rank the eligible actions for one customer vector ``x`` with the models (see :class:`Recommendation`).

    ``known`` marks the features the store held (as opposed to defaults); only those are cited as reasons.
    ``situation`` (the time, live context, event recency and contact-policy state) decides dates, triggers,
    contact policies, context weights and the escape hatch; without it, now with an empty context and no history.
    """
    situation = situation if situation is not None else Situation(now=time.time())
    candidates = catalog.eligible(x, channel, situation)
    scored = score_candidates(x, candidates, catalog=catalog, models=models, schema=schema)
    escape = _escape(catalog, x, channel, situation)
    ranked = arbitrate(
        scored.actions, catalog=catalog, x=x, situation=situation, escape=escape, top_k=len(scored.actions) + 1
    )
    inputs = x[schema.model_at]
    churn_risk = scored.churn_risk
    risk_reasons = _drivers(
        models.churn.contributions(untreated_rows(models.churn, inputs))[0], x, known, schema, MAX_REASONS
    )
    # Reasons only for the offers shown: TreeSHAP (pred_contrib) is most of a recommend's CPU, per row.
    row_of = {a.id: j for j, a in enumerate(scored.offers)}
    shown = [i for i, s in enumerate(ranked[:top_k]) if s.action.id in row_of]
    rows = [row_of[ranked[i].action.id] for i in shown]
    contrib = models.propensity.contributions(scored.matrix[rows]) if rows else np.zeros((0, 0))
    for i, c in zip(shown, contrib, strict=True):
        saves = (ranked[i].churn_if_offered or 0.0) < churn_risk
        reasons = (risk_reasons[:1] if saves else []) + _drivers(c, x, known, schema, MAX_REASONS)
        ranked[i] = ranked[i].explained(list(dict.fromkeys(reasons))[:MAX_REASONS])
    for i, s in enumerate(ranked[:top_k]):
        if s.action.id == NO_ACTION:
            ranked[i] = s.explained([f"churn risk {churn_risk:.0%}", *risk_reasons[:2]])
    ltv = lifetime_value(x, schema)
    view = CustomerView(churn_risk, risk_band(churn_risk), ltv, _value(x, schema, "last_sentiment"))
    return Recommendation(ranked, view, candidates, None if escape is None else escape.action)


def replay(
    x: np.ndarray,
    candidates: Sequence[Action],
    *,
    escape: Action | None,
    catalog: Catalog,
    models: Models,
    schema: EntitySchema,
    situation: Situation,
) -> list[ScoredAction]:
    """How ``models`` would have ranked a logged decision's candidates, arbitrated as :func:`recommend` does (no
    reasons): the shadow worker's view of a challenger."""
    scored = score_candidates(x, candidates, catalog=catalog, models=models, schema=schema)
    lead = None if escape is None else _lead(escape)
    return arbitrate(
        scored.actions, catalog=catalog, x=x, situation=situation, escape=lead, top_k=len(scored.actions) + 1
    )


def recommend_by_priors(
    x: np.ndarray, *, catalog: Catalog, channel: str, top_k: int, situation: Situation | None = None
) -> list[ScoredAction]:
    """The fallback when no model is loaded: catalog priors, no churn term, so nothing costly is pushed."""
    situation = situation if situation is not None else Situation(now=time.time())
    reason = ["models unavailable: ranked by the catalog's prior acceptance rates"]
    scored = [
        ScoredAction(
            a,
            a.prior_accept * (a.value - a.cost) * a.lever,
            a.prior_accept,
            a.prior_accept * (a.value - a.cost),
            reason,
        )
        for a in catalog.eligible(x, channel, situation)
    ]
    escape = _escape(catalog, x, channel, situation)
    return arbitrate(scored, catalog=catalog, x=x, situation=situation, escape=escape, top_k=top_k)


def _escape(catalog: Catalog, x: np.ndarray, channel: str, situation: Situation) -> ScoredAction | None:
    """The escape action as arbitration would show it, when the catalog has one its rules allow now."""
    action: Action | None = catalog.escape_for(x, channel, situation)
    return None if action is None else _lead(action)


def _lead(escape: Action) -> ScoredAction:
    """The escape action as arbitration receives it: not scored by the models, at its catalog prior."""
    return ScoredAction(escape, 0.0, escape.prior_accept, 0.0, [], None)
