"""The processes compose.yaml describes, started here on loopback, driven over HTTP: no Docker engine runs here.

Each process is the one its compose service runs, read from compose.yaml: the service's command and environment,
with only what names a place replaced by its loopback twin (Redis, MLflow's URL, the data volume, ports):

- MLflow's tracking server on a PostgreSQL database of this test run's own (created, then dropped), its artifacts
  in a folder, as compose's ``mlflow`` service on its ``postgres`` (skipped, saying so, where no PostgreSQL answers
  at 127.0.0.1:5432);
- the one-shot ``demo`` step, then two replicas (``api-1``, ``api-2``: ``nba run --no-demo``) on one Redis and one
  shared data dir, the ``events`` consumer (``nba events consume``, archiving into that data dir's world) and the
  ``shadow`` worker.

Redis is the session's (the embedded Valkey, or ``REDIS_URL``). Training is what would make this slow, so the test
registers the session's trained champions and challengers in the new MLflow server first, the way a promotion
would; the demo step then finds them, and the world the session built, and trains nothing: what it does here is
what a second ``docker compose up`` does.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pyarrow.parquet as pq
import pytest
import redis
from psycopg import sql

from features.decision_log_keys import KINDS, stream_key
from features.event_archive import archived_parts, events_source
from features.event_stream import DEFAULT_GROUP
from features.event_stream_keys import EVENT_FIELD
from features.event_stream_keys import stream_key as events_stream
from service.decision_log import FIELD
from service.keys import KeyFile, Role
from service.shadow import GROUP, decode_result, results_key
from tests.conftest import TEST_CUSTOMERS, free_port, own_world
from tests.ops import compose
from training import CHALLENGER, CHAMPION, MlflowSettings, ModelRegistry
from training.bundle import ModelKind

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
"""The PostgreSQL this machine runs (trust auth): a database is made on it for each run of this module."""
BIN = Path(sys.executable).parent
"""Where this environment's ``nba`` and ``mlflow`` are, as they are on the image's PATH."""
START_S = 180.0
"""The longest a process may take to answer (MLflow's first start migrates a fresh database; the 2 cores are
shared with other test workers)."""
MODEL_KINDS: tuple[ModelKind, ...] = typing.get_args(ModelKind)


@dataclass
class Process:
    """A process started for the stack, in its own process group (MLflow's server has children), logging to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def terminate(self) -> None:
        """SIGTERM to the group, as ``docker compose stop`` sends it: once."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)

    def wait_or_kill(self) -> int:
        """Wait for it to end after :meth:`terminate`; SIGKILL after 15 s (compose's grace period is 10 s)."""
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        return self.popen.returncode

    def tail(self) -> str:
        """The end of its log, for a failure's message."""
        return f"--- {self.name} ({self.log}) ---\n{self.log.read_text(errors='replace')[-3000:]}"


def _start(name: str, argv: list[str], env: Mapping[str, str], logs: Path) -> Process:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log)


def _until(check: Callable[[], bool], what: str, processes: list[Process], timeout: float = START_S) -> float:
    """Wait for ``check``; fail with the processes' logs when one exits first or time runs out. Returns seconds."""
    started = time.monotonic()
    while not check():
        dead = [p for p in processes if p.popen.poll() is not None]
        if dead or time.monotonic() - started > timeout:
            why = f"{dead[0].name} exited with {dead[0].popen.returncode}" if dead else f"not within {timeout:g} s"
            raise AssertionError(f"{what}: {why}\n" + "\n".join(p.tail() for p in processes))
        time.sleep(0.1)
    return time.monotonic() - started


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _base_env() -> dict[str, str]:
    """This environment without any setting of ours or MLflow's: what a container starts from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBA_", "MLFLOW_")) and k != "REDIS_URL"}
    # One LightGBM thread, as the suite sets (tests/conftest.py); the image's unbuffered output, for the logs.
    return env | {"NBA_TRAIN_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A database of this run's own on the machine's PostgreSQL, dropped afterwards."""
    try:
        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL answers at {POSTGRES} ({exc}): compose.yaml runs MLflow on one")
    name = f"nba_stack_{os.getpid()}_{secrets.token_hex(4)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass(frozen=True)
class Stack:
    """The running stack: the replicas' URLs, an admin key, MLflow's registry, Redis, the processes."""

    replicas: dict[str, str]
    key: str
    models: ModelRegistry
    redis: redis.Redis
    world: Path
    """The session's world, which the data volume's world links to (its customers and agents)."""
    archive: Path
    """The data volume's world, where the events consumer archives."""
    processes: list[Process]

    def client(self, replica: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.replicas[replica], timeout=10, headers={"Authorization": f"Bearer {self.key}"}
        )

    def versions(self, alias: str) -> dict[str, str]:
        """Registered name -> version the MLflow server's ``alias`` names, for each model."""
        return {self.models.model_name(kind): self.models.version_for(kind, alias) for kind in MODEL_KINDS}


def _register(source: ModelRegistry, target: ModelRegistry) -> None:
    """The session's champions and challengers registered in ``target`` under the same aliases and tags."""
    for alias in (CHAMPION, CHALLENGER):
        for kind in MODEL_KINDS:
            bundle, _ = source.load(kind, alias)
            _, tags = source.tags_of(kind, alias)
            target.log_and_register(bundle, params={}, tags=tags, aliases=(alias,))


def _stop(processes: list[Process]) -> None:
    """SIGTERM to every process at once, as ``docker compose down`` sends it, once; then each is waited for.

    Once: a second SIGTERM, after a worker has finished its batch and removed its handler, would end it by the signal
    while it exits, and the test could not tell a clean stop from a killed one."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait_or_kill()


@pytest.fixture(scope="module")
def stack(
    postgres_database: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    """The stack up, as after ``docker compose up``.

    The session's world and models are asked for once MLflow's server is starting, not in the signature (where
    pytest would build them first): where no PostgreSQL answers, the skip costs no training, and a session that has
    not trained yet trains while the server starts.
    """
    root = tmp_path_factory.mktemp("stack")
    logs = root / "logs"
    logs.mkdir()
    spec = compose.load({"NBA_DEMO_CUSTOMERS": str(TEST_CUSTOMERS)})  # the session's world is this size
    seconds: dict[str, float] = {}
    processes: list[Process] = []
    with ExitStack() as running:
        running.callback(_stop, processes)
        started = time.monotonic()
        mlflow_port = free_port()
        mlflow_svc = compose.service(spec, "mlflow")
        argv = compose.replace_options(
            compose.command(mlflow_svc),
            {
                "--backend-store-uri": postgres_database,
                "--artifacts-destination": str(root / "mlflow-artifacts"),
                "--host": "127.0.0.1",
                "--port": str(mlflow_port),
                "--workers": "1",  # each uvicorn worker imports MLflow: seconds of the 2 shared cores
            },
        )
        processes.append(_start("mlflow", argv, _base_env() | compose.environment(mlflow_svc), logs))
        world: Path = request.getfixturevalue("world")
        redis_url: str = request.getfixturevalue("redis_url")
        session_models: ModelRegistry = request.getfixturevalue("model_registry")
        request.getfixturevalue("champions")
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        _until(lambda: _answers(f"{mlflow_url}/health"), "MLflow's /health", processes)
        seconds["mlflow up"] = time.monotonic() - started

        data = root / "data"  # the nba-data volume
        own_world(data, world)
        models = ModelRegistry(
            MlflowSettings(tracking_uri=mlflow_url, experiment="nba-copilot", model_prefix="nba"), data
        )
        mark = time.monotonic()
        _register(session_models, models)
        seconds["models registered"] = time.monotonic() - mark
        key = KeyFile(data / "keys.json").create(Role.ADMIN, "stack-admin")[1]  # `nba keys create` on the volume
        client = redis.Redis.from_url(redis_url)
        running.callback(client.close)
        client.flushdb()  # the demo step materializes into an empty store, as into compose's new redis-data volume
        places = {"REDIS_URL": redis_url, "MLFLOW_TRACKING_URI": mlflow_url, "NBA_DATA_DIR": str(data)}

        def env_of(name: str, **extra: str) -> dict[str, str]:
            env = compose.environment(compose.service(spec, name))
            assert places.keys() <= env.keys(), f"{name} no longer sets {places.keys() - env.keys()}"
            image = {k: v for k, v in compose.image_env().items() if k.startswith("NBA_")}  # not the image's PATH
            return _base_env() | image | env | places | extra

        demo = compose.command(compose.service(spec, "demo"))
        mark = time.monotonic()
        built = subprocess.run(
            [str(BIN / demo[0]), *demo[1:]],
            env=env_of("demo"),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        seconds["demo step"] = time.monotonic() - mark
        output = built.stdout + built.stderr
        assert built.returncode == 0, output
        assert "demo world: reusing" in output
        for alias in (CHAMPION, CHALLENGER):
            for kind in MODEL_KINDS:
                assert f"nba-{kind}: {alias} is version" in output, "the demo step found every registered model"
        assert "Training" not in output

        mark = time.monotonic()
        replicas: dict[str, str] = {}
        for name in ("api-1", "api-2"):
            port = free_port()
            env = env_of(name, NBA_HOST="127.0.0.1", NBA_PORT=str(port))
            processes.append(_start(name, compose.command(compose.service(spec, name)), env, logs))
            replicas[name] = f"http://127.0.0.1:{port}"
        processes.append(_start("shadow", compose.command(compose.service(spec, "shadow")), env_of("shadow"), logs))
        processes.append(_start("events", compose.command(compose.service(spec, "events")), env_of("events"), logs))
        for name, url in replicas.items():
            _until(functools.partial(_answers, f"{url}/ready"), f"{name}'s /ready", processes)
        seconds["replicas ready"] = time.monotonic() - mark
        consumer = compose.environment(compose.service(spec, "events"))["NBA_EVENTS_CONSUMER"]
        _until(lambda: _consuming(client, consumer), "the events consumer in its group", processes)
        seconds["stack up"] = time.monotonic() - started
        print("stack, seconds:", ", ".join(f"{step} {s:.1f}" for step, s in seconds.items()))  # shown with -s
        yield Stack(replicas, key, models, client, world, data / "world", processes)
        for process in processes:
            assert process.popen.poll() is None, f"{process.name} died during the tests\n{process.tail()}"
    for process in processes:  # stopped by SIGTERM as compose stops them: each ends cleanly
        assert process.popen.returncode in (0, -signal.SIGTERM), process.tail()
    (events,) = [p for p in processes if p.name == "events"]
    assert events.popen.returncode == 0, f"on SIGTERM the consumer finishes its batch and exits\n{events.tail()}"
    last = events.log.read_text().strip().splitlines()[-1]
    assert re.match(r"[\d,]+ events: [\d,]+ applied, [\d,]+ duplicates, ", last), f"its totals\n{events.tail()}"


def _consuming(client: redis.Redis, consumer: str) -> bool:
    """Whether ``consumer`` has read the events stream as a member of the consumer group (its first read)."""
    stream = events_stream("nba")
    if not client.exists(stream):
        return False
    if DEFAULT_GROUP.encode() not in {g["name"] for g in client.xinfo_groups(stream)}:
        return False
    return consumer.encode() in {c["name"] for c in client.xinfo_consumers(stream, DEFAULT_GROUP)}


def _customers(world: Path, n: int) -> list[str]:
    ids = pq.read_table(world / "customer_snapshots.parquet", columns=["customer_id"]).column("customer_id")
    return sorted(set(ids.to_pylist()))[:n]


def _agents(world: Path, n: int) -> list[str]:
    ids = pq.read_table(world / "agent_snapshots.parquet", columns=["agent_id"]).column("agent_id")
    return sorted(set(ids.to_pylist()))[:n]


def _recommend(http: httpx.Client, customer: str) -> dict[str, Any]:
    answer = http.post("/v1/recommend", json={"customer_id": customer, "channel": "voice"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["degraded"] is False, body["degraded_reasons"]
    return body


def _assign(http: httpx.Client, customer: str, agents: list[str]) -> dict[str, Any]:
    body = {"customer_id": customer, "intent": "billing", "channel": "voice", "language": "en", "agent_ids": agents}
    answer = http.post("/v1/assign", json=body)
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    assert out["degraded"] is False, out["degraded_reasons"]
    assert out["ranked_by"] == "resolution_model"
    return out


def _features(http: httpx.Client, customer: str) -> dict[str, Any]:
    answer = http.get(f"/v1/customers/{customer}/features")
    assert answer.status_code == 200, answer.text
    return {f["name"]: f["value"] for f in answer.json()["features"]}


def _remembered(stack: Stack, decision_id: str) -> None:
    """Wait for a decision's record, written after its answer (not awaited), to land in Redis."""
    key = f"nba:decision:{{{decision_id}}}"
    _until(lambda: bool(stack.redis.exists(key)), f"decision {decision_id}'s record", stack.processes, timeout=5)


def test_both_replicas_serve_the_mlflow_server_s_champions_undegraded(stack: Stack) -> None:
    champions = stack.versions(CHAMPION)
    customers = _customers(stack.world, 3)
    agents = _agents(stack.world, 20)
    for name in stack.replicas:
        with stack.client(name) as http:
            health = http.get("/health").json()
            assert health["model_versions"] == champions
            assert health["models_from"] == dict.fromkeys(champions, "registry")
            assert health["model_problems"] == {}
            ready = http.get("/ready").json()
            assert (ready["ready"], ready["redis"], ready["models"]) == (True, "ok", "ok")
            for customer in customers:
                answer = _recommend(http, customer)
                assert answer["model_versions"] == {k: v for k, v in champions.items() if not k.endswith("resolution")}
                assert answer["actions"], "every customer has at least one action to offer"
            assigned = _assign(http, customers[0], agents)
            assert assigned["model_versions"] == champions
            assert {a["agent_id"] for a in assigned["agents"]} <= set(agents)


def test_a_decision_made_on_one_replica_takes_its_feedback_on_the_other(stack: Stack) -> None:
    customer = _customers(stack.world, 4)[-1]
    with stack.client("api-1") as one, stack.client("api-2") as two:
        before = _features(one, customer)
        answer = _recommend(one, customer)
        offered = next(a["action_id"] for a in answer["actions"] if a["action_id"] != "no_action")
        _remembered(stack, answer["decision_id"])
        accepted = {"decision_id": answer["decision_id"], "action_id": offered, "outcome": "accepted"}
        first = two.post("/v1/feedback", json=accepted)
        assert first.status_code == 200, first.text
        assert first.json() == {
            "decision_id": answer["decision_id"],
            "kind": "recommend",
            "recorded": [offered],
            "duplicates": [],
            "events_applied": 2,
        }
        again = one.post("/v1/feedback", json=accepted).json()
        assert (again["recorded"], again["duplicates"]) == ([], [offered]), "one Redis: the first answer stands"
        after = _features(one, customer)
        assert after["offers_accepted_90d"] == before["offers_accepted_90d"] + 1
        assert after["last_offer"] == offered

        routed = _assign(two, customer, _agents(stack.world, 20))
        _remembered(stack, routed["decision_id"])
        resolved = one.post("/v1/feedback", json={"decision_id": routed["decision_id"], "resolved": True})
        assert resolved.status_code == 200, resolved.text
        assert (resolved.json()["kind"], resolved.json()["recorded"]) == ("assign", ["resolved"])


def test_the_shadow_worker_replays_every_decision_of_both_replicas_with_the_challengers(stack: Stack) -> None:
    champions, challengers = stack.versions(CHAMPION), stack.versions(CHALLENGER)
    assert all(challengers[name] != version for name, version in champions.items()), "two versions of each model"
    decided: dict[str, str] = {}
    agents = _agents(stack.world, 20)
    for name in stack.replicas:
        with stack.client(name) as http:
            for customer in _customers(stack.world, 12)[6:]:
                decided[_recommend(http, customer)["decision_id"]] = "recommend"
                decided[_assign(http, customer, agents)["decision_id"]] = "assign"

    def replayed() -> dict[str, Any]:
        results = {}
        for kind in KINDS:
            for _, fields in stack.redis.xrange(results_key("nba", kind)):
                result = decode_result(fields[FIELD])
                results[result.decision_id] = result
        return results

    _until(lambda: decided.keys() <= replayed().keys(), "the shadow worker's results", stack.processes, timeout=60)
    results = replayed()
    for decision_id, kind in decided.items():
        result = results[decision_id]
        assert result.kind == kind
        assert result.champion_models.items() <= champions.items()
        assert result.challenger_models
        assert result.challenger_models.items() <= challengers.items(), "the challenger alias of the MLflow server"
        assert sorted(result.challenger) == sorted(result.champion), "the same candidates, ranked by the challenger"
    for kind in KINDS:  # everything read was acknowledged: nothing waits to be replayed again
        (group,) = [g for g in stack.redis.xinfo_groups(stream_key("nba", kind)) if g["name"] == GROUP.encode()]
        assert group["pending"] == 0
        assert group["last-delivered-id"] == stack.redis.xrevrange(stream_key("nba", kind), count=1)[0][0]


def _archived(archive: Path, event_id: str) -> int:
    """Rows of ``event_id`` in the archive's parts, as written: each write of it counts."""
    parts = archived_parts(archive, "customer")
    return sum(pq.read_table(p, columns=["event_id"]).column("event_id").to_pylist().count(event_id) for p in parts)


def _caught_up(client: redis.Redis) -> bool:
    """The consumer group has been delivered every entry of the stream and acknowledged them all."""
    stream = events_stream("nba")
    (group,) = [g for g in client.xinfo_groups(stream) if g["name"] == DEFAULT_GROUP.encode()]
    return group["pending"] == 0 and group["last-delivered-id"] == client.xinfo_stream(stream)["last-generated-id"]


def test_an_event_sent_through_either_replica_or_the_stream_is_served_by_both_and_archived_once(stack: Stack) -> None:
    customer = _customers(stack.world, 14)[-1]
    tag = secrets.token_hex(4)
    login = {"type": "login", "event_id": f"stack-login-{tag}", "customer_id": customer}
    sentiment = {"type": "sentiment", "event_id": f"stack-sentiment-{tag}", "customer_id": customer, "score": -0.55}
    with stack.client("api-1") as one, stack.client("api-2") as two:
        before = _features(two, customer)
        assert before["last_sentiment"] != pytest.approx(-0.55)

        sent = one.post("/v1/events", json=login)
        assert sent.status_code == 200, sent.text
        assert sent.json()["results"] == [{"event_id": login["event_id"], "status": "applied"}]
        assert _features(two, customer)["logins_7d"] == before["logins_7d"] + 1, "applied at once, on one Redis"
        _until(lambda: _archived(stack.archive, login["event_id"]) == 1, "the login archived", stack.processes, 30)

        retried = two.post("/v1/events", json=login)  # a producer's retry through the other replica
        assert retried.status_code == 200, retried.text
        assert retried.json()["results"] == [{"event_id": login["event_id"], "status": "duplicate"}]
        assert _features(one, customer)["logins_7d"] == before["logins_7d"] + 1, "applied once"

        # A producer that appends to the stream itself, as the README says: only the consumer can apply this one.
        stack.redis.xadd(events_stream("nba"), {EVENT_FIELD: json.dumps(sentiment)})
        _until(
            lambda: _features(one, customer)["last_sentiment"] == pytest.approx(-0.55),
            "the consumer applying an event of the stream",
            stack.processes,
            30,
        )
        after = _features(two, customer)
        assert after["last_sentiment"] == pytest.approx(-0.55)
        assert after["logins_7d"] == before["logins_7d"] + 1, "the consumer applied the API's login again: no change"

    _until(lambda: _caught_up(stack.redis), "the consumer acknowledging every entry", stack.processes, 30)
    assert _archived(stack.archive, sentiment["event_id"]) == 1
    # The retry is archived too (a crash between apply and archive must not lose an event); the offline store's
    # reads keep one row of each event (events_source: what training frames and materialization read the parts with).
    source = events_source(archived_parts(stack.archive, "customer"), "customer_id")
    ids = (login["event_id"], sentiment["event_id"])
    rows = duckdb.sql(f"SELECT event_id, customer_id, type, score FROM {source} WHERE event_id IN {ids} ORDER BY 1")
    assert rows.fetchall() == [
        (login["event_id"], customer, "login", None),
        (sentiment["event_id"], customer, "sentiment", -0.55),
    ]
