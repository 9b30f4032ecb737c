"""The decision log's append script on a real server: the entry, its customer's set of entries, the retention."""

from __future__ import annotations

import time

import msgspec
import redis

from features.decision_log_keys import customer_entries_key, stream_key
from service.decision_log import FIELD, FORMAT, DecisionLog, RankedAgent, RecommendEntry, decode, encode
from service.decision_log import AssignEntry as LoggedAssign

DAY_S = 86_400.0


def _recommend(customer: str, at: float) -> RecommendEntry:
    return RecommendEntry(
        v=1,
        decision_id=f"d-{customer}-{at}",
        at=at,
        customer=customer,
        channel="voice",
        context={},
        x=b"\x00" * 16,
        candidates=["no_action"],
        escape=None,
        ranking=[],
        served="no_action",
        served_propensity=1.0,
        policy=[1.0],
        models={},
        catalog="c",
        feature_contract="f",
    )


def _run(client: redis.Redis, commands: list[list[bytes]]) -> list[object]:
    return [client.execute_command(*command) for command in commands]


def test_an_entry_is_listed_under_its_customer_for_as_long_as_the_log_keeps_it(redis_client: redis.Redis) -> None:
    log = DecisionLog("nba", max_len=1_000, retention_days=2.0)
    now = time.time()
    first = _run(redis_client, log.append_commands(_recommend("C1", now)))[0]
    second = _run(redis_client, log.append_commands(_recommend("C1", now)))[0]
    _run(redis_client, log.append_commands(_recommend("C2", now)))
    stream = stream_key("nba", "recommend")
    entries = redis_client.xrange(stream)
    assert [decode(f[FIELD]).customer for _, f in entries] == ["C1", "C1", "C2"]  # type: ignore[union-attr]
    mine = customer_entries_key("nba", "recommend", "C1")
    assert redis_client.smembers(mine) == {first, second}
    ttl_ms = redis_client.pttl(mine)
    assert 2 * DAY_S * 1000 - 60_000 < ttl_ms <= 2 * DAY_S * 1000  # type: ignore[operator]


def test_entries_older_than_the_retention_are_trimmed_at_the_next_append(redis_client: redis.Redis) -> None:
    log = DecisionLog("nba", max_len=1_000, retention_days=1.0)
    stream = stream_key("nba", "recommend")
    now_ms = int(time.time() * 1000)
    # Entries the server stamped 3 days and 1 hour ago (explicit ids: a stream id is the server's time of the append).
    old, recent = now_ms - 3 * 86_400_000, now_ms - 3_600_000
    redis_client.xadd(stream, {FIELD: encode(_recommend("C1", old / 1000))}, id=f"{old}-0")
    redis_client.xadd(stream, {FIELD: encode(_recommend("C1", recent / 1000))}, id=f"{recent}-0")
    _run(redis_client, log.append_commands(_recommend("C2", now_ms / 1000)))
    kept = [i.decode() for i, _ in redis_client.xrange(stream)]  # type: ignore[union-attr]
    assert len(kept) == 2, "the 3-day-old entry is gone"
    assert kept[0] == f"{recent}-0", "the 1-hour-old one stays"


def test_the_log_off_appends_nothing() -> None:
    log = DecisionLog("nba", max_len=0, retention_days=30.0)
    assert not log.enabled
    assert log.append_commands(_recommend("C1", time.time())) == []


def test_assign_entries_go_to_the_assign_stream_and_set(redis_client: redis.Redis) -> None:
    log = DecisionLog("nba", max_len=1_000, retention_days=30.0)
    entry = LoggedAssign(
        v=1,
        decision_id="a1",
        at=time.time(),
        customer="C9",
        intent="billing",
        channel="voice",
        language="en",
        x=b"",
        agents=["A1"],
        agent_rows=b"",
        churn_risk=None,
        ranking=[RankedAgent("A1", 1.0, 0.5, None)],
        served="A1",
        served_propensity=1.0,
        policy=[1.0],
        models={},
        feature_contract="f",
    )
    (entry_id,) = _run(redis_client, log.append_commands(entry))
    assert [i for i, _ in redis_client.xrange(stream_key("nba", "assign"))] == [entry_id]  # type: ignore[union-attr]
    assert redis_client.smembers(customer_entries_key("nba", "assign", "C9")) == {entry_id}
    assert redis_client.xlen(stream_key("nba", "recommend")) == 0


def test_a_recommend_entry_of_format_1_still_reads_without_its_churn_risk() -> None:
    """Format 2 added the champion's churn risk; an entry logged before it (no such key at all) decodes with None,
    which the shadow worker skips, saying why."""
    new = RecommendEntry(**{**msgspec.structs.asdict(_recommend("C1", 1.0)), "v": FORMAT, "churn_risk": 0.12})
    assert decode(encode(new)).churn_risk == 0.12
    old = msgspec.msgpack.decode(encode(new))
    del old["churn_risk"]
    read = decode(msgspec.msgpack.encode({**old, "v": 1}))
    assert isinstance(read, RecommendEntry)
    assert (read.v, read.churn_risk, read.customer) == (1, None, "C1")
