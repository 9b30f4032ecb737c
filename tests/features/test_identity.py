"""Identifiers resolve to the one customer who holds them, in the read's own round trip, or to no one."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from features import Event, OnlineStore, Registry
from features.event_state import ERASED
from features.identity import Identifier, IdentifierError, normalize
from features.materialize import materialize_identities
from tests.conftest import run_with_store
from tests.features.test_events import NOW, _offline

T = TypeVar("T")
NS = "idt"


def _run(redis_url: str, registry: Registry, body: Callable[[OnlineStore], Awaitable[T]]) -> T:
    return run_with_store(redis_url, registry, body, NS)


# ---- normalisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["+1 202-555-0143", "(202) 555-0143", "202.555.0143", "011 1 202 555 0143", "  +12025550143 ", "1 (202) 555 0143"],
)
def test_one_phone_number_written_many_ways_is_one_identifier(raw: str) -> None:
    assert normalize("phone", raw, region="US") == Identifier("phone", "+12025550143")


def test_a_national_number_is_read_in_the_configured_region() -> None:
    assert normalize("phone", "020 7946 0958", region="GB") == Identifier("phone", "+442079460958")
    assert normalize("phone", "06 12 34 56 78", region="FR") == Identifier("phone", "+33612345678")


def test_a_national_number_without_a_region_is_refused_not_guessed() -> None:
    with pytest.raises(IdentifierError, match=r"^phone: not a phone number \(give it with its country code"):
        normalize("phone", "020 7946 0958")


@pytest.mark.parametrize(
    ("kind", "raw", "named"),
    [
        ("phone", "call me", "phone:"),
        ("phone", "+1 202", "phone:"),
        ("email", "ana.at.example.com", "email:"),
        ("email", "ana@example", "email:"),
        ("chat", "has space", "chat:"),
        ("account", "ACC#1", "account:"),
        ("fax", "123", "kind:"),
    ],
)
def test_a_bad_identifier_is_refused_naming_its_kind(kind: str, raw: str, named: str) -> None:
    with pytest.raises(IdentifierError, match=f"^{named}") as caught:
        normalize(kind, raw)
    assert raw not in str(caught.value)  # personal data stays out of messages, which reach logs


@given(st.from_regex(r"[A-Za-z0-9._%+-]{1,20}@[A-Za-z0-9-]{1,12}\.[A-Za-z]{2,6}", fullmatch=True))
def test_email_normalisation_ignores_case_and_spaces_and_is_idempotent(email: str) -> None:
    once = normalize("email", f"  {email.upper()} ")
    assert once == normalize("email", email.lower())
    assert normalize("email", once.value) == once


@given(st.integers(min_value=2_000_000_000, max_value=9_999_999_999))
def test_phone_normalisation_is_idempotent(national: int) -> None:
    try:
        once = normalize("phone", str(national), region="US")
    except IdentifierError:
        return  # not a possible US number: nothing to hold
    assert once.value.startswith("+1")
    assert normalize("phone", once.value) == once  # E.164 carries its country: no region needed


# ---- the store ---------------------------------------------------------------------------------------


PHONE = normalize("phone", "+1 202 555 0143")
EMAIL = normalize("email", "Ana@Example.com")


def _profile(customer_id: str, tenure: int) -> dict[str, Any]:
    return {"customer_id": customer_id, "tenure_months": tenure, "plan": "basic"}


def test_an_identifier_reads_its_customer_in_one_round_trip(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    schema = registry.entity("customer")

    async def body(store: OnlineStore) -> tuple[Any, ...]:
        now = time.time()
        await store.write("customer", [_profile("C1", 11), _profile("C2", 22)], observed_at=[now, now])
        await store.write("agent", [{"agent_id": "A1", "current_load": 2}], observed_at=[now])
        await store.link("C1", [PHONE, EMAIL])
        redis_client.config_resetstat()
        by_phone, agents = await store.read(normalize("phone", "(202) 555-0143", region="US"), ["A1"])
        stats: dict[str, Any] = redis_client.info("commandstats")
        by_id, _ = await store.read("C1", ["A1"])
        return by_phone, agents, stats, by_id

    by_phone, agents, stats, by_id = _run(redis_url, registry, body)
    assert by_phone.entity_id == "C1"
    assert by_phone.found
    assert np.array_equal(by_phone.values, by_id.values, equal_nan=True)
    assert by_phone.values[schema.index["tenure_months"]] == 11.0
    assert agents[0].values[registry.entity("agent").index["current_load"]] == 2.0
    # One EVAL resolved the identifier and read the customer; the agents' MGET went with it.
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    assert calls.get("eval") == 1
    assert calls.get("mget") == 1
    # The script's own GETs (the identifier, the customer, their event state) are counted too; nothing else ran.
    assert {k: calls.get(k) for k in ("get", "getrange", "evalsha")} == {"get": 3, "getrange": None, "evalsha": None}


def test_an_unknown_identifier_is_nobody_never_a_neighbour(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    async def body(store: OnlineStore) -> tuple[Any, ...]:
        await store.write("customer", [_profile("C1", 11)], observed_at=[time.time()])
        await store.link("C1", [PHONE])
        near = normalize("phone", "+1 202 555 0144")  # one digit away
        vector, _ = await store.read(near)
        return vector, await store.resolve(near)

    vector, resolved = _run(redis_url, registry, body)
    assert resolved is None
    assert vector.entity_id == ""
    assert not vector.found
    assert not vector.known.any()


def test_a_reassigned_identifier_moves_to_its_new_holder(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    async def body(store: OnlineStore) -> tuple[Any, ...]:
        first = await store.link("C1", [PHONE, EMAIL])
        again = await store.link("C1", [PHONE])
        moved = await store.link("C2", [PHONE])
        return first, again, moved, await store.identifiers("C1"), await store.identifiers("C2")

    first, again, moved, c1, c2 = _run(redis_url, registry, body)
    assert first == {PHONE: None, EMAIL: None}
    assert again == {PHONE: "C1"}
    assert moved == {PHONE: "C1"}
    assert c1 == [EMAIL]
    assert c2 == [PHONE]


def test_unlink_and_erase_leave_someone_elses_identifier_alone(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    async def body(store: OnlineStore) -> tuple[Any, ...]:
        await store.write("customer", [_profile("C1", 11)], observed_at=[time.time()])
        await store.link("C1", [PHONE, EMAIL])
        await store.link("C2", [PHONE])  # taken over
        taken = await store.unlink("C1", [PHONE])  # C1 no longer holds it: nothing to remove
        erased = await store.erase("customer", "C1")
        return taken, erased, await store.resolve(PHONE), await store.resolve(EMAIL), await store.identifiers("C1")

    taken, erased, phone, email, left = _run(redis_url, registry, body)
    assert taken == 0
    assert erased is True
    assert phone == "C2"
    assert email is None  # erased with its holder
    assert left == []
    # All that is left of C1 is the tombstone that keeps late events from bringing them back.
    assert redis_client.keys(f"{NS}:*C1*") == [f"{NS}:events:customer:{{C1}}".encode()]
    assert redis_client.get(f"{NS}:events:customer:{{C1}}") == ERASED


def test_materialization_rebuilds_the_identity_map_from_the_newest_event_of_each_identifier(
    tmp_path: Path, redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    account = normalize("account", "acc-7")
    day = 86_400.0

    def event(i: int, customer: str, linked: bool, identifier: Identifier, days_ago: float) -> Event:
        kind = "identifier_linked" if linked else "identifier_unlinked"
        fields = {"identifier_kind": identifier.kind, "identifier": identifier.value}
        return Event(f"i{i}", customer, kind, NOW - days_ago * day, fields)

    events = [
        event(1, "C1", True, PHONE, 400),  # older than any feature's horizon: identity still counts it
        event(2, "C2", True, PHONE, 10),  # the number moved to C2
        event(3, "C1", True, EMAIL, 30),
        event(4, "C1", False, EMAIL, 5),  # and the email was taken back
        event(5, "C3", True, account, 1),
    ]
    offline = _offline(tmp_path, registry, events)

    async def body(store: OnlineStore) -> tuple[Any, ...]:
        linked = await materialize_identities(offline, store)
        again = await materialize_identities(offline, store)
        return linked, again, [await store.resolve(i) for i in (PHONE, EMAIL, account)]

    linked, again, holders = _run(redis_url, registry, body)
    assert linked == again == 2
    assert holders == ["C2", None, "C3"]
