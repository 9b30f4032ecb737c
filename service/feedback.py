"""``POST /v1/feedback``: what came of a decision, kept with it and fed to the customer's state.

Recommend: the customer ``accepted``, ``declined`` or ``ignored`` one action the decision returned, and/or
``retained``: whether they were still a customer at the end of the churn horizon,
:data:`~service.decision_records.RETENTION_HORIZON_DAYS` after the decision. It is kept with the decision only, for
the shadow report's reward (:mod:`service.shadow_report`): the customer's own state learns of a churn from its own
events. It is refused (422) before the horizon has ended, ``false`` too although a customer who left is known to
have left: answers that could come early only for the customers who left would make every report over recent
decisions see them before those who stayed, and value each policy too low by as much as it keeps customers.

- An offer (an action with ``offer: true``) becomes events in the existing pipeline (:meth:`DecisionService.ingest`:
  the online state at once, the events stream, the offline store): ``offer_presented``, and ``offer_accepted``
  or ``offer_declined``; so ``offers_accepted_90d``, ``last_offer`` and the rest move as they do for any producer.
  Other actions (a complaint to resolve, a transfer) have no event of their own in the contract.
- An action under a contact policy gets its decline or acceptance time in the customer's contact-policy state
  (:mod:`service.contact_policy`), which its cool-down and suppression read from the next recommend on. Its
  presentation was counted when recommend returned it.

Assign: ``resolved`` (first-contact resolution) and ``csat`` (1 to 5), together or apart (a survey answers later),
and the agent who took the contact (the top-ranked one if not said). A CSAT becomes a ``survey_answered`` event;
``resolved`` is kept with the decision only (the contact's own ``contact_ended`` event comes from telephony).

Each answer is recorded once per decision and action (or per ``retained``/``resolved``/``csat``): the first stands,
and a repeat, the same or a different answer, changes nothing and says ``duplicates``. The events' ids derive from the
decision, the action and the type, so a retry after a failure cannot count an event twice either. An unknown or
expired decision answers 404 naming it; an action the decision did not return, or an answer of the wrong kind,
422 naming the field; Redis unavailable, 503 with Retry-After (the claim is withdrawn, so a retry records it).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from features import OnlineStoreUnavailable, Registry
from features.events import event_adapter
from service.catalog import OFFER_FEATURE
from service.contact_policy import DAY_SECONDS, answer_commands
from service.decision_records import RETAINED, RETENTION_HORIZON_DAYS, DecisionRecord, DecisionRecords
from service.decisions import DecisionService
from service.errors import BadRequest, DecisionNotFound
from service.schemas import FeedbackRequest, FeedbackResponse

_OFFER_EVENT = {"accepted": "offer_accepted", "declined": "offer_declined"}


class FeedbackService:
    """Records answers to decisions and applies what they mean."""

    def __init__(
        self, *, records: DecisionRecords, decisions: DecisionService, registry: Registry, clock: Callable[[], float]
    ) -> None:
        self.records = records
        self.decisions = decisions
        self._clock = clock
        self._events = event_adapter(registry)
        customer = registry.entity("customer")
        self._join_key = customer.join_key
        offers = customer.feature(OFFER_FEATURE).categories if OFFER_FEATURE in customer.index else None
        self._known_offers = frozenset(offers or ())

    async def record(self, request: FeedbackRequest) -> FeedbackResponse:
        """Record ``request``'s answers to its decision and apply them (see the module)."""
        record = await self.records.get(request.decision_id)
        if record is None:
            raise DecisionNotFound(request.decision_id, self.records.ttl_days)
        now = self._clock()
        answers = self._answers(record, request, now)
        recorded: list[str] = []
        duplicates: list[str] = []
        applied = 0
        for name, value in answers:
            claimed = await self.records.claim(record.decision_id, name, {**value, "at": now})
            if claimed == -1:
                raise DecisionNotFound(request.decision_id, self.records.ttl_days)
            if claimed == 0:
                duplicates.append(name)
                self.decisions.metrics.feedback(record.kind, "duplicate")
                continue
            try:
                applied += await self._apply(record, name, value, now)
            except OnlineStoreUnavailable:
                await self._withdraw(record.decision_id, name)
                raise
            recorded.append(name)
            self.decisions.metrics.feedback(record.kind, _label(name, value))
        return FeedbackResponse(
            decision_id=record.decision_id,
            kind=record.kind,
            recorded=recorded,
            duplicates=duplicates,
            events_applied=applied,
        )

    def _answers(
        self, record: DecisionRecord, request: FeedbackRequest, now: float
    ) -> list[tuple[str, dict[str, Any]]]:
        """(field, value) of each answer the request gives, checked against the decision's kind, content and age."""
        if record.kind == "recommend":
            return _recommend_answers(record, request, now)
        if request.action_id is not None:
            raise BadRequest("action_id", "an assign decision's feedback gives resolved and/or csat, not an action")
        if request.retained is not None:
            why = "an assign decision's feedback gives resolved and/or csat; retained answers a recommend decision"
            raise BadRequest("retained", why)
        agent = request.agent_id or (record.agents[0] if record.agents else None)
        answers: list[tuple[str, dict[str, Any]]] = []
        if request.resolved is not None:
            answers.append(("resolved", {"resolved": request.resolved, "agent": agent}))
        if request.csat is not None:
            answers.append(("csat", {"csat": request.csat, "agent": agent}))
        return answers

    async def _apply(self, record: DecisionRecord, name: str, value: dict[str, Any], now: float) -> int:
        """Feed the answer's events and contact-policy change; how many events were applied."""
        if name == RETAINED:
            return 0  # kept with the decision only (see the module)
        events: list[BaseModel] = []
        catalog = self.decisions.catalog  # once: a reload between two reads would mix two catalogs
        action = catalog.by_id.get(name) if record.kind == "recommend" else None
        if record.kind == "recommend":
            outcome: str = value["outcome"]
            offer = action.feeds_offer_events if action is not None else name in self._known_offers
            if offer:
                events.append(self._event(record, name, "offer_presented", action_id=name))
                if outcome in _OFFER_EVENT:
                    events.append(self._event(record, name, _OFFER_EVENT[outcome], action_id=name))
        elif name == "csat":
            events.append(self._event(record, name, "survey_answered", csat=value["csat"]))
        erased = False
        applied = 0
        if events:
            result = await self.decisions.ingest(events)
            applied, erased = result.applied, result.erased > 0
        if action is not None and not erased and action.contact_policy is not None and value["outcome"] != "ignored":
            key = self.decisions.store.contact_key(record.customer_id)
            await self.decisions.store.execute(
                answer_commands(key, name, value["outcome"], now=now, horizon_days=catalog.policy_horizon_days)
            )
        return applied

    def _event(self, record: DecisionRecord, name: str, kind: str, **fields: object) -> BaseModel:
        """A contract event about the decision's customer, with an id that is the same on every retry."""
        digest = hashlib.sha256(f"{record.decision_id}|{name}|{kind}".encode()).hexdigest()[:40]
        body = {"type": kind, "event_id": f"fb-{digest}", self._join_key: record.customer_id, **fields}
        return self._events.validate_python(body)

    async def _withdraw(self, decision_id: str, name: str) -> None:
        """Take back a claim whose effects were not applied, so a retry can record it (best effort)."""
        with contextlib.suppress(OnlineStoreUnavailable):
            await self.records.release(decision_id, name)


def _recommend_answers(
    record: DecisionRecord, request: FeedbackRequest, now: float
) -> list[tuple[str, dict[str, Any]]]:
    """A recommend decision's answers: an action it returned, and the retention once the churn horizon has ended."""
    answers: list[tuple[str, dict[str, Any]]] = []
    if request.action_id is not None and request.outcome is not None:
        if request.action_id not in record.actions:
            served = ", ".join(record.actions) or "none"
            raise BadRequest("action_id", f"{request.action_id!r} is not an action this decision returned ({served})")
        answers.append((request.action_id, {"outcome": request.outcome}))
    if request.retained is not None:
        ends = record.at + RETENTION_HORIZON_DAYS * DAY_SECONDS
        if now < ends:
            when = datetime.fromtimestamp(ends, UTC).isoformat(timespec="seconds")
            why = f"known at the end of the churn horizon, {RETENTION_HORIZON_DAYS} days after the decision: post it"
            raise BadRequest("retained", f"{why} from {when}")
        answers.append((RETAINED, {"retained": request.retained}))
    if not answers:
        raise BadRequest("action_id", "a recommend decision's feedback gives action_id and outcome, and/or retained")
    return answers


def _label(name: str, value: dict[str, Any]) -> str:
    """The metric label of an answer: its outcome, retained/churned, resolved/unresolved, or csat."""
    if "outcome" in value:
        return str(value["outcome"])
    if name == RETAINED:
        return "retained" if value["retained"] else "churned"
    if name == "resolved":
        return "resolved" if value["resolved"] else "unresolved"
    return "csat"
