"""Arbitration: from the scored candidates to the ranked answer, the way decision hubs arbitrate.

Each candidate arrives with its ``expected_value`` (see :mod:`service.decisioning`: what the models expect it to
gain over doing nothing, ``P(accept) × (value gained − cost)`` with the retained lifetime value in the value
gained). Then

    multiplier(a) = lever_a × context_weight(group_a)
    score(a)      = expected_value(a) × multiplier(a)   when expected_value(a) ≥ 0
                    expected_value(a) / multiplier(a)   when expected_value(a) < 0

so a weight above 1 always lifts an action toward the top: multiplying a loss would push it down instead (a
retention offer expected to lose 36 would fall to −72 under a ×2 "cancel" lift, the opposite of what the lift is
for). ``context_weight(group)`` is the product of the catalog's ``context_weights`` whose conditions hold for this
customer and live context (1 when none names the group). ``lever`` and the weights are the catalog's, so the
business tunes the formula without code.

The answer is sorted by (group priority, score, action id): every action of a group with a lower priority number
comes before any of a higher one, whatever the scores (an open complaint's service action before any offer); within
a priority, the higher score first; equal scores by id, so the same input gives the same order. ``no_action`` is
always a candidate at 0 in its own group, so where it shares a priority with offers, an offer expected to lose money
ranks below doing nothing.

The escape hatch: when the live context says the customer asks for a person, or there are offers and none has a
P(accept) of at least ``arbitration.escape.min_propensity``, the escape action (a transfer to a specialist) is added
at the head of its group, with the reason. It is not scored by the models (score and expected value 0, P(accept)
its catalog prior) and obeys its own rules (channels, dates, contact policy) like any action.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from service.catalog import NO_ACTION, Action, Catalog, Situation

if TYPE_CHECKING:
    from service.decisioning import ScoredAction


def scaled(value: float, multiplier: float) -> float:
    """``value`` moved by ``multiplier`` (> 0): multiplied when a gain, divided when a loss (see the module)."""
    return value * multiplier if value >= 0 else value / multiplier


def escape_reason(scored: Sequence[ScoredAction], catalog: Catalog, situation: Situation) -> str | None:
    """Why the escape action should lead, or None: a person asked for, or no offer likely enough to be accepted."""
    if situation.context.wants_person:
        return "the customer asked for a person"
    offers = [s.propensity for s in scored if s.action.id != NO_ACTION]
    if offers and max(offers) < catalog.min_propensity:
        best, floor = max(offers), catalog.min_propensity
        return f"no action is likely to be accepted (best P(accept) {best:.0%}, below {floor:.0%})"
    return None


def arbitrate(
    scored: Sequence[ScoredAction],
    *,
    catalog: Catalog,
    x: np.ndarray,
    situation: Situation,
    escape: ScoredAction | None,
    top_k: int,
) -> list[ScoredAction]:
    """The top ``top_k`` of ``scored`` after context weights, levers, group priority and the escape hatch.

    ``escape`` is the escape action ready to be shown (None when the catalog has none or its rules refuse it
    now); it is added only when :func:`escape_reason` gives a reason.
    """
    weights = catalog.weights(x, situation.context)
    final = []
    for s in scored:
        weight = weights.get(s.action.group, 1.0)
        final.append(s.weighted(scaled(s.expected_value, s.action.lever * weight), weight))
    lead: Action | None = None
    if escape is not None and (why := escape_reason(final, catalog, situation)) is not None:
        lead = escape.action
        final.append(escape.explained([why]).weighted(escape.score, weights.get(lead.group, 1.0)))
    final.sort(key=lambda s: (catalog.priority_of(s.action), s.action is not lead, -s.score, s.action.id))
    return final[:top_k]
