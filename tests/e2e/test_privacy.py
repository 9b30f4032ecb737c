"""PII never reaches a log line or an error message, through the API or the CLI; nor does an API key.

What is PII is the contract's to say: the customer id (``entities.customer.pii``: an id may be an email or a
phone number) and every feature flagged ``pii``. The service runs with every logger at DEBUG and a handler on
each; requests go through every route, good and bad, with a good key and with bad ones; then no captured
record, and no error body, may hold any PII value sent or stored, nor any key sent.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from features import Registry
from features.packed import PackedLayout
from service.cli import main
from service.keys import Role
from tests.conftest import free_port, own_world_settings, serve, session_keys

MATERIALIZED = "C000042"
"""A customer of the test world: its stored features are read, scored and explained."""
EMAIL = "jane.doe@example.com"
PHONE = "+14155550123"
WRONG_KEY = "nba_" + "w" * 43


class _Capture(logging.Handler):
    """Keeps every record's rendered message, traceback and attributes, whichever logger it came through.

    Except the test's own HTTP client's (httpx, httpcore): it logs the URLs the test asks for, not the service.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in ("httpx", "httpcore"):
            return
        self.lines.append(record.getMessage())
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))
        self.lines.append(" ".join(str(v) for v in vars(record).values()))


@contextmanager
def capture_logs() -> Iterator[_Capture]:
    """A handler on the root logger and on every logger that does not propagate to it, all at DEBUG.

    Entered after the server starts: uvicorn's logging set-up replaces the handlers of its own loggers.
    """
    capture = _Capture()
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger) and not lg.propagate
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(capture)
            lg.setLevel(level)


def _pii_values(registry: Registry, redis_client: redis.Redis, ids: list[str]) -> list[str]:
    """The ids (the customer id is PII) and the stored value of every PII-flagged feature of those customers."""
    schema = registry.entity("customer")
    assert schema.pii, "the customer id is PII: an email or a phone number is a valid one"
    values = list(ids)
    layout = PackedLayout(schema)
    for customer_id in ids:
        slots, present = layout.unpack([redis_client.get(f"nba:customer:{{{customer_id}}}")])  # type: ignore[list-item]
        for feature, slot in zip(layout.features, layout.value_slots.tolist(), strict=True):
            if feature.pii and present[0] and (human := feature.decode(float(slots[0, slot]))) is not None:
                values.append(str(human))
    return values


def _requests(http: httpx.Client, customer_id: str) -> list[httpx.Response]:
    """Every route with this customer, each way it can answer (good, unknown, bad body, malformed id)."""
    event = {"type": "sentiment", "event_id": f"ev-{customer_id}", "customer_id": customer_id, "score": -0.5}
    decided = http.post("/v1/recommend", json={"customer_id": customer_id, "channel": "voice"})
    made = decided.json() if decided.status_code == 200 else {"decision_id": "f" * 32, "actions": []}
    answer = {"decision_id": made["decision_id"], "outcome": "declined"}
    first = made["actions"][0]["action_id"] if made["actions"] else "no_action"
    return [
        decided,
        http.post("/v1/feedback", json={**answer, "action_id": first}),
        http.post("/v1/feedback", json={**answer, "action_id": "not_served"}),  # 422
        http.post("/v1/feedback", json={**answer, "decision_id": "0" * 32, "action_id": "no_action"}),  # 404
        http.post("/v1/admin/catalog/reload"),
        http.post("/v1/recommend", json={"customer_id": customer_id, "channel": "fax"}),
        http.post("/v1/recommend", json={"customer_id": customer_id + " ", "channel": "voice", "top_k": 0}),
        http.post("/v1/events", json={"events": [event]}),
        http.post("/v1/events", json={"events": [{**event, "score": 7}]}),
        http.post("/v1/events", json={"events": [{**event, "type": "unknown"}]}),
        http.post(
            "/v1/assign",
            json={"customer_id": customer_id, "intent": "billing", "channel": "voice", "language": "en", "queue": "x"},
        ),
        http.post(
            "/v1/assign",
            json={"customer_id": customer_id, "intent": "billing", "channel": "voice", "language": "xx", "queue": "x"},
        ),
        http.get(f"/v1/customers/{customer_id}/features"),
        http.get(f"/v1/customers/{customer_id}x/features"),  # unknown: 404
        http.get(f"/v1/customers/{customer_id};drop/features"),  # malformed: 422
        http.delete(f"/v1/customers/{customer_id}"),
        http.get(f"/v1/customers/{customer_id}/features"),  # erased: 404
        http.get(f"/v1/customers/{customer_id}/features", headers={"Authorization": f"Bearer {WRONG_KEY}"}),  # 401
        http.post(  # 403
            "/v1/recommend",
            json={"customer_id": customer_id, "channel": "voice"},
            headers={"Authorization": f"Bearer {session_keys().by_role[Role.EVENTS]}"},
        ),
    ]


def test_no_pii_in_logs_or_error_messages_through_the_api(
    tmp_path: Path,
    world: Path,
    data_dir: Path,
    redis_url: str,
    champions: dict[str, str],
    materialized: None,
    redis_client: redis.Redis,
    registry: Registry,
) -> None:
    ids = [MATERIALIZED, EMAIL, PHONE]
    pii = _pii_values(registry, redis_client, ids)
    settings = own_world_settings(tmp_path, world, data_dir, redis_url)
    settings = settings.model_copy(update={"service": settings.service.model_copy(update={"log_level": "debug"})})
    nba = logging.getLogger("nba")
    level = nba.level  # the app's start sets it to its own level, in this process: the other tests' apps are at warning
    try:
        with (
            serve(settings) as served,
            capture_logs() as captured,
            served.client() as http,
        ):
            responses = [r for customer_id in ids for r in _requests(http, customer_id)]
    finally:
        nba.setLevel(level)
    statuses = sorted({r.status_code for r in responses})
    assert statuses == [200, 401, 403, 404, 422], "every kind of answer should have been exercised"
    # The access log is captured, and says which route was called without saying for whom.
    assert '"GET /v1/customers/{customer_id}/features HTTP/1.1" 200' in "\n".join(captured.lines)
    assert '"DELETE /v1/customers/{customer_id} HTTP/1.1" 200' in "\n".join(captured.lines)
    for value in [*pii, WRONG_KEY, *session_keys().by_role.values()]:
        leaks = [line for line in captured.lines if value in line]
        assert not leaks, f"{value!r} logged: {leaks[:3]}"
        errors = [r.text for r in responses if r.status_code >= 400 and value in r.text]
        assert not errors, f"{value!r} in an error message: {errors[:3]}"


def test_no_pii_in_logs_through_the_cli(tmp_path: Path, world: Path, data_dir: Path, redis_url: str) -> None:
    own = own_world_settings(tmp_path, world, data_dir, redis_url).offline.data_dir
    env = {"REDIS_URL": redis_url, "NBA_DATA_DIR": str(own), "NBA_REDIS_URL": None, "COLUMNS": "200"}
    runner = CliRunner()
    with capture_logs() as captured:
        outputs = [
            runner.invoke(main, ["features", "materialize", "--entity", "customer"], env=env),
            runner.invoke(main, ["features", "erase", MATERIALIZED], env=env),
            runner.invoke(main, ["features", "erase", EMAIL], env=env),
            runner.invoke(main, ["features", "erase", "not an id " + PHONE], env=env),
            runner.invoke(main, ["features", "check", "--sample", "100"], env=env),
        ]
    assert [r.exit_code for r in outputs][:4] == [0, 0, 0, 1], [r.output for r in outputs]
    assert outputs[4].exit_code in (0, 3), outputs[4].output
    assert captured.lines, "nothing was logged: the capture is not wired"
    for value in (MATERIALIZED, EMAIL, PHONE):
        assert not [line for line in captured.lines if value in line], value
        assert not [r.output for r in outputs if value in r.output], value


NBA = str(Path(sys.executable).parent / "nba")
ROUTED = "C000043"
"""A customer of the test world the process links identifiers to (its own id is PII as much as they are)."""
LINKED_PHONE, LINKED_EMAIL = "+1 (415) 555-0199", "Jane.Roe@Example.com"
"""Identifiers as a producer sends them; they are stored (and could leak) normalised: +14155550199, lower case."""


def _pii_requests(url: str) -> list[httpx.Response]:
    """Requests carrying PII in every place a request can: ids that are an email or a phone number, in the body and
    in the path, identifiers linked by events and used to recommend and to look up, event payloads, feedback, and
    refusals (bad fields, a key twice, the wrong media type, no key)."""
    keys = session_keys().by_role
    sent: list[httpx.Response] = []
    with httpx.Client(base_url=url, headers=session_keys().headers(), timeout=10) as http:
        link = {"type": "identifier_linked", "customer_id": ROUTED}
        sent.append(
            http.post(
                "/v1/events",
                json={
                    "events": [
                        link | {"event_id": "pii-1", "identifier_kind": "phone", "identifier": LINKED_PHONE},
                        link | {"event_id": "pii-2", "identifier_kind": "email", "identifier": LINKED_EMAIL},
                        {"type": "sentiment", "event_id": "pii-3", "customer_id": EMAIL, "score": -0.9},
                        {"type": "payment_failed", "event_id": "pii-4", "customer_id": PHONE, "amount": 12.5},
                    ]
                },
            )
        )
        for identifier in (
            {"identifier_kind": "phone", "identifier": "+1 415 555 0199"},
            {"identifier_kind": "email", "identifier": LINKED_EMAIL},
        ):
            decided = http.post("/v1/recommend", json={"identifier": identifier, "channel": "voice"})
            sent.append(decided)
            action = decided.json()["actions"][0]["action_id"]
            sent.append(
                http.post(
                    "/v1/feedback",
                    json={"decision_id": decided.json()["decision_id"], "action_id": action, "outcome": "declined"},
                )
            )
            sent.append(http.post("/v1/customers/lookup", json=identifier))
        for customer_id in (EMAIL, PHONE, MATERIALIZED):
            sent.append(http.post("/v1/recommend", json={"customer_id": customer_id, "channel": "voice"}))
            contact = {"customer_id": customer_id, "intent": "billing", "channel": "voice", "language": "en"}
            sent.append(http.post("/v1/assign", json=contact | {"agent_ids": ["A0001", "A0002"]}))
            sent.append(http.get(f"/v1/customers/{customer_id}/features"))
            sent.append(http.post("/v1/recommend", json={"customer_id": customer_id, "channel": "fax"}))  # 422
            twice = f'{{"customer_id": "{customer_id}", "customer_id": "{customer_id}", "channel": "voice"}}'
            sent.append(http.post("/v1/recommend", content=twice, headers={"content-type": "application/json"}))
            sent.append(http.post("/v1/recommend", content=twice, headers={"content-type": "text/plain"}))  # 415
            sent.append(
                http.post(
                    "/v1/events", json={"type": "sentiment", "event_id": "x", "customer_id": customer_id, "score": 9}
                )
            )  # 422
            sent.append(
                http.get(f"/v1/customers/{customer_id}/features", headers={"Authorization": f"Bearer {WRONG_KEY}"})
            )  # 401
            sent.append(
                http.post(
                    "/v1/assign",
                    json=contact | {"queue": "billing"},
                    headers={"Authorization": f"Bearer {keys[Role.EVENTS]}"},
                )
            )  # 403
        sent.append(http.post("/v1/customers/lookup", json={"identifier_kind": "phone", "identifier": "+1 415 555"}))
        sent.append(http.post("/v1/customers/lookup", json={"identifier_kind": "email", "identifier": "nobody@x.io"}))
        for customer_id in (EMAIL, PHONE, ROUTED):
            sent.append(http.delete(f"/v1/customers/{customer_id}"))
        sent.append(http.post("/v1/admin/catalog/reload"))  # logged by service.catalog_source, beside nba.*
    return sent


@pytest.mark.parametrize("level", ["info", "debug"])
def test_no_pii_in_the_logs_of_a_real_nba_run(
    tmp_path: Path,
    world: Path,
    data_dir: Path,
    redis_url: str,
    champions: dict[str, str],
    materialized: None,
    level: str,
) -> None:
    """``nba run`` as deployed (its own process, JSON logs on stderr) at INFO and DEBUG: requests carrying PII
    everywhere it can go, then its whole output, every line of every logger, is searched for each value."""
    own = own_world_settings(tmp_path, world, data_dir, redis_url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBA_", "MLFLOW_", "REDIS_"))} | {
        "NBA_DATA_DIR": str(own.offline.data_dir),
        "NBA_PORT": str(port),
        "NBA_LOG_LEVEL": level,
        "NBA_KEYS_FILE": str(session_keys().path),
        "REDIS_URL": redis_url,
        "MLFLOW_TRACKING_URI": str(own.mlflow.tracking_uri),
    }
    log = tmp_path / "nba-run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([NBA, "run", "--no-demo"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "nba run did not become ready"
                time.sleep(0.2)
            responses = _pii_requests(url)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    statuses = sorted({r.status_code for r in responses})
    assert statuses == [200, 400, 401, 403, 404, 415, 422], statuses
    output = log.read_text()
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "nba.access"]
    assert len(access) >= len(responses), "every request is logged at INFO and DEBUG"
    assert {r["route"] for r in access} >= {"/v1/customers/{customer_id}/features", "/v1/customers/{customer_id}"}
    # The service's modules outside nba.* reach the same output, as JSON, at the level asked.
    assert any(r["logger"] == "service.catalog_source" and r["level"] == "info" for r in records)
    assert all(line.startswith(("{", "  ")) for line in output.splitlines()), "every record as JSON"
    pii = [
        EMAIL,
        PHONE,
        MATERIALIZED,
        ROUTED,
        "jane.doe%40example.com",
        "%2B14155550123",
        LINKED_PHONE,
        "+14155550199",
        "4155550199",
        "415 555 0199",
        LINKED_EMAIL,
        LINKED_EMAIL.lower(),
    ]
    for value in [*pii, WRONG_KEY, *session_keys().by_role.values()]:
        leaks = [line for line in output.splitlines() if value in line]
        assert not leaks, f"{value!r} logged at {level}: {leaks[:3]}"
