"""The decision log's append script on a real server: the entry, its customer's set of entries, the retention."""

from __future__ import annotations

import time

import msgspec
import numpy as np
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from features.decision_log_keys import agent_rows_key, customer_entries_key, stream_key
from service.decision_log import (
    FIELD,
    FORMAT,
    HOUR_S,
    DecisionLog,
    RankedAgent,
    RecommendEntry,
    decode,
    encode,
    row_ids,
)
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


def _assign(customer: str, rows: np.ndarray, at: float | None = None) -> LoggedAssign:
    at = time.time() if at is None else at
    agents = [f"A{i}" for i in range(len(rows))]
    return LoggedAssign(
        v=FORMAT,
        decision_id=f"a-{customer}-{time.time_ns()}",
        at=at,
        customer=customer,
        intent="billing",
        channel="voice",
        language="en",
        x=b"",
        agents=agents,
        churn_risk=None,
        ranking=[RankedAgent(a, 1.0, 0.5, None) for a in agents],
        served=agents[0],
        served_propensity=1.0,
        policy=[1.0],
        models={},
        feature_contract="f",
        row_ids=row_ids(rows).tobytes(),
    )


def _append(client: redis.Redis, log: DecisionLog, entry: LoggedAssign, rows: np.ndarray) -> tuple[object, int]:
    """Append ``entry`` as the service does (sending it again when the script asks); its reply and how many rows its
    commands carried."""
    commands, sent = log.append_commands(entry, rows), 0
    while commands:
        sent += len(commands[0][-5]) // 8
        reply = client.execute_command(*commands[0])
        commands = log.answered(entry, rows, reply)
    return reply, sent


def _book(client: redis.Redis, entry: LoggedAssign, width: int) -> np.ndarray:
    """``entry``'s agent rows as its hour's book holds them."""
    found = client.hmget(agent_rows_key("nba", entry.rows_hour), entry.row_fields())
    assert None not in found, "a row the entry names is not in the book"
    return np.frombuffer(b"".join(found), dtype=np.float64).reshape(-1, width)  # type: ignore[arg-type]


def test_assign_entries_go_to_the_assign_stream_and_set_and_their_rows_to_the_book(redis_client: redis.Redis) -> None:
    log = DecisionLog("nba", max_len=1_000, retention_days=30.0)
    rows = np.array([[1.0, 0.5, np.nan], [2.0, 0.25, 7.0]])
    entry = _assign("C9", rows)
    (entry_id, epoch), sent = _append(redis_client, log, entry, rows)
    assert sent == 2
    assert [i for i, _ in redis_client.xrange(stream_key("nba", "assign"))] == [entry_id]  # type: ignore[union-attr]
    assert redis_client.smembers(customer_entries_key("nba", "assign", "C9")) == {entry_id}
    assert redis_client.xlen(stream_key("nba", "recommend")) == 0
    assert _book(redis_client, entry, 3).tobytes() == rows.tobytes(), "the rows to the bit, NaN too"
    assert epoch == entry_id, "the book's epoch is the entry that made it"
    ttl_ms = redis_client.pttl(agent_rows_key("nba", entry.rows_hour))
    assert 31 * DAY_S * 1000 - 60_000 < ttl_ms <= 31 * DAY_S * 1000, "a day past the retention"  # type: ignore[operator]


def test_a_row_goes_to_the_hour_s_book_once_and_entries_name_it(redis_client: redis.Redis) -> None:
    log = DecisionLog("nba", max_len=1_000, retention_days=30.0)
    first, changed = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 2.0], [3.0, 4.5]])
    assert _append(redis_client, log, _assign("C1", first), first)[1] == 2
    assert _append(redis_client, log, _assign("C2", first), first)[1] == 0
    again = _assign("C3", changed)
    assert _append(redis_client, log, again, changed)[1] == 1, "only the agent whose row changed"
    assert _book(redis_client, again, 2).tobytes() == changed.tobytes()
    assert redis_client.hlen(agent_rows_key("nba", again.rows_hour)) == 1 + 3  # the epoch and three distinct rows
    next_hour = _assign("C4", first, at=time.time() + HOUR_S)
    assert _append(redis_client, log, next_hour, first)[1] == 2, "each hour's book holds its own rows"
    assert _book(redis_client, next_hour, 2).tobytes() == first.tobytes()


def test_a_book_lost_under_the_service_gets_every_row_again(redis_client: redis.Redis) -> None:
    """A flush, or a restart without persistence, takes the book: the next entry that names its rows without
    sending them is refused by the script and sent again whole, so no logged entry names a row the book lacks."""
    log = DecisionLog("nba", max_len=1_000, retention_days=30.0)
    rows = np.array([[1.0, 2.0], [3.0, 4.0]])
    _append(redis_client, log, _assign("C1", rows), rows)
    redis_client.flushdb()
    entry = _assign("C2", rows)
    (entry_id, _), sent = _append(redis_client, log, entry, rows)
    assert sent == 2
    assert [i for i, _ in redis_client.xrange(stream_key("nba", "assign"))] == [entry_id], "appended once"  # type: ignore[union-attr]
    assert _book(redis_client, entry, 2).tobytes() == rows.tobytes()
    redis_client.delete(agent_rows_key("nba", entry.rows_hour))
    redis_client.hset(agent_rows_key("nba", entry.rows_hour), "", "another epoch")
    later = _assign("C3", rows)
    assert _append(redis_client, log, later, rows)[1] == 2, "a book made again by another process"
    assert _book(redis_client, later, 2).tobytes() == rows.tobytes()


def test_a_failed_append_sends_every_row_with_the_next() -> None:
    log = DecisionLog("nba", max_len=1_000, retention_days=30.0)
    rows = np.array([[1.0, 2.0]])
    entry = _assign("C1", rows)
    log.append_commands(entry, rows)
    assert log.answered(entry, rows, [b"1-0", b"1-0"]) == []
    assert len(log.append_commands(_assign("C2", rows), rows)[0][-5]) == 0
    assert log.answered(entry, rows, None) == [], "a failed write is not sent again: the decision's record failed too"
    assert len(log.append_commands(_assign("C3", rows), rows)[0][-5]) == 8


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=63),
    st.data(),
)
def test_rows_that_differ_in_one_bit_have_different_ids(values: list[float], bit: int, data: st.DataObject) -> None:
    row = np.array([values])
    column = data.draw(st.integers(min_value=0, max_value=len(values) - 1))
    other = row.copy()
    other.view(np.uint64)[0, column] ^= np.uint64(1 << bit)
    ids = row_ids(np.vstack([row, other, row]))
    assert ids[0] != ids[1]
    assert ids[0] == ids[2], "the same row, the same id"
    assert row_ids(row)[0] == ids[0], "whatever the rows beside it"


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
