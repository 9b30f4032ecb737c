"""The customer routes over HTTP: the online state read back as data, and erased on request.

Real uvicorn, real Redis (the test world materialized), real MLflow. Where a test needs the store in a state
materialization does not produce (a missing field, a stale view) it writes the raw bytes with redis-py, the
way a partial event update or an old snapshot would leave them.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import redis

from features import OfflineStore, Registry
from features.decision_log_keys import KINDS, stream_key
from features.event_state import ERASED, EventLayout
from features.packed import TAG_BYTES, PackedLayout
from service.decision_log import FIELD, decode
from tests.conftest import free_port, own_world_settings, serve
from training.console import Reporter
from training.demo import ensure_materialized

CUSTOMER = "C000042"
DAY = 86_400.0


def _as_of_row(offline: OfflineStore, customer_id: str) -> dict[str, Any]:
    """Every feature of the customer as the online store should serve it now (snapshot and events)."""
    row: dict[str, Any] = offline.as_of("customer", [customer_id]).to_pylist()[0]
    return row


def _newest_events(offline: OfflineStore, customer_id: str) -> dict[str, datetime]:
    """The time of the customer's newest event of each type: what an events view's age is measured from.

    Only events within the horizon count, but for the timeless types (consent): older ones can change no
    feature, so the online store never holds them (materialization leaves them out and live ingestion refuses
    them as too old).
    """
    schema = offline.registry.entity("customer")
    since = datetime.fromtimestamp(time.time() - schema.event_horizon_days * DAY, UTC)
    events = offline.events("customer", since=since, whole=schema.timeless_events).to_pylist()
    newest: dict[str, datetime] = {}
    for event in events:
        if event["customer_id"] == customer_id:
            newest[event["type"]] = max(event["occurred_at"], newest.get(event["type"], event["occurred_at"]))
    return newest


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_features_are_the_latest_snapshot_in_contract_order(
    http: httpx.Client, offline: OfflineStore, registry: Registry
) -> None:
    row = _as_of_row(offline, CUSTOMER)
    observed: datetime = row["feature_ts"]
    assert time.time() - observed.timestamp() < 45 * DAY, "the test customer's snapshot should be fresh"
    schema = registry.entity("customer")
    missing = {n for n in schema.names if row[n] is None}
    assert not missing & set(schema.snapshot_names), "the test customer's snapshot should be complete"
    assert missing, "the test customer should lack some event feature (no complaint, no recent sentiment)"

    response = http.get(f"/v1/customers/{CUSTOMER}/features")
    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] == CUSTOMER
    assert body["found"] is True
    assert body["feature_contract"] == registry.version
    assert [f["name"] for f in body["features"]] == list(schema.names)
    assert {f["name"]: f["view"] for f in body["features"]} == schema.view_of
    # What the offline store does not know is served as the declared default (None when there is none).
    assert {f["name"]: f["value"] for f in body["features"]} == {
        n: schema.feature(n).default if row[n] is None else row[n] for n in schema.names
    }
    assert {f["name"] for f in body["features"] if f["defaulted"]} == missing
    # Human form: category names and booleans, not the codes the models see.
    values = {f["name"]: f["value"] for f in body["features"]}
    assert values["plan"] == row["plan"]
    assert isinstance(values["plan"], str)
    assert values["consent_marketing"] is row["consent_marketing"]
    assert isinstance(values["tenure_months"], int)
    assert isinstance(values["logins_30d"], int)
    assert values["open_complaint"] is False

    # A snapshot view is as old as the snapshot; an events view as its newest event of the types it reads.
    newest = _newest_events(offline, CUSTOMER)
    views = _by_name(body["views"])
    assert list(views) == [v.name for v in schema.views]
    for view in schema.views:
        out = views[view.name]
        assert out["ttl_seconds"] == (None if view.ttl_days is None else view.ttl_days * DAY)
        if view.source == "snapshot":
            expected: float | None = time.time() - observed.timestamp()
        else:
            seen = [
                newest[f.aggregation.event] for f in view.features if f.aggregation and f.aggregation.event in newest
            ]
            expected = time.time() - max(seen).timestamp() if seen else None
        if expected is None:
            assert out["age_seconds"] is None, view.name
        else:
            assert out["age_seconds"] == pytest.approx(expected, abs=60), view.name
        assert out["stale"] is (expected is not None and expected > view.ttl_seconds), view.name
    assert not any(views[v]["stale"] for v in ("customer_profile", "customer_usage", "customer_account"))
    assert views["customer_activity"]["age_seconds"] is not None  # the demo customer logs in
    # Consent never expires: the platform's first record, older than every window, still stands.
    assert views["customer_consent"] | {"age_seconds": None} == {
        "name": "customer_consent",
        "age_seconds": None,
        "stale": False,
        "ttl_seconds": None,
    }
    assert {f["name"]: f["defaulted"] for f in body["features"] if f["view"] == "customer_consent"} == {
        "consent_marketing": False,
        "consent_profiling": False,
        "consent_phone": False,
        "consent_sms": False,
    }


def test_a_missing_field_is_served_as_its_default_and_flagged(
    http: httpx.Client, redis_client: redis.Redis, offline: OfflineStore, registry: Registry
) -> None:
    before = {f["name"] for f in http.get(f"/v1/customers/{CUSTOMER}/features").json()["features"] if f["defaulted"]}
    schema = registry.entity("customer")
    # A `last` event feature without a default that the demo customer has, whichever the world gave them.
    last = next(
        f
        for f in schema.event_features
        if f.aggregation and f.aggregation.kind == "last" and f.default is None and f.name not in before
    )
    assert last.aggregation is not None
    assert "price_increase_pct" not in before
    # price_increase_pct has a default (0.0); the `last` feature has none, so it is unknown. A snapshot feature
    # is a slot of the packed value (NaN when missing); so is a `last` event feature, a slot of its group (the
    # newest event of its type) in the event state.
    layout = PackedLayout(schema)
    slot = int(layout.value_slots[[f.name for f in layout.features].index("price_increase_pct")])
    redis_client.setrange(f"nba:customer:{{{CUSTOMER}}}", TAG_BYTES + 8 * slot, struct.pack("<d", math.nan))
    group = EventLayout(schema).group(last.aggregation.event)
    at = EventLayout(schema).offset(group.slot + 1 + [v.field for v in group.values].index(str(last.aggregation.field)))
    key = f"nba:events:customer:{{{CUSTOMER}}}"
    (held,) = struct.unpack("<d", redis_client.getrange(key, at, at + 7))  # type: ignore[arg-type]
    assert not math.isnan(held)
    redis_client.setrange(key, at, struct.pack("<d", math.nan))
    body = http.get(f"/v1/customers/{CUSTOMER}/features").json()
    features = _by_name(body["features"])
    assert features["price_increase_pct"] == {
        "name": "price_increase_pct",
        "view": "customer_profile",
        "value": 0.0,
        "defaulted": True,
    }
    view = schema.view_of[last.name]
    assert features[last.name] == {"name": last.name, "view": view, "value": None, "defaulted": True}
    defaulted = {name for name, f in features.items() if f["defaulted"]}
    assert defaulted == before | {"price_increase_pct", last.name}
    assert features["tenure_months"]["value"] == _as_of_row(offline, CUSTOMER)["tenure_months"]
    # The view is still as fresh as its newest event: a missing value is not a stale view.
    assert not _by_name(body["views"])[view]["stale"]


def test_a_view_past_its_ttl_is_stale_and_served_as_defaults(
    http: httpx.Client, redis_client: redis.Redis, registry: Registry
) -> None:
    first, _ = PackedLayout(registry.entity("customer")).segments["customer_profile"]
    stamp_at = TAG_BYTES + 8 * first
    redis_client.setrange(f"nba:customer:{{{CUSTOMER}}}", stamp_at, struct.pack("<d", time.time() - 100 * DAY))
    body = http.get(f"/v1/customers/{CUSTOMER}/features").json()
    views = _by_name(body["views"])
    assert views["customer_profile"]["stale"] is True
    assert views["customer_profile"]["age_seconds"] == pytest.approx(100 * DAY, abs=60)
    assert [name for name, v in views.items() if v["stale"]] == ["customer_profile"]

    features = _by_name(body["features"])
    profile = registry.views["customer_profile"].features
    assert {f.name: features[f.name]["value"] for f in profile} == {
        "tenure_months": 0,
        "plan": None,  # no default: unknown
        "contract_type": None,
        "days_to_contract_end": None,
        "contract_end_day": None,
        "monthly_charge": None,
        "price_increase_pct": 0.0,
        "lifetime_value": None,
        "segment": None,
        "language": None,
    }
    assert {f.name for f in profile} <= {name for name, f in features.items() if f["defaulted"]}
    # The other snapshot views keep their values.
    assert features["days_overdue"]["defaulted"] is False


def test_an_events_view_whose_newest_event_is_past_its_ttl_is_stale(
    http: httpx.Client, redis_client: redis.Redis, registry: Registry
) -> None:
    # The state of a customer last active 100 days ago: no login or usage in any window, the newest of each old.
    key = f"nba:events:customer:{{{CUSTOMER}}}"
    layout = EventLayout(registry.entity("customer"))
    for event in ("login", "usage"):
        (ring,) = [r for r in layout.rings if r.event == event]
        value: bytes = redis_client.get(key)  # type: ignore[assignment]
        records = value[layout.records_at(value) :]
        series = np.frombuffer(records, dtype="<f8")[::2].astype(np.int64) % 256
        held = (series >= ring.first) & (series < ring.first + len(ring.series))
        assert held.any(), f"the demo customer should have {event} events in the last 30 days"
        # An empty ring: its newest day 0 holds none of the days its records are of, so a read skips them.
        redis_client.setrange(key, layout.offset(ring.slot), bytes(8))
        stamp = round((time.time() - 100 * DAY) * 1e6)
        redis_client.setrange(key, layout.offset(layout.group(event).slot), struct.pack("<d", stamp))
    body = http.get(f"/v1/customers/{CUSTOMER}/features").json()
    views = _by_name(body["views"])
    assert views["customer_activity"]["stale"] is True
    assert views["customer_activity"]["age_seconds"] == pytest.approx(100 * DAY, abs=60)
    assert [name for name, v in views.items() if v["stale"]] == ["customer_activity"]

    features = _by_name(body["features"])
    activity = registry.views["customer_activity"].features
    assert {f.name: features[f.name]["value"] for f in activity} == {
        "logins_7d": 0,
        "logins_30d": 0,
        "days_since_last_activity": None,  # past the TTL: unknown, not 100
        "usage_7d": 0.0,
        "usage_30d": 0.0,
    }
    # A count over an empty window is a fact (zero logins), not a default; the newest event's age is not.
    assert {f.name for f in activity if features[f.name]["defaulted"]} == {"days_since_last_activity"}


def test_unknown_customer_is_404_naming_the_field_not_the_id(http: httpx.Client) -> None:
    response = http.get("/v1/customers/C999999/features")
    assert response.status_code == 404
    assert response.json()["detail"] == "customer_id: no such customer in the online store"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize(
    "customer_id",
    ["C0 42;DROP", "-C000042", "C" * 65, "C00004%"],
    ids=["space-and-semicolon", "leading-dash", "too-long", "percent"],
)
def test_a_malformed_id_is_422_naming_customer_id(http: httpx.Client, method: str, customer_id: str) -> None:
    path = f"/v1/customers/{customer_id}" + ("/features" if method == "GET" else "")
    response = http.request(method, path)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("customer_id: ")


@pytest.mark.parametrize(
    ("method", "path"), [("GET", f"/v1/customers/{CUSTOMER}/features"), ("DELETE", f"/v1/customers/{CUSTOMER}")]
)
def test_without_redis_customer_routes_are_503_with_retry_after(
    tmp_path: Path, world: Path, data_dir: Path, champions: dict[str, str], method: str, path: str
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    # Its own world: an erasure is recorded offline before Redis is tried (see CustomerService.erase).
    with (
        serve(own_world_settings(tmp_path, world, data_dir, dead)) as served,
        served.client() as client,
    ):
        response = client.request(method, path)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["detail"].startswith("online store unavailable: ")


def _wait_logged(client: redis.Redis, streams: Iterable[str], n: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of ``streams`` once they hold ``n`` (the log travels in a write sent after each answer)."""
    deadline = time.monotonic() + 10
    while True:
        entries = [e for key in streams for e in client.xrange(key)]  # type: ignore[union-attr]
        if len(entries) >= n or time.monotonic() > deadline:
            return entries  # type: ignore[return-value]
        time.sleep(0.02)


def _mentioning(client: redis.Redis, customer_id: str) -> list[str]:
    """The keys whose name or value (string, hash, set, stream entries) mentions ``customer_id``."""
    needle, found = customer_id.encode(), []
    for key in client.scan_iter("nba:*"):
        kind = client.type(key)
        if kind == b"string":
            values: list[bytes] = [client.get(key) or b""]  # type: ignore[list-item]
        elif kind == b"hash":
            values = [b for pair in client.hgetall(key).items() for b in pair]  # type: ignore[union-attr]
        elif kind == b"set":
            values = list(client.smembers(key))  # type: ignore[arg-type]
        elif kind == b"stream":
            values = [v for _, fields in client.xrange(key) for v in fields.values()]  # type: ignore[union-attr]
        else:
            values = []
        if needle in key or any(needle in v for v in values):
            found.append(key.decode())
    return sorted(found)


def test_erase_deletes_the_online_state_and_marks_the_customer_erased_offline(
    tmp_path: Path,
    world: Path,
    data_dir: Path,
    redis_url: str,
    champions: dict[str, str],
    materialized: None,
    redis_client: redis.Redis,
    registry: Registry,
) -> None:
    settings = own_world_settings(tmp_path, world, data_dir, redis_url)
    offline = OfflineStore(settings.offline.world_dir, registry)
    labels = pq.read_table(world / "churn_labels.parquet")
    own_labels = labels.column("customer_id").to_pylist().count(CUSTOMER)
    assert own_labels > 0
    key = f"nba:customer:{{{CUSTOMER}}}"
    neighbour = "nba:customer:{C000043}"
    state = f"nba:events:customer:{{{CUSTOMER}}}"
    legacy = f"nba:ev:customer:{{{CUSTOMER}}}"  # event state as layout packed-1 kept it, left by an upgrade
    redis_client.hset(legacy, "n|login|@20000", 1)
    assert redis_client.exists(key, neighbour, state) == 3

    with serve(settings) as served, served.client() as http:
        # Decisions remembered for the customer, one with feedback: their records name the customer.
        made = http.post("/v1/recommend", json={"customer_id": CUSTOMER, "channel": "voice"}).json()
        contact = {"customer_id": CUSTOMER, "intent": "billing", "channel": "voice", "language": "en"}
        routed = http.post("/v1/assign", json=contact | {"agent_ids": ["A0001", "A0002"]}).json()
        answer = {
            "decision_id": made["decision_id"],
            "action_id": made["actions"][0]["action_id"],
            "outcome": "declined",
        }
        assert http.post("/v1/feedback", json=answer).status_code == 200
        records = [f"nba:decision:{{{made['decision_id']}}}", f"nba:decision:{{{routed['decision_id']}}}"]
        assert redis_client.exists(*records) == 2
        # A neighbour's decisions, logged beside the customer's in the decision log, must outlive the erasure.
        http.post("/v1/recommend", json={"customer_id": "C000043", "channel": "voice"})
        http.post("/v1/assign", json=contact | {"customer_id": "C000043", "agent_ids": ["A0001", "A0002"]})
        logs = {kind: stream_key("nba", kind) for kind in KINDS}
        logged = _wait_logged(redis_client, logs.values(), 4)
        assert {decode(f[FIELD]).customer for _, f in logged} == {CUSTOMER, "C000043"}
        # Events no consumer has archived yet (nba run starts none): the API's, a producer's own, a dead letter.
        sent = {"type": "login", "event_id": f"e-{time.time_ns()}", "customer_id": CUSTOMER}
        assert http.post("/v1/events", json=sent).json()["applied"] == 1
        redis_client.xadd("nba:events", {"event": json.dumps(sent | {"event_id": "own-1"}, indent=1)})
        redis_client.xadd("nba:events:dead", {"event": f'{{"customer_id": "{CUSTOMER}", "score": 7', "error": "x"})
        neighbours = http.post("/v1/events", json=sent | {"customer_id": "C000043", "event_id": "n-1"}).json()
        assert neighbours["applied"] == 1
        assert _mentioning(redis_client, CUSTOMER)  # the customer is named in keys, records, the log and the stream

        first = http.delete(f"/v1/customers/{CUSTOMER}")
        assert first.status_code == 200
        assert first.json() == {"customer_id": CUSTOMER, "erased": True}
        # The tombstone's key alone, holding nothing of them: the events stream and its dead letters lost theirs.
        assert _mentioning(redis_client, CUSTOMER) == [state]
        streamed = [json.loads(f[b"event"]) for _, f in redis_client.xrange("nba:events")]
        assert [e["event_id"] for e in streamed if e["customer_id"] == "C000043"][-1] == "n-1", "the neighbour's stay"
        assert redis_client.exists(*records, f"nba:feedback:{{{made['decision_id']}}}") == 0
        assert redis_client.exists(key, legacy) == 0
        assert redis_client.get(state) == ERASED  # a tombstone, holding nothing of the customer
        assert redis_client.exists(f"nba:seen:customer:{{{CUSTOMER}}}") == 0
        assert redis_client.exists(neighbour) == 1
        left = [decode(f[FIELD]) for key in logs.values() for _, f in redis_client.xrange(key)]
        assert sorted(e.customer for e in left) == ["C000043", "C000043"], "the neighbour's log entries stay"

        second = http.delete(f"/v1/customers/{CUSTOMER}")
        assert second.status_code == 200
        assert second.json() == {"customer_id": CUSTOMER, "erased": False}

        # Offline: in the ledger once, and gone from every source the offline store reads.
        assert offline.erasures.ids("customer") == {CUSTOMER}
        frame = offline.point_in_time("customer", labels)
        assert CUSTOMER not in frame.column("customer_id").to_pylist()
        assert frame.num_rows == labels.num_rows - own_labels
        assert "C000043" in frame.column("customer_id").to_pylist()
        assert CUSTOMER not in offline.latest("customer").column("customer_id").to_pylist()
        assert CUSTOMER not in offline.events("customer").column("customer_id").to_pylist()
        assert offline.as_of("customer", [CUSTOMER, "C000043"]).column("customer_id").to_pylist() == ["C000043"]

        # A full materialization afterwards writes everyone else again, and not them.
        stamp: dict[str, object] = {"built_at": f"after-erasure-{time.time_ns()}"}
        asyncio.run(ensure_materialized(redis_url, "nba", registry, offline, stamp, Reporter(), force=True))
        assert redis_client.exists(key) == 0
        assert redis_client.exists(neighbour) == 1

        # A late or replayed event about them (telephony retrying, a stream replay) does not bring them back.
        late = {
            "type": "sentiment",
            "event_id": f"late-{time.time_ns()}",
            "customer_id": CUSTOMER,
            "occurred_at": datetime.now(UTC).isoformat(),
            "score": -0.5,
        }
        link = late | {"type": "identifier_linked", "event_id": f"link-{time.time_ns()}", "identifier_kind": "email"}
        link = {k: v for k, v in link.items() if k != "score"} | {"identifier": "gone@example.com"}
        answer = http.post("/v1/events", json={"events": [late, link]}).json()
        assert [r["status"] for r in answer["results"]] == ["erased", "erased"]
        assert (answer["applied"], answer["erased"]) == (0, 2)
        assert redis_client.get(state) == ERASED
        assert redis_client.exists(key, f"nba:seen:customer:{{{CUSTOMER}}}") == 0
        lookup = {"identifier_kind": "email", "identifier": "gone@example.com"}
        assert http.post("/v1/customers/lookup", json=lookup).status_code == 404  # the link was refused too

        recommended = http.post("/v1/recommend", json={"customer_id": CUSTOMER, "channel": "voice"}).json()
        assert recommended["cold_start"] is True
        assert recommended["degraded"] is False
        assert http.get(f"/v1/customers/{CUSTOMER}/features").status_code == 404


def test_openapi_documents_the_customer_routes(http: httpx.Client) -> None:
    schema = http.get("/schema/openapi.json").json()
    features = schema["paths"]["/v1/customers/{customer_id}/features"]["get"]
    erase = schema["paths"]["/v1/customers/{customer_id}"]["delete"]
    assert features["operationId"] == "customer_features"
    assert erase["operationId"] == "erase_customer"
    parameters = {p["name"]: p for p in features["parameters"]}
    assert set(parameters) == {"customer_id", "view"}
    assert parameters["customer_id"]["schema"]["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"
    assert parameters["view"]["in"] == "query"
    assert parameters["view"]["required"] is False
    lookup = schema["paths"]["/v1/customers/lookup"]["post"]
    assert lookup["operationId"] == "customer_lookup"
    # The answer's fields are documented, though built as msgspec Structs for speed.
    answer = schema["components"]["schemas"]["FeatureValueOut"]
    assert set(answer["properties"]) == {"name", "view", "value", "defaulted"}


def test_view_narrows_the_answer_and_an_unknown_view_is_named(http: httpx.Client, registry: Registry) -> None:
    """Every view, snapshot (read without the event state) or events, answers its slice of the whole answer."""
    whole = http.get(f"/v1/customers/{CUSTOMER}/features").json()
    ages = {v["name"]: v for v in whole["views"]}
    for view in registry.entity("customer").views:
        narrowed = http.get(f"/v1/customers/{CUSTOMER}/features", params={"view": view.name}).json()
        expected = [f for f in whole["features"] if f["view"] == view.name]
        assert narrowed["features"] == expected, view.name
        assert [f.name for f in view.features] == [f["name"] for f in expected]
        (freshness,) = narrowed["views"]
        assert freshness["name"] == view.name
        assert freshness["stale"] == ages[view.name]["stale"]
        assert freshness["age_seconds"] == pytest.approx(ages[view.name]["age_seconds"], abs=5)
    bad = http.get(f"/v1/customers/{CUSTOMER}/features", params={"view": "nope"})
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("view: 'nope' is not a customer feature view")
