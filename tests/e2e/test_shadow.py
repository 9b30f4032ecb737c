"""Shadow mode end to end: decisions logged through HTTP, replayed by the shadow worker against real Redis and MLflow.

The strongest check of the replay: a worker whose "challenger" is the champion itself must rank every logged
decision exactly as the service did, with the same scores.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import redis
import redis.asyncio
from click.testing import CliRunner

from features import Registry
from features.decision_log_keys import Kind, agent_rows_key, stream_key
from service.catalog import Catalog, default_path
from service.cli import main
from service.decision_log import FIELD, AssignEntry, RecommendEntry, decode, encode
from service.model_holder import ModelHolder
from service.shadow import GROUP, ShadowCounts, ShadowResult, ShadowWorker, decode_result, results_key
from tests.conftest import Served, age_decision, serve, settings_for
from training import CHALLENGER, CHAMPION, ModelRegistry

EPSILON = 0.5
AMONG = 3


@pytest.fixture(scope="module")
def exploring(data_dir: Path, redis_url: str, champions: dict[str, str]) -> Iterator[Served]:
    """The API exploring both endpoints (epsilon 0.5 among the best 3), logging every decision."""
    settings = settings_for(data_dir, redis_url)
    service = settings.service.model_copy(
        update={
            "explore_recommend": f"epsilon:{EPSILON}",
            "explore_assign": f"epsilon:{EPSILON}",
            "explore_among": AMONG,
        }
    )
    with serve(settings.model_copy(update={"service": service})) as served:
        yield served


@pytest.fixture
def client(exploring: Served, materialized: None) -> Iterator[httpx.Client]:
    with exploring.client() as c:
        yield c


def _customers(world: Path, n: int) -> list[str]:
    ids = pq.read_table(world / "customer_snapshots.parquet", columns=["customer_id"]).column("customer_id")
    return sorted(set(ids.to_pylist()))[:n]


def _agents(world: Path) -> list[str]:
    ids = pq.read_table(world / "agent_snapshots.parquet", columns=["agent_id"]).column("agent_id")
    return sorted(set(ids.to_pylist()))


def _decide(
    client: httpx.Client, world: Path, recommends: int, assigns: int, redis_client: redis.Redis
) -> dict[str, dict[str, object]]:
    """Answers by decision id, for ``recommends`` recommend and ``assigns`` assign calls, once all are logged (the
    log travels in a write sent after each answer, so the last ones may reach Redis a moment later)."""
    answers: dict[str, dict[str, object]] = {}
    for customer in _customers(world, recommends):
        answer = client.post("/v1/recommend", json={"customer_id": customer, "channel": "voice"})
        assert answer.status_code == 200, answer.text
        answers[answer.json()["decision_id"]] = answer.json()
    agents = _agents(world)
    for customer in _customers(world, assigns):
        body = {"customer_id": customer, "intent": "billing", "channel": "voice", "language": "en", "agent_ids": agents}
        answer = client.post("/v1/assign", json=body)
        assert answer.status_code == 200, answer.text
        answers[answer.json()["decision_id"]] = answer.json()
    deadline = time.monotonic() + 10
    logged = 0
    while time.monotonic() < deadline:
        logged = sum(int(redis_client.xlen(stream_key("nba", kind))) for kind in ("recommend", "assign"))
        if logged >= len(answers):
            break
        time.sleep(0.02)
    assert logged == len(answers), f"{logged} of {len(answers)} answers logged"
    return answers


def _logged(redis_client: redis.Redis, kind: Kind) -> list[RecommendEntry | AssignEntry]:
    return [decode(fields[FIELD]) for _, fields in redis_client.xrange(stream_key("nba", kind))]


def _results(redis_client: redis.Redis, kind: Kind) -> list[ShadowResult]:
    return [decode_result(fields[FIELD]) for _, fields in redis_client.xrange(results_key("nba", kind))]


def _replay(
    redis_url: str,
    model_registry: ModelRegistry,
    kind: Kind,
    alias: str,
    *,
    consumer: str = "w1",
    claim_ms: int = 60_000,
) -> ShadowCounts:
    """Run one worker until it has read everything on ``kind``'s stream (a short block ends it)."""
    registry = Registry.load()
    holder = ModelHolder(model_registry, registry.version, alias=alias)
    holder.load()

    async def main() -> ShadowCounts:
        client = redis.asyncio.Redis.from_url(redis_url)
        worker = ShadowWorker(
            client,
            kind=kind,
            namespace="nba",
            registry=registry,
            catalog_path=default_path(),
            challenger=holder,
            consumer=consumer,
            results_max_len=10_000,
            batch=7,
            block_ms=50,
            claim_idle_ms=claim_ms,
        )
        total = ShadowCounts()
        try:
            while True:
                counts = await worker.poll()
                total.add(counts)
                if not counts.entries:
                    return total
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_every_answer_is_logged_with_what_was_served_and_its_probability(
    client: httpx.Client, redis_client: redis.Redis, world: Path
) -> None:
    answers = _decide(client, world, recommends=40, assigns=12, redis_client=redis_client)
    entries = _logged(redis_client, "recommend") + _logged(redis_client, "assign")
    assert sorted(e.decision_id for e in entries) == sorted(answers)
    explored = 0
    for entry in entries:
        answer = answers[entry.decision_id]
        if isinstance(entry, RecommendEntry):
            served, champion = answer["actions"][0]["action_id"], [r.action for r in entry.ranking]  # type: ignore[index]
            assert set(entry.candidates) <= set(champion)
            assert entry.churn_risk == answer["customer"]["churn_risk"], "the reward model's churn risk, logged"  # type: ignore[index]
        else:
            served, champion = answer["agents"][0]["agent_id"], [r.agent for r in entry.ranking]  # type: ignore[index]
            assert entry.agent_rows == b"", "format 3: the rows are in the hour's book"
            assert len(entry.row_ids) == 8 * len(entry.agents)
            book = agent_rows_key("nba", entry.rows_hour)
            found = redis_client.hmget(book, entry.row_fields())
            assert None not in found, "every row the entry names is in the book"
            assert {len(row) for row in found} == {8 * len(Registry.load().entity("agent").features)}  # type: ignore[arg-type]
        assert entry.served == served, "the log says what the answer put first"
        drawn = champion.index(served)
        n = len(entry.policy)
        assert 1 <= n <= AMONG
        assert drawn < n
        assert sum(entry.policy) == pytest.approx(1.0)
        if n > 1:  # epsilon-greedy among n: the best 1 - e + e/n, each other e/n
            assert entry.policy == pytest.approx([1 - EPSILON + EPSILON / n] + [EPSILON / n] * (n - 1))
        assert entry.served_propensity == entry.policy[drawn]
        explored += drawn > 0
    # epsilon 0.5 among 3: about a third of the decisions serve another than the best; never none of 52.
    assert 0 < explored < len(entries)
    # The 12 assigns named the same eligible agents, whose rows did not change: each row is in its book once.
    assigns = [e for e in entries if isinstance(e, AssignEntry)]
    for hour in {e.rows_hour for e in assigns}:
        eligible = {a for e in assigns if e.rows_hour == hour for a in e.agents}
        assert int(redis_client.hlen(agent_rows_key("nba", hour))) == 1 + len(eligible)


def test_a_challenger_that_is_the_champion_ranks_every_decision_as_the_service_did(
    client: httpx.Client, redis_client: redis.Redis, world: Path, redis_url: str, model_registry: ModelRegistry
) -> None:
    answers = _decide(client, world, recommends=25, assigns=6, redis_client=redis_client)
    for kind in ("recommend", "assign"):
        counts = _replay(redis_url, model_registry, kind, CHAMPION)  # type: ignore[arg-type]
        results = _results(redis_client, kind)  # type: ignore[arg-type]
        assert counts.skipped == 0, counts.why_skipped
        assert counts.scored == len(results) == len(_logged(redis_client, kind))  # type: ignore[arg-type]
        for r in results:
            assert r.challenger == r.champion, f"{kind} {r.decision_id}: replayed in another order"
            assert r.challenger_scores == pytest.approx(r.champion_scores, rel=1e-9, abs=1e-12)
            assert r.challenger_models == r.champion_models
    # Recommend's reward model is the full reward, from the numbers the answer showed: lifetime value × (1 −
    # P(churn | offered)) + P(accept) × (value − cost); no_action's is what the customer is expected to keep.
    catalog = Catalog.load(Registry.load(), default_path())
    checked = 0
    for r in _results(redis_client, "recommend"):
        customer, shown = answers[r.decision_id]["customer"], answers[r.decision_id]["actions"]
        ltv = customer["lifetime_value"]  # type: ignore[index]
        assert r.lifetime_value == ltv
        for a in shown:  # type: ignore[attr-defined]
            if a["churn_if_offered"] is None:  # the escape action: the models did not score it
                continue
            payoff = catalog.by_id[a["action_id"]].value - catalog.by_id[a["action_id"]].cost
            full = ltv * (1 - a["churn_if_offered"]) + a["propensity"] * payoff
            assert r.expected_reward[r.champion.index(a["action_id"])] == pytest.approx(full, rel=1e-9, abs=1e-9)
            checked += 1
    assert checked >= 25


def test_the_registered_challenger_is_replayed_and_named(
    client: httpx.Client, redis_client: redis.Redis, world: Path, redis_url: str, model_registry: ModelRegistry
) -> None:
    _decide(client, world, recommends=20, assigns=5, redis_client=redis_client)
    for kind in ("recommend", "assign"):
        _replay(redis_url, model_registry, kind, CHALLENGER)  # type: ignore[arg-type]
        results = _results(redis_client, kind)  # type: ignore[arg-type]
        assert len(results) == len(_logged(redis_client, kind))  # type: ignore[arg-type]
        for r in results:
            assert sorted(r.challenger) == sorted(r.champion), "the same candidates, maybe in another order"
            assert r.challenger_models != r.champion_models, "the demo's challenger is another version"
            assert len(r.expected_reward) == len(r.payoff) == len(r.champion)
            assert r.challenger_us > 0


def test_a_worker_killed_after_reading_loses_nothing_and_counts_nothing_twice(
    client: httpx.Client, redis_client: redis.Redis, world: Path, redis_url: str, model_registry: ModelRegistry
) -> None:
    _decide(client, world, recommends=30, assigns=0, redis_client=redis_client)
    stream = stream_key("nba", "recommend")
    redis_client.xgroup_create(stream, GROUP, id="0")
    # A worker that read 10 decisions and died before storing anything: they are pending to it, unacknowledged.
    read = redis_client.xreadgroup(GROUP, "w1", {stream: ">"}, count=10)
    assert len(read[0][1]) == 10
    # Another worker takes the rest, and claims w1's once they sat idle; w1 restarted then finds nothing left.
    other = _replay(redis_url, model_registry, "recommend", CHAMPION, consumer="w2", claim_ms=1)
    again = _replay(redis_url, model_registry, "recommend", CHAMPION, consumer="w1")
    assert other.entries == 30
    assert again.entries == 0
    ids = [r.decision_id for r in _results(redis_client, "recommend")]
    assert len(ids) == len(set(ids)) == 30
    assert redis_client.xpending(stream, GROUP)["pending"] == 0


def test_a_restarted_worker_finishes_what_it_had_read(
    client: httpx.Client, redis_client: redis.Redis, world: Path, redis_url: str, model_registry: ModelRegistry
) -> None:
    _decide(client, world, recommends=15, assigns=0, redis_client=redis_client)
    stream = stream_key("nba", "recommend")
    redis_client.xgroup_create(stream, GROUP, id="0")
    redis_client.xreadgroup(GROUP, "w1", {stream: ">"}, count=6)
    counts = _replay(redis_url, model_registry, "recommend", CHAMPION, consumer="w1")
    assert counts.entries == 15
    ids = [r.decision_id for r in _results(redis_client, "recommend")]
    assert len(ids) == len(set(ids)) == 15


def test_an_entry_of_another_catalog_is_skipped_and_acknowledged(
    client: httpx.Client, redis_client: redis.Redis, world: Path, redis_url: str, model_registry: ModelRegistry
) -> None:
    _decide(client, world, recommends=3, assigns=0, redis_client=redis_client)
    stream = stream_key("nba", "recommend")
    (_, fields), *_ = redis_client.xrange(stream)
    entry = decode(fields[FIELD])
    assert isinstance(entry, RecommendEntry)
    stale = RecommendEntry(**{**{f: getattr(entry, f) for f in entry.__struct_fields__}, "catalog": "000000000000"})
    redis_client.xadd(stream, {FIELD: encode(stale)})
    redis_client.xadd(stream, {FIELD: b"not msgpack"})
    old = RecommendEntry(**{**{f: getattr(entry, f) for f in entry.__struct_fields__}, "v": 1, "churn_risk": None})
    redis_client.xadd(stream, {FIELD: encode(old)})
    counts = _replay(redis_url, model_registry, "recommend", CHAMPION)
    assert (counts.entries, counts.scored, counts.skipped) == (6, 3, 3)
    assert counts.why_skipped == {
        "logged under another catalog version": 1,
        "unreadable entry": 1,
        "logged without the champion's churn risk (decision-log format 1)": 1,
    }
    assert redis_client.xpending(stream, GROUP)["pending"] == 0


def test_an_assign_entry_carrying_its_rows_is_replayed_and_one_whose_book_was_lost_is_skipped(
    client: httpx.Client, redis_client: redis.Redis, world: Path, redis_url: str, model_registry: ModelRegistry
) -> None:
    """Entries logged before format 3 carry their agents' rows; a format-3 entry whose hour's book is gone (expired
    before the worker came, or lost) cannot be replayed, and says so."""
    _decide(client, world, recommends=0, assigns=2, redis_client=redis_client)
    stream = stream_key("nba", "assign")
    (_, fields), *_ = redis_client.xrange(stream)
    entry = decode(fields[FIELD])
    assert isinstance(entry, AssignEntry)
    rows = b"".join(redis_client.hmget(agent_rows_key("nba", entry.rows_hour), entry.row_fields()))  # type: ignore[arg-type]
    as_before = {f: getattr(entry, f) for f in entry.__struct_fields__}
    redis_client.xadd(
        stream,
        {FIELD: encode(AssignEntry(**{**as_before, "v": 2, "row_ids": b"", "agent_rows": rows}))},
    )
    forty_days_before = entry.at - 40 * 86_400  # an hour whose book has expired
    redis_client.xadd(stream, {FIELD: encode(AssignEntry(**{**as_before, "at": forty_days_before}))})
    counts = _replay(redis_url, model_registry, "assign", CHAMPION)
    assert (counts.entries, counts.scored, counts.skipped) == (4, 3, 1)
    assert counts.why_skipped == {"agent rows not kept": 1}
    results = _results(redis_client, "assign")
    assert [r.decision_id for r in results].count(entry.decision_id) == 2
    for r in results:
        assert r.challenger == r.champion, "the champion replayed from either format ranks as it did"


def test_the_report_judges_the_challenger_from_the_feedback(
    client: httpx.Client, redis_client: redis.Redis, world: Path, redis_url: str, data_dir: Path, tmp_path: Path
) -> None:
    """Through the commands a person types: nba shadow run, then nba shadow report, after feedback over HTTP: an
    answer to the served action for every recommend, whether the customer stayed for most of them."""
    answers = _decide(client, world, recommends=45, assigns=12, redis_client=redis_client)
    catalog = Catalog.load(Registry.load(), default_path())
    rewards: dict[str, float] = {}  # the full reward of each recommend whose retention was posted
    offers: list[float] = []  # the acceptance-only reward of every recommend
    resolved = 0
    for i, (decision_id, answer) in enumerate(answers.items()):
        if "actions" in answer:
            first = answer["actions"][0]["action_id"]  # type: ignore[index]
            accepted = i % 3 == 0
            body: dict[str, object] = {
                "decision_id": decision_id,
                "action_id": first,
                "outcome": "accepted" if accepted else "declined",
            }
            payoff = (catalog.by_id[first].value - catalog.by_id[first].cost) * accepted
            offers.append(payoff)
            if i % 9 != 4:  # five decisions have no retention answer yet: their reward is not known
                age_decision(redis_client, "nba", decision_id, days=30)  # the answer waits for the churn horizon
                retained = i % 4 != 1
                body["retained"] = retained
                rewards[decision_id] = answer["customer"]["lifetime_value"] * retained + payoff  # type: ignore[index]
        else:
            body = {"decision_id": decision_id, "resolved": i % 2 == 0}
            resolved += i % 2 == 0
        assert client.post("/v1/feedback", json=body).status_code == 200
    assert len(rewards) == 40
    env = {
        "REDIS_URL": redis_url,
        "NBA_DATA_DIR": str(data_dir),
        "NBA_MLFLOW_EXPERIMENT": "nba-tests",
        "NBA_MLFLOW_MODEL_PREFIX": "nba",
        "MLFLOW_TRACKING_URI": None,
    }
    for kind, n in (("recommend", 45), ("assign", 12)):
        ran = CliRunner().invoke(main, ["shadow", "run", "--kind", kind, "--max-decisions", str(n)], env=env)
        assert ran.exit_code == 0, ran.output
        assert f"{kind}: {n} decisions read, {n} scored by the challenger, 0 skipped" in ran.stdout
    out = tmp_path / "report"
    made = CliRunner().invoke(main, ["shadow", "report", "--format", "json", "--out", str(out)], env=env)
    assert made.exit_code == 0, made.output
    report = json.loads(made.stdout)
    assert set(report) == {"recommend", "assign"}
    recommend, assign = report["recommend"], report["assign"]
    assert recommend["reward"].startswith("lifetime value × retained 30 days after the decision + (value − cost)")
    assert recommend["similarity"]["decisions"] == 45
    assert (recommend["outcomes"], recommend["awaiting"]) == (40, 5)
    assert recommend["logged_value"] == pytest.approx(sum(rewards.values()) / 40), "the mean reward posted"
    # The champion's IPS value from the log's propensities: each decision that served the champion's pick counts
    # its reward over the probability it was served with, the rest 0.
    logged = {e.decision_id: e for e in _logged(redis_client, "recommend")}
    ips = sum(
        reward / logged[d].served_propensity
        for d, reward in rewards.items()
        if logged[d].served == logged[d].ranking[0].action  # type: ignore[union-attr]
    )
    assert {e["estimator"]: e["value"] for e in recommend["champion"]}["IPS"] == pytest.approx(ips / 40)
    assert (recommend["acceptance_outcomes"], recommend["acceptance_value"]) == (45, pytest.approx(sum(offers) / 45))
    assert assign["outcomes"] == 12
    assert assign["logged_value"] == pytest.approx(resolved / 12), "assign's reward is the resolution rate"
    assert 0 <= recommend["similarity"]["top_agreement"] <= 1
    assert [e["estimator"] for e in recommend["champion"]] == ["IPS", "SNIPS", "DR"]
    for e in recommend["champion"] + assign["challenger"]:
        assert e["low"] is None or e["low"] <= e["value"] <= e["high"]
    # 40 outcomes are too few to decide anything: the rule says so, and why.
    assert recommend["verdict"]["decision"] == "collect more data"
    assert recommend["verdict"]["rule"].startswith("rule 1: 40 decisions with an outcome")
    assert recommend["exploration_cost"] >= 0
    assert {p.name for p in out.iterdir()} == {"report.json", "report.html", "recommend.png", "assign.png"}
    assert "known for 40 of 45 decisions" in (out / "report.html").read_text()
    assert "logged to MLflow" in made.stderr
