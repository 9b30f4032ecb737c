"""The shadow worker: the challenger's choices on the champion's logged decisions (``nba shadow run``).

A member of consumer group ``nba-shadow`` on each decision-log stream (:mod:`service.decision_log`). For every
entry it ranks the same candidates with the challenger models, the way the service would have:

- recommend: the logged eligible actions scored by the challenger churn and propensity models and arbitrated
  with the same catalog version and live context (:func:`service.decisioning.replay`); the eligibility itself
  (channel, dates, consent, contact policy) is the champion's decision's, not re-judged;
- assign: the logged eligible agents' rows scored by the challenger resolution model (and the challenger churn
  model for the retention bonus), ordered by :func:`service.routing.order_agents` (no reasons: nobody reads them).

and appends a :class:`ShadowResult` to ``{ns}:{decision-log}:<kind>:shadow``: both rankings and their scores,
what was served and with which probability, the champion's expected reward of each candidate (the reward model of
a doubly robust estimate), and the challenger's latency. The report (``nba shadow report``) joins the outcomes
from ``POST /v1/feedback`` by ``decision_id``.

The expected reward is of the reward the report counts. Recommend's is the full one, what the models maximise:
``lifetime_value × (1 − P(churn | a offered)) + P(accept | a) × (value − cost)``, the logged expected value (a
gain over doing nothing) plus ``lifetime_value × (1 − churn_risk)``, the champion's churn risk with no action
logged beside it; assign's is P(resolution).

Killed at any moment and restarted, it loses nothing and counts nothing twice: a batch's results and the
acknowledgement of its entries are written by one script (:data:`_STORE`), atomically, so either both happened or
neither did and the entries are read again (:mod:`features.stream_group`). The hash tag keeps the log, the results
and so the script's keys in one cluster slot.

An entry the challenger cannot replay is acknowledged and counted as skipped, with why: its catalog version is
no longer the file's, its feature contract is not the challenger's, there is no challenger model for it, or (a
recommend logged in format 1) it lacks the champion's churn risk, without which its expected rewards are unknown. The
challenger is each model's ``challenger`` alias, looked up again every ``refresh_s`` seconds, so a new challenger
is judged from its registration on; results name the versions that scored them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from features import EntityBatch, Registry
from features.decision_log_keys import Kind, agent_rows_key, stream_key
from features.online_store import map_errors
from features.redis_client import OnlineClient
from features.stream_group import Counts, Entry, GroupConsumer
from service.catalog import Catalog, CatalogError, LiveContext, Situation
from service.decision_log import FIELD, AssignEntry, RecommendEntry, decode, vector
from service.decisioning import lifetime_value, replay
from service.errors import ModelsUnavailable
from service.model_holder import ModelHolder
from service.routing import order_agents
from training import untreated_rows

log = logging.getLogger("nba.shadow")
GROUP = "nba-shadow"
FORMAT = 2
"""2: recommend's expected rewards are the full reward's and results carry the lifetime value; 1: acceptance only."""

# KEYS: the decision log, the results stream; ARGV: group, results' cap, n, then n results, then the entry ids.
_STORE = b"""
local n = tonumber(ARGV[3])
for i = 1, n do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'd', ARGV[3 + i])
end
if #ARGV > 3 + n then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4 + n))
end
return n
"""


def results_key(namespace: str, kind: Kind) -> str:
    """Where the worker appends its results for ``kind``'s decisions."""
    return f"{stream_key(namespace, kind)}:shadow"


class ShadowResult(msgspec.Struct, frozen=True):
    """The champion's and the challenger's rankings of one logged decision, with what the report needs."""

    v: int
    decision_id: str
    kind: Kind
    at: float
    served: str
    served_propensity: float
    policy: list[float]
    """The serving policy's probability of serving each of ``champion``'s first candidates (the rest: 0)."""
    champion: list[str]
    """The champion's order, best first (action or agent ids)."""
    champion_scores: list[float]
    challenger: list[str]
    """The challenger's order of the same candidates."""
    challenger_scores: list[float]
    expected_reward: list[float]
    """The champion's expected reward of each candidate, in ``champion``'s order: recommend, lifetime value × (1 −
    P(churn | offered)) + P(accept) × (value − cost) (format 1: P(accept) × (value − cost)); assign, P(resolution)."""
    payoff: list[float]
    """What an accepted action earns (value − cost) in ``champion``'s order; 1 for each agent (a resolution)."""
    champion_models: dict[str, str]
    challenger_models: dict[str, str]
    challenger_us: float
    """How long the challenger took to rank this decision, microseconds."""
    lifetime_value: float | None = None
    """Recommend: the customer's lifetime value at the decision, what keeping them is worth (None: assign, or a
    format-1 result)."""


_ENCODER = msgspec.msgpack.Encoder()
_RESULT = msgspec.msgpack.Decoder(ShadowResult)


def decode_result(raw: bytes) -> ShadowResult:
    """A result as the results stream holds it."""
    return _RESULT.decode(raw)


@dataclass
class ShadowCounts(Counts):
    """What the worker did with the entries it read."""

    scored: int = 0
    skipped: int = 0
    why_skipped: dict[str, int] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts, the reasons for skipping too."""
        assert isinstance(other, ShadowCounts)
        self.entries += other.entries
        self.scored += other.scored
        self.skipped += other.skipped
        for why, n in other.why_skipped.items():
            self.why_skipped[why] = self.why_skipped.get(why, 0) + n

    def skip(self, why: str) -> None:
        """Count an entry skipped for ``why``."""
        self.skipped += 1
        self.why_skipped[why] = self.why_skipped.get(why, 0) + 1


class Skip(Exception):
    """An entry the challenger cannot replay; the message says why (it names a kind of reason, not the entry)."""


class ShadowWorker(GroupConsumer[ShadowCounts]):
    """Replays one endpoint's logged decisions with the challenger (see the module)."""

    def __init__(
        self,
        client: OnlineClient,
        *,
        kind: Kind,
        namespace: str,
        registry: Registry,
        catalog_path: Path,
        challenger: ModelHolder,
        consumer: str,
        results_max_len: int,
        group: str = GROUP,
        batch: int = 500,
        block_ms: int = 1_000,
        claim_idle_ms: int = 60_000,
        trim_every_s: float = 10.0,
        refresh_s: float = 30.0,
    ) -> None:
        super().__init__(
            client,
            ShadowCounts,
            stream=stream_key(namespace, kind),
            group=group,
            consumer=consumer,
            batch=batch,
            block_ms=block_ms,
            claim_idle_ms=claim_idle_ms,
            trim_every_s=trim_every_s,
        )
        self.kind = kind
        self.results = results_key(namespace, kind)
        self._namespace = namespace
        self._registry = registry
        self._customer = registry.entity("customer")
        self._agent = registry.entity("agent")
        self._catalog_path = catalog_path
        self._catalogs: dict[str, Catalog] = {}
        self._challenger = challenger
        self._cap = str(results_max_len).encode()
        self._refresh_s = refresh_s
        self._next_refresh = 0.0

    async def process(self, entries: Sequence[Entry]) -> ShadowCounts:
        """Replay ``entries``, then store the results and acknowledge the entries in one script."""
        counts = ShadowCounts(entries=len(entries))
        if not entries:
            return counts
        if time.monotonic() >= self._next_refresh:
            self._challenger.refresh()  # never raises: a registry outage keeps the challenger in force
            self._next_refresh = time.monotonic() + self._refresh_s
        decoded: list[RecommendEntry | AssignEntry] = []
        for _, fields_ in entries:
            if fields_ is None:  # trimmed while pending: nothing left to replay
                continue
            try:
                decoded.append(decode(fields_.get(FIELD, b"")))
            except (msgspec.DecodeError, msgspec.ValidationError):
                counts.skip("unreadable entry")
        rows = await self._agent_rows(decoded)
        results: list[bytes] = []
        for entry in decoded:
            try:
                results.append(_ENCODER.encode(self.replay(entry, rows.get(id(entry), b""))))
            except Skip as exc:
                counts.skip(str(exc))
        counts.scored = len(results)
        ids = [entry_id.encode() for entry_id, _ in entries]
        args = [self.group.encode(), self._cap, str(len(results)).encode(), *results, *ids]
        with map_errors():
            await self._client.eval(_STORE, 2, self.stream, self.results, *args)  # type: ignore[arg-type]
        return counts

    async def _agent_rows(self, entries: Sequence[RecommendEntry | AssignEntry]) -> dict[int, bytes]:
        """The agents' feature rows of each assign entry that refers to them (format 3), by the entry's ``id()``, read
        from the hours' books in one round trip: b"" for an entry some of whose rows the book no longer holds."""
        referring = [e for e in entries if isinstance(e, AssignEntry) and e.row_ids]
        if not referring:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for entry in referring:
            pipe.hmget(agent_rows_key(self._namespace, entry.rows_hour), entry.row_fields())
        with map_errors():
            found = await pipe.execute()
        return {
            id(entry): b"" if None in rows else b"".join(rows) for entry, rows in zip(referring, found, strict=True)
        }

    def replay(self, entry: RecommendEntry | AssignEntry, agent_rows: bytes = b"") -> ShadowResult:
        """The challenger's ranking of ``entry``'s candidates; :class:`Skip` when it cannot be replayed. An assign
        entry of format 3 comes with ``agent_rows`` read from its hour's book (:meth:`_agent_rows`)."""
        if entry.feature_contract != self._registry.version:
            raise Skip("logged under another feature contract")
        start = time.perf_counter()
        if isinstance(entry, RecommendEntry):
            if self.kind != "recommend":
                raise Skip("a recommend entry on the assign stream")
            return self._recommend(entry, start)
        if self.kind != "assign":
            raise Skip("an assign entry on the recommend stream")
        return self._assign(entry, agent_rows or entry.agent_rows, start)

    def _catalog(self, version: str) -> Catalog:
        """The catalog of ``version``: known, or the file's now; :class:`Skip` when the file holds another."""
        if version not in self._catalogs:
            try:
                catalog = Catalog.load(self._registry, self._catalog_path)
            except CatalogError as exc:
                log.error("the catalog cannot be loaded: %s", exc)
                raise Skip("catalog cannot be loaded") from exc
            self._catalogs[catalog.version] = catalog
        found = self._catalogs.get(version)
        if found is None:
            raise Skip("logged under another catalog version")
        return found

    def _recommend(self, entry: RecommendEntry, start: float) -> ShadowResult:
        catalog = self._catalog(entry.catalog)
        try:
            models = self._challenger.models
        except ModelsUnavailable as exc:
            raise Skip("no challenger churn and propensity models") from exc
        x = vector(entry.x)
        if len(x) != len(self._customer.features):
            raise Skip("a customer vector of another width")
        if entry.churn_risk is None:
            raise Skip("logged without the champion's churn risk (decision-log format 1)")
        unknown = [c for c in [*entry.candidates, entry.escape] if c is not None and c not in catalog.by_id]
        if unknown:
            raise Skip("an action no longer in the catalog")
        ranked = replay(
            x,
            [catalog.by_id[c] for c in entry.candidates],
            escape=catalog.by_id[entry.escape] if entry.escape is not None else None,
            catalog=catalog,
            models=models,
            schema=self._customer,
            situation=Situation(now=entry.at, context=LiveContext.model_validate(entry.context)),
        )
        payoff = [catalog.by_id[r.action].value - catalog.by_id[r.action].cost for r in entry.ranking]
        ltv = lifetime_value(x, self._customer)
        kept = ltv * (1.0 - entry.churn_risk)  # the reward of doing nothing: what the customer is expected to keep
        return _result(
            entry,
            start,
            champion=[r.action for r in entry.ranking],
            challenger=[s.action.id for s in ranked],
            challenger_scores=[s.score for s in ranked],
            expected_reward=[r.expected_value + kept for r in entry.ranking],
            payoff=payoff,
            challenger_models=models.versions,
            lifetime_value=ltv,
        )

    def _assign(self, entry: AssignEntry, agent_rows: bytes, start: float) -> ShadowResult:
        try:
            resolution = self._challenger.resolution
        except ModelsUnavailable as exc:
            raise Skip("no challenger resolution model") from exc
        x = vector(entry.x)
        width = len(self._agent.features)
        if not agent_rows:
            raise Skip("agent rows not kept")
        if len(x) != len(self._customer.features) or len(agent_rows) != 8 * width * len(entry.agents):
            raise Skip("a customer or agent vector of another width")
        rows = np.frombuffer(agent_rows, dtype=np.float64).reshape(len(entry.agents), width)
        inputs = x[self._customer.model_at]
        churn_risk = entry.churn_risk
        versions = {resolution.name: resolution.version}
        if self._challenger.loaded:
            churn = self._challenger.models.churn
            churn_risk = float(churn.predict(untreated_rows(churn, inputs))[0])
            versions |= self._challenger.models.versions
        contact = {"intent": entry.intent, "channel": entry.channel, "language": entry.language}
        bundle = resolution.bundle

        def score(agents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            pairs = bundle.pair_rows(contact, inputs, agents)
            return bundle.predict(pairs), bundle.predict_handle_time(pairs)

        n = len(entry.agents)
        batch = EntityBatch(
            self._agent,
            entry.agents,
            rows,
            known=~np.isnan(rows),
            found=np.ones(n, dtype=bool),
            ages=np.zeros((n, len(self._agent.view_names))),
        )
        order = order_agents(
            batch,
            schema=self._agent,
            skill=self._registry.intent_skills[entry.intent],
            language=entry.language,
            churn_risk=churn_risk,
            score=score,
        )
        return _result(
            entry,
            start,
            champion=[r.agent for r in entry.ranking],
            challenger=[entry.agents[i] for i in order.rows.tolist()],
            challenger_scores=order.score.tolist(),
            expected_reward=[r.p_resolution for r in entry.ranking],
            payoff=[1.0] * len(entry.ranking),
            challenger_models=versions,
        )


def _result(
    entry: RecommendEntry | AssignEntry,
    start: float,
    *,
    champion: list[str],
    challenger: list[str],
    challenger_scores: list[float],
    expected_reward: list[float],
    payoff: list[float],
    challenger_models: dict[str, str],
    lifetime_value: float | None = None,
) -> ShadowResult:
    """The result of replaying ``entry`` (begun at ``start``, ``perf_counter`` seconds): what the log says of the
    champion's decision, beside the challenger's ranking."""
    return ShadowResult(
        v=FORMAT,
        decision_id=entry.decision_id,
        kind="recommend" if isinstance(entry, RecommendEntry) else "assign",
        at=entry.at,
        served=entry.served,
        served_propensity=entry.served_propensity,
        policy=entry.policy,
        champion=champion,
        champion_scores=[r.score for r in entry.ranking],
        challenger=challenger,
        challenger_scores=challenger_scores,
        expected_reward=expected_reward,
        payoff=payoff,
        champion_models=entry.models,
        challenger_models=challenger_models,
        challenger_us=(time.perf_counter() - start) * 1e6,
        lifetime_value=lifetime_value,
    )
