"""The one path a request takes: read the store once, score with the models in force, answer.

A failed dependency never becomes a 500: Redis down means the customer is scored on defaults and the
answer says ``degraded``; no models means the catalog's priors rank the actions.

Recommend reads the customer's contact-policy state in the same round trip as the features. Each answer is
remembered (:mod:`service.decision_records`) and recommend's presentations counted
(:mod:`service.contact_policy`) by one pipelined write sent after the answer is ready and not waited for: on a
single server it travels on the read connection, so the next request's read finds it; when it fails, a warning
is logged and feedback on that decision answers 404. When the read failed (Redis unavailable) nothing is written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from features import EntityBatch, EntityVector, EventPublisher, OnlineStore, OnlineStoreUnavailable, Registry
from features.events import to_event
from service.catalog import NO_CONTEXT, Catalog, Situation
from service.catalog_source import CatalogSource
from service.contact_policy import EMPTY, PolicyState, presentation_commands
from service.decision_log import FORMAT as LOG_FORMAT
from service.decision_log import AssignEntry, DecisionLog, RankedAction, RecommendEntry, row_ids
from service.decision_log import RankedAgent as LoggedAgent
from service.decision_records import DecisionRecord, DecisionRecords
from service.decisioning import CustomerView, Recommendation, ScoredAction, recommend, recommend_by_priors
from service.errors import BadRequest, ModelsUnavailable
from service.exploration import Exploration
from service.metrics import Dependency, Endpoint, Metrics
from service.model_holder import ModelHolder
from service.routing import AgentReasons, Scorer, rank_agents
from service.schemas import (
    ActionOut,
    AgentOut,
    AssignRequest,
    AssignResponse,
    CustomerSummary,
    EventResult,
    EventsResponse,
    ExcludedOut,
    RecommendRequest,
    RecommendResponse,
)
from training import untreated_rows

log = logging.getLogger(__name__)
POLICY_UNREAD = "contact-policy state unavailable: actions under a contact policy are withheld"


def new_decision_id() -> str:
    """128 random bits as 32 hex digits, unguessable like the uuid4 hex it replaced (4 us a call, 0.8 here)."""
    return os.urandom(16).hex()


class DecisionService:
    """Answers recommend and assign from the online store, the catalog and the champion models."""

    def __init__(
        self,
        *,
        store: OnlineStore,
        publisher: EventPublisher,
        registry: Registry,
        catalogs: CatalogSource,
        holder: ModelHolder,
        metrics: Metrics,
        top_k: int,
        records: DecisionRecords,
        log: DecisionLog,
        exploration: Mapping[Endpoint, Exploration] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.registry = registry
        self.catalogs = catalogs
        self.holder = holder
        self.metrics = metrics
        self.top_k = top_k
        self.records = records
        self.log = log
        self.exploration: Mapping[Endpoint, Exploration] = exploration or {}
        self._rng = rng or random.Random()
        self._clock = clock
        self._customer = registry.entity("customer")
        self._agent = registry.entity("agent")
        self._languages = set(self._customer.feature("language").categories or ())
        self._reasons = {skill: AgentReasons(self._agent, skill) for skill in set(registry.intent_skills.values())}
        self._writes: set[asyncio.Task[None]] = set()

    @property
    def catalog(self) -> Catalog:
        """The catalog in force (a request reads it once and keeps it: a reload never mixes two)."""
        return self.catalogs.current

    async def _read(
        self,
        endpoint: Endpoint,
        customer_id: str,
        agent_ids: list[str],
        degraded: list[str],
        also: list[list[bytes]] | None = None,
    ) -> tuple[EntityVector | None, EntityBatch | None, list[object]]:
        try:
            customer, agents, extra = await self.store.read_with(customer_id, agent_ids, also or ())
        except OnlineStoreUnavailable as exc:
            self._degraded(endpoint, "online_store", str(exc), degraded)
            return None, None, []
        if customer.found:
            self.metrics.views_read(customer.view_age_s, customer.stale_views)
        return customer, agents, extra

    async def _resolve(self, request: RecommendRequest, degraded: list[str]) -> str | None:
        """The customer the request's identifier is linked to; None for nobody, or when Redis cannot say (then the
        answer is degraded). One round trip before the read: the read sends the contact-policy state's command on
        the customer's keys, which are not known until the identifier is resolved."""
        assert request.identifier is not None
        try:
            return await self.store.resolve(request.identifier.normalised)
        except OnlineStoreUnavailable as exc:
            self._degraded("recommend", "online_store", str(exc), degraded)
            return None

    def _write_later(
        self, commands: list[list[bytes]], *, logged: tuple[AssignEntry, np.ndarray] | None = None
    ) -> None:
        """Send ``commands`` in one round trip without waiting for it (see the module). With ``logged`` (an assign
        entry and its agents' rows), the last command appends that entry, and its answer goes to the log."""
        self._spawn(self._write(commands, logged))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, commands: list[list[bytes]], logged: tuple[AssignEntry, np.ndarray] | None) -> None:
        try:
            replies = await self.store.execute(commands)
            if logged is not None and (again := self.log.answered(*logged, replies[-1])):
                await self._write(again, logged)
        except OnlineStoreUnavailable as exc:
            log.warning("a decision's record and presentations were not written: %s", exc)
            if logged is not None:
                self.log.answered(*logged, None)

    async def drain(self) -> None:
        """Wait for the writes still in flight (at shutdown, before the store closes)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _degraded(self, endpoint: Endpoint, dependency: Dependency, why: str, degraded: list[str]) -> None:
        """Say why the answer is degraded, and count the fallback."""
        degraded.append(why)
        self.metrics.fallback(endpoint, dependency)

    def _explore_actions(
        self, ranked: list[ScoredAction], top_k: int, catalog: Catalog
    ) -> tuple[list[ScoredAction], int, list[float]]:
        """``ranked`` with the action exploration drew put first, its index in ``ranked`` and the probabilities of the
        draw (see
        :mod:`service.exploration`): drawn among the shown actions of the first's priority, never past an escape
        action that leads."""
        if not ranked or ranked[0].action is catalog.escape:
            return ranked, 0, [1.0]
        first = catalog.priority_of(ranked[0].action)
        same = 1
        while same < min(top_k, len(ranked)) and catalog.priority_of(ranked[same].action) == first:
            same += 1
        i, p = self._draw("recommend", [s.score for s in ranked[:same]])
        return [ranked[i], *ranked[:i], *ranked[i + 1 :]], i, p

    def _draw(self, endpoint: Endpoint, scores: list[float]) -> tuple[int, list[float]]:
        """Which of the candidates (best first) to serve, and the probabilities it was drawn with (the first,
        ``[1.0]``, unless exploring)."""
        exploration = self.exploration.get(endpoint)
        return (0, [1.0]) if exploration is None else exploration.draw(scores, self._rng)

    def _cold_vector(self) -> np.ndarray:
        return np.array([f.encode(None) for f in self._customer.features], dtype=np.float64)

    def _versions(self) -> dict[str, str]:
        return self.holder.models.versions if self.holder.loaded else {}

    def _scorer(self, request: AssignRequest, customer: EntityVector, degraded: list[str]) -> Scorer | None:
        """The resolution model's scorer for this contact and customer, or None (and why) when there is none."""
        try:
            bundle = self.holder.resolution.bundle
        except ModelsUnavailable as exc:
            why = f"{exc}; agents ranked by their measured resolution rate for the intent and their rating"
            self._degraded("assign", "models", why, degraded)
            return None
        contact = {"intent": request.intent, "channel": request.channel, "language": request.language}
        inputs = customer.values[self._customer.model_at]

        def score(agents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rows = bundle.pair_rows(contact, inputs, agents)  # every candidate in one call per model
            return bundle.predict(rows), bundle.predict_handle_time(rows)

        return score

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Ranked next-best actions for the customer in ``request``."""
        degraded: list[str] = []
        now = self._clock()
        catalog = self.catalog
        customer_id = request.customer_id
        if customer_id is None:
            customer_id = await self._resolve(request, degraded)
        customer, policy = None, None
        if customer_id is not None:
            contact_key = self.store.contact_key(customer_id)
            read_policy = [[b"HGETALL", contact_key.encode()]]
            customer, _, extra = await self._read("recommend", customer_id, [], degraded, read_policy)
            policy = PolicyState.parse(extra[0]) if customer is not None else None
        elif not degraded:
            policy = EMPTY  # an identifier linked to nobody: an unknown customer, with no presentations to count
        x = customer.values if customer is not None else self._cold_vector()
        known = customer.known if customer is not None else np.zeros(len(x), dtype=bool)
        if policy is None and catalog.policy_horizon_days:
            degraded.append(POLICY_UNREAD)
        situation = Situation(
            now=now,
            context=request.context or NO_CONTEXT,
            view_age_s=customer.view_age_s if customer is not None else {},
            policy=policy,
        )
        top_k = request.top_k or self.top_k
        view = CustomerView(None, None, None, None)
        chosen: Recommendation | None = None
        try:
            chosen = recommend(
                x,
                known=known,
                catalog=catalog,
                channel=request.channel,
                models=self.holder.models,
                schema=self._customer,
                top_k=top_k,
                situation=situation,
            )
            ranked, view = chosen.ranked, chosen.view
        except ModelsUnavailable as exc:
            self._degraded("recommend", "models", str(exc), degraded)
            ranked = recommend_by_priors(x, catalog=catalog, channel=request.channel, top_k=top_k, situation=situation)
        drawn, serving = 0, [1.0]
        if chosen is not None:
            ranked, drawn, serving = self._explore_actions(ranked, top_k, catalog)
        ranked = ranked[:top_k]
        self.metrics.decision("recommend", ranked[0].action.id if ranked else "none")
        decision_id = new_decision_id()
        versions = self._versions()
        logged: list[list[bytes]] = []
        if chosen is not None and policy is not None and customer_id is not None and self.log.enabled:
            entry = RecommendEntry(
                v=LOG_FORMAT,
                decision_id=decision_id,
                at=now,
                customer=customer_id,
                channel=request.channel,
                context={} if situation.context is NO_CONTEXT else situation.context.model_dump(exclude_defaults=True),
                x=np.ascontiguousarray(x, dtype=np.float64).tobytes(),
                candidates=[a.id for a in chosen.candidates],
                escape=None if chosen.escape is None else chosen.escape.id,
                ranking=[RankedAction(s.action.id, s.score, s.propensity, s.expected_value) for s in chosen.ranked],
                served=ranked[0].action.id,
                served_propensity=serving[drawn],
                policy=serving,
                models=versions,
                catalog=catalog.version,
                feature_contract=self.registry.version,
                churn_risk=chosen.view.churn_risk,
            )
            logged = self.log.append_commands(entry)
        if policy is not None and customer_id is not None:
            record = DecisionRecord(
                decision_id,
                "recommend",
                customer_id,
                now,
                actions=tuple(s.action.id for s in ranked),
                models=versions,
                catalog=catalog.version,
                contract=self.registry.version,
            )
            capped = [
                s.action.id
                for s in ranked
                if s.action.contact_policy is not None and s.action.contact_policy.max_presentations is not None
            ]
            self._write_later(
                self.records.write_commands(record)
                + presentation_commands(
                    contact_key, capped, now=now, horizon_days=catalog.policy_horizon_days, state=policy
                )
                + logged
            )
        return RecommendResponse(
            decision_id=decision_id,
            customer_id=customer_id,
            cold_start=customer is None or not customer.found,
            actions=[_action_out(s) for s in ranked],
            customer=CustomerSummary(
                churn_risk=view.churn_risk,
                risk_band=view.risk_band,  # type: ignore[arg-type]
                lifetime_value=view.lifetime_value,
                sentiment=view.sentiment,
            ),
            model_versions=versions,
            feature_contract=self.registry.version,
            catalog_version=catalog.version,
            degraded=bool(degraded),
            degraded_reasons=degraded,
        )

    async def assign(self, request: AssignRequest) -> AssignResponse:
        """Candidate agents for the contact in ``request``, best first."""
        if request.language not in self._languages:
            raise BadRequest("language", f"must be one of {sorted(self._languages)}, got {request.language!r}")
        degraded: list[str] = []
        agent_ids = request.agent_ids
        if agent_ids is None:
            assert request.queue is not None
            try:
                agent_ids = await self.store.queue_members(request.queue)
            except OnlineStoreUnavailable as exc:
                self._degraded("assign", "online_store", str(exc), degraded)
                agent_ids = []
            if not agent_ids and not degraded:
                raise BadRequest("queue", f"queue {request.queue!r} has no agents")
        agent_ids = list(dict.fromkeys(agent_ids))
        now = self._clock()
        decision_id = new_decision_id()
        logged: list[list[bytes]] = []
        assign: tuple[AssignEntry, np.ndarray] | None = None
        customer: EntityVector | None = None
        agents: EntityBatch | None = None
        if not degraded:  # a queue Redis did not answer for: a second read would spend the time budget twice
            customer, agents, _ = await self._read("assign", request.customer_id, agent_ids, degraded)
        versions = self.holder.versions  # the last await is behind: the models cannot change before the answer
        churn_risk = None
        if customer is not None:
            try:
                churn = self.holder.models.churn
                churn_risk = float(churn.predict(untreated_rows(churn, customer.values[self._customer.model_at]))[0])
            except ModelsUnavailable as exc:
                self._degraded("assign", "models", str(exc), degraded)
        ranked_out: list[AgentOut]
        excluded_out: list[ExcludedOut] = []
        if customer is None or agents is None:
            unavailable = ["fallback: online store unavailable"]
            ranked_out = [AgentOut(a, 0.0, 0.0, None, list(unavailable)) for a in agent_ids]
            served = agent_ids
            ranked_by: Literal["resolution_model", "measured_rate", "order_given"] = "order_given"
        else:
            scorer = self._scorer(request, customer, degraded)
            skill = self.registry.intent_skills[request.intent]
            ranking = rank_agents(
                agents,
                schema=self._agent,
                skill=skill,
                language=request.language,
                churn_risk=churn_risk,
                score=scorer,
                reasons=self._reasons[skill],
            )
            ranked = ranking.agents
            if scorer is not None and ranked:
                champion = ranked
                drawn, serving = self._draw("assign", [r.score for r in ranked])
                ranked = [ranked[drawn], *ranked[:drawn], *ranked[drawn + 1 :]]
                if self.log.enabled:
                    rows = np.ascontiguousarray(agents.values[ranking.rows], dtype=np.float64)
                    entry = AssignEntry(
                        v=LOG_FORMAT,
                        decision_id=decision_id,
                        at=now,
                        customer=request.customer_id,
                        intent=request.intent,
                        channel=request.channel,
                        language=request.language,
                        x=np.ascontiguousarray(customer.values, dtype=np.float64).tobytes(),
                        agents=[r.agent_id for r in champion],
                        churn_risk=churn_risk,
                        ranking=[
                            LoggedAgent(r.agent_id, r.score, r.p_resolution, r.expected_handle_time_s) for r in champion
                        ],
                        served=ranked[0].agent_id,
                        served_propensity=serving[drawn],
                        policy=serving,
                        models=versions,
                        feature_contract=self.registry.version,
                        row_ids=row_ids(rows).tobytes(),
                    )
                    logged, assign = self.log.append_commands(entry, rows), (entry, rows)
            ranked_out = [
                AgentOut(r.agent_id, r.score, r.p_resolution, r.expected_handle_time_s, r.reasons) for r in ranked
            ]
            served = [r.agent_id for r in ranked]
            excluded_out = [ExcludedOut(e.agent_id, e.reason) for e in ranking.excluded]
            ranked_by = "measured_rate" if scorer is None else "resolution_model"
        self.metrics.decision("assign", ranked_by)
        if customer is not None:
            record = DecisionRecord(
                decision_id,
                "assign",
                request.customer_id,
                now,
                agents=tuple(served),
                intent=request.intent,
                models=versions,
                contract=self.registry.version,
            )
            self._write_later(self.records.write_commands(record) + logged, logged=assign)
        return AssignResponse(
            decision_id=decision_id,
            customer_id=request.customer_id,
            agents=ranked_out,
            excluded=excluded_out,
            churn_risk=churn_risk,
            ranked_by=ranked_by,
            model_versions=versions,
            degraded=bool(degraded),
            degraded_reasons=degraded,
        )

    async def ingest(self, events: list[BaseModel]) -> EventsResponse:
        """Apply a validated batch to the online state, each event once, in one round trip per entity kind.

        Then hand the accepted events (applied, and duplicates too, in case an earlier try applied but never
        got this far) to the events stream, whose consumer archives them to the offline store: one more round
        trip, and no parquet write, before the answer. Redis being down is not degraded here: the producer must
        retry, so the error reaches the client as 503 with Retry-After, and the retry is safe.
        """
        by_entity: dict[str, list[int]] = {}
        parsed = [to_event(e, self.registry) for e in events]
        for i, (entity, _) in enumerate(parsed):
            by_entity.setdefault(entity, []).append(i)
        statuses: list[str] = [""] * len(parsed)
        for entity, positions in by_entity.items():
            outcome = await self.store.apply_events(entity, [parsed[i][1] for i in positions])
            for i, status in zip(positions, outcome, strict=True):
                statuses[i] = status
        kept = [p for p, s in zip(parsed, statuses, strict=True) if s in ("applied", "duplicate")]
        await self.publisher.publish_events(kept)
        results = [
            EventResult(event_id=event.event_id, status=status)  # type: ignore[arg-type]
            for (_, event), status in zip(parsed, statuses, strict=True)
        ]
        return EventsResponse(
            applied=statuses.count("applied"),
            duplicates=statuses.count("duplicate"),
            too_old=statuses.count("too_old"),
            erased=statuses.count("erased"),
            results=results,
        )


def _action_out(s: ScoredAction) -> ActionOut:
    return ActionOut(
        action_id=s.action.id,
        title=s.action.title,
        script=s.action.script,
        group=s.action.group,
        score=s.score,
        context_weight=s.context_weight,
        propensity=s.propensity,
        expected_value=s.expected_value,
        churn_if_offered=s.churn_if_offered,
        reasons=s.reasons,
    )
