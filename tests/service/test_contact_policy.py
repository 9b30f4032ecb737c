"""Contact-policy state: how its hash reads back, what a policy withholds, and the writes that keep it."""

from __future__ import annotations

import math
import time

import pytest
from pydantic import ValidationError

from service.contact_policy import DAY_SECONDS, ContactPolicy, PolicyState, answer_commands, presentation_commands

NOW = time.time()
TODAY = math.floor(NOW / DAY_SECONDS)


def test_the_hash_reads_back_from_either_client_and_ignores_what_it_does_not_know() -> None:
    fields = {
        b"p:plan_upgrade:%d" % TODAY: b"2",
        b"p:plan_upgrade:%d" % (TODAY - 3): b"1",
        b"d:retention_offer": repr(NOW - 5).encode(),
        b"a:discount_10": repr(NOW - 7).encode(),
        b"x:from_a_newer_version": b"?",
        b"p:broken": b"not a number",
    }
    flat = [part for item in fields.items() for part in item]
    for reply in (fields, flat):
        state = PolicyState.parse(reply)
        assert state.presented == {"plan_upgrade": {TODAY: 2, TODAY - 3: 1}}
        assert state.declined_at == {"retention_offer": NOW - 5}
        assert state.accepted_at == {"discount_10": NOW - 7}
        assert state.presentations("plan_upgrade", 3, TODAY) == 2
        assert state.presentations("plan_upgrade", 4, TODAY) == 3
    assert PolicyState.parse(None) == PolicyState()


def test_each_rule_withholds_for_its_own_time() -> None:
    policy = ContactPolicy(
        max_presentations=2, window_days=7, cooldown_after_decline_days=10, suppress_after_accept_days=30
    )
    assert PolicyState().blocks("a", policy, NOW) is None
    capped = PolicyState(presented={"a": {TODAY: 1, TODAY - 6: 1}})
    assert capped.blocks("a", policy, NOW) == "presented 2 times in 7 days (at most 2)"
    assert capped.blocks("b", policy, NOW) is None, "another action's presentations do not count"
    assert PolicyState(presented={"a": {TODAY: 1, TODAY - 7: 9}}).blocks("a", policy, NOW) is None
    assert PolicyState(declined_at={"a": NOW - 9 * DAY_SECONDS}).blocks("a", policy, NOW) == "declined 9.0 days ago"
    assert PolicyState(declined_at={"a": NOW - 11 * DAY_SECONDS}).blocks("a", policy, NOW) is None
    assert PolicyState(accepted_at={"a": NOW - 29 * DAY_SECONDS}).blocks("a", policy, NOW) is not None
    assert PolicyState(accepted_at={"a": NOW - 31 * DAY_SECONDS}).blocks("a", policy, NOW) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_presentations": 2}, "together"),
        ({}, "at least one rule"),
        ({"window_days": 400, "max_presentations": 1}, "365"),
    ],
    ids=["cap-without-window", "empty", "window-too-long"],
)
def test_a_policy_must_say_something_whole(fields: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ContactPolicy.model_validate(fields)


def test_presentations_are_counted_per_day_and_old_days_dropped() -> None:
    state = PolicyState(presented={"a": {TODAY - 40: 3, TODAY - 5: 1}, "b": {TODAY - 31: 1}})
    commands = presentation_commands("k", ["a", "b"], now=NOW, horizon_days=30, state=state)
    assert commands[:2] == [
        [b"HINCRBY", b"k", b"p:a:%d" % TODAY, b"1"],
        [b"HINCRBY", b"k", b"p:b:%d" % TODAY, b"1"],
    ]
    assert commands[2] == [b"HDEL", b"k", b"p:a:%d" % (TODAY - 40), b"p:b:%d" % (TODAY - 31)]
    assert commands[3] == [b"EXPIRE", b"k", str(31 * DAY_SECONDS).encode()]
    assert presentation_commands("k", [], now=NOW, horizon_days=30, state=state) == []
    declined = answer_commands("k", "a", "declined", now=NOW, horizon_days=30)
    assert declined[0] == [b"HSET", b"k", b"d:a", repr(NOW).encode()]
