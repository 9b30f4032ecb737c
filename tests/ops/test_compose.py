"""compose.yaml and the Dockerfile, held to the code they run: no Docker engine runs where the tests do, so what can
be checked without one is checked here (the processes themselves run in ``tests/e2e/test_stack.py``).

Compose's own parser is not here either: ``docker compose config --quiet`` (Docker Compose v2.40.3, which needs no
engine) accepted the file on 2026-12-05, before the ``events`` service was added (not run on it since: no Compose v2
client was at hand); run it after changing the file where a Compose v2 client is installed.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any
from urllib.parse import urlsplit

import mlflow.environment_variables
import pytest
from mlflow.cli import cli as mlflow_cli

from features.event_stream import DEFAULT_GROUP
from service.cli import main
from tests.ops import compose
from tests.ops.environment import ROOT, variables

SERVICES = {"redis", "postgres", "mlflow", "demo", "api-1", "api-2", "events", "shadow"}
REPLICAS = ("api-1", "api-2")
WORKERS = ("events", "shadow")
"""The long-running processes that serve no HTTP: the events consumer and the shadow worker."""
COMPOSE_STOP_GRACE_S = 10
"""How long ``docker compose stop`` waits after SIGTERM before SIGKILL, unless a service sets ``stop_grace_period``."""


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return compose.load()


def test_the_stack_is_the_replicas_redis_mlflow_on_postgresql_the_two_workers_and_the_demo_step(
    spec: dict[str, Any],
) -> None:
    assert set(spec["services"]) == SERVICES
    ours = {name for name, svc in spec["services"].items() if svc.get("image") == compose.IMAGE}
    assert ours == {"mlflow", "demo", *REPLICAS, *WORKERS}
    for name in ours:
        assert compose.service(spec, name)["build"] == {"context": "."}, f"{name} must build the image it runs"


def test_each_of_our_services_runs_a_command_the_cli_takes(spec: dict[str, Any]) -> None:
    parsed = {
        name: compose.parse_cli(main, compose.command(compose.service(spec, name))[1:])
        for name in ("demo", *REPLICAS, *WORKERS)
    }
    assert parsed["demo"][0] == ["demo"]
    assert parsed["demo"][1]["customers"] == 50_000, "the demo's size unless NBA_DEMO_CUSTOMERS says otherwise"
    for replica in REPLICAS:
        assert parsed[replica] == (["run"], {"no_demo": True, "demo_customers": 50_000}), (
            "a replica serves what the demo step built, and never builds it itself"
        )
    assert parsed["shadow"][0] == ["shadow", "run"]
    assert parsed["shadow"][1]["kind"] == "both"
    assert parsed["events"][0] == ["events", "consume"]
    assert parsed["events"][1]["max_events"] is None, "the consumer runs until stopped"
    assert parsed["events"][1]["group"] == DEFAULT_GROUP, "the group the service's stream is read by"
    (cmd,) = [i.text for i in compose.dockerfile() if i.keyword == "CMD"]
    image_cmd = json.loads(cmd)
    assert image_cmd[0] == "nba"
    assert compose.parse_cli(main, image_cmd[1:])[0] == ["run"], "docker run without a command serves"
    smaller = compose.load({"NBA_DEMO_CUSTOMERS": "5000"})
    assert compose.parse_cli(main, compose.command(compose.service(smaller, "demo"))[1:])[1]["customers"] == 5_000


def test_mlflow_runs_on_postgresql_with_its_artifacts_on_a_volume_and_answers_the_name_the_others_call(
    spec: dict[str, Any],
) -> None:
    svc = compose.service(spec, "mlflow")
    argv = compose.command(svc)
    assert argv[:2] == ["mlflow", "server"]
    path, params = compose.parse_cli(mlflow_cli, argv[1:])  # every flag exists in the installed MLflow
    assert path == ["server"]
    backend = urlsplit(params["backend_store_uri"])
    postgres = compose.environment(compose.service(spec, "postgres"))
    assert backend.scheme == "postgresql+psycopg", "the driver the postgres extra installs, named in the URL"
    assert (backend.username, backend.password, backend.hostname, backend.port, backend.path) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        "postgres",
        5432,
        f"/{postgres['POSTGRES_DB']}",
    )
    tracking = urlsplit(compose.environment(compose.service(spec, "api-1"))["MLFLOW_TRACKING_URI"])
    assert (tracking.hostname, tracking.port) == ("mlflow", params["port"])
    assert f"{tracking.hostname}:{tracking.port}" in params["allowed_hosts"].split(","), (
        "MLflow refuses a Host header --allowed-hosts does not list"
    )
    assert params["serve_artifacts"], "artifacts go through the server"
    assert params["default_artifact_root"] is None, "artifacts go through the server"
    (volume,) = svc["volumes"]
    name, target = volume.split(":")[:2]
    assert name in spec["volumes"]
    assert params["artifacts_destination"].startswith(f"{target}/")
    assert [p.split(":")[-1] for p in svc["ports"]] == [str(params["port"])]
    assert compose.environment(svc) == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    assert hasattr(mlflow.environment_variables, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION")


def test_every_variable_set_for_our_processes_is_one_the_code_reads(spec: dict[str, Any]) -> None:
    known = variables()
    for name in ("demo", *REPLICAS, *WORKERS):
        unknown = set(compose.environment(compose.service(spec, name))) - set(known)
        assert unknown == set(), f"{name} sets {unknown}, which nothing reads"
    assert compose.variables_used(compose.COMPOSE_FILE.read_text()) <= set(known)
    ours = {k for k in compose.image_env() if k.startswith(("NBA_", "MLFLOW_", "REDIS_"))}
    assert ours == {"NBA_HOST", "NBA_PORT", "NBA_DATA_DIR"}
    assert ours <= set(known)


def test_our_processes_share_one_redis_one_mlflow_and_one_data_volume(spec: dict[str, Any]) -> None:
    image = compose.image_env()
    for name in ("demo", *REPLICAS, *WORKERS):
        env = compose.environment(compose.service(spec, name))
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["NBA_DATA_DIR"] == image["NBA_DATA_DIR"]
    redis_cmd = compose.command(compose.service(spec, "redis"))
    assert "--port" not in redis_cmd
    assert "--appendonly" in redis_cmd
    for name in ("demo", *REPLICAS, "events"):
        assert compose.service(spec, name)["volumes"] == [f"nba-data:{image['NBA_DATA_DIR']}"], (
            "the keys file, the world (the events consumer archives into it) and the last-known-good models are shared"
        )
    assert compose.service(spec, "shadow")["volumes"] == [], "the shadow worker keeps nothing on disk"
    used = {
        v.split(":")[0] for svc in spec["services"].values() for v in svc.get("volumes") or [] if not v.startswith("/")
    }
    assert used == set(spec["volumes"])


def test_the_replicas_publish_the_image_s_port_on_loopback_each_on_its_own(spec: dict[str, Any]) -> None:
    port = compose.image_env()["NBA_PORT"]
    exposed = [i.text for i in compose.dockerfile() if i.keyword == "EXPOSE"]
    assert exposed == [port]
    published = []
    for replica in REPLICAS:
        (mapping,) = compose.service(spec, replica)["ports"]
        host_ip, host_port, target = mapping.split(":")
        assert (host_ip, target) == ("127.0.0.1", port)
        published.append(host_port)
    assert len(set(published)) == len(REPLICAS)


def test_nothing_starts_before_what_it_needs(spec: dict[str, Any]) -> None:
    services = spec["services"]
    for name, svc in services.items():
        for needed, how in (svc.get("depends_on") or {}).items():
            condition = how["condition"]
            if condition == "service_healthy":
                check = services[needed].get("healthcheck") or {}
                assert check.get("test"), f"{name} waits for {needed}'s healthcheck"
                assert not check.get("disable"), f"{name} waits for {needed}'s healthcheck"
            if condition == "service_completed_successfully":
                assert services[needed].get("restart") == "no", f"{needed} is a one-shot step"
    for name in ("demo", *REPLICAS, *WORKERS):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    for name in (*REPLICAS, *WORKERS):
        assert services[name]["depends_on"]["demo"]["condition"] == "service_completed_successfully"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_only_the_replicas_keep_the_image_s_healthcheck_of_the_api(spec: dict[str, Any]) -> None:
    (check,) = [i.text for i in compose.dockerfile() if i.keyword == "HEALTHCHECK"]
    assert "/health" in check
    assert "NBA_PORT" in check
    for replica in REPLICAS:
        assert "healthcheck" not in compose.service(spec, replica)
    for name in ("demo", *WORKERS):
        assert compose.service(spec, name)["healthcheck"] == {"disable": True}, f"{name} serves no HTTP"


def test_the_image_builds_both_c_parts_installs_the_postgres_driver_and_runs_as_a_user() -> None:
    instructions = compose.dockerfile()
    assert len({i.stage for i in instructions}) >= 2, "multi-stage: the compiler stays in the build stage"
    build = [i for i in instructions if i.stage == 0]
    final = [i for i in instructions if i.stage == max(i.stage for i in instructions)]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {i.text.split()[0] for i in build if i.keyword == "COPY"} | {
        part for i in build if i.keyword == "COPY" for part in i.text.split()[:-1]
    }
    for package in project["tool"]["setuptools"]["packages"]:
        assert package.split(".")[0] in copied, f"the build stage does not copy {package}"
    run = " ".join(i.text for i in build if i.keyword == "RUN")
    assert "'.[postgres]'" in run
    assert "postgres" in project["project"]["optional-dependencies"]
    for ext in project["tool"]["setuptools"]["ext-modules"]:
        (source,) = ext["sources"]
        assert source.split("/")[0] in copied
        assert source in run, f"the build stage does not check that {source} was built"
    assert "gcc" in run
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not set(ignored) & copied, "the .dockerignore drops something the build copies"
    assert ".venv" in ignored
    assert ".nba" in ignored
    (user,) = [i.text for i in final if i.keyword == "USER"]
    assert user not in ("root", "0")
    assert any(i.keyword == "COPY" and i.text.startswith("--from=") for i in final)


def test_each_worker_has_a_name_of_its_own_and_stops_within_compose_s_grace_period(spec: dict[str, Any]) -> None:
    """A worker keeps its consumer name across restarts (it takes up what it had read and not acknowledged), and
    SIGTERM, which ``docker compose stop`` sends through the image's init to ``nba``, finishes the batch in hand: each
    waits at most ``--block-ms`` for a read, well within the time compose gives before SIGKILL."""
    names = {
        "events": compose.environment(compose.service(spec, "events"))["NBA_EVENTS_CONSUMER"],
        "shadow": compose.environment(compose.service(spec, "shadow"))["NBA_SHADOW_CONSUMER"],
    }
    assert all(names.values()), names
    assert len(set(names.values())) == len(WORKERS)
    argv = compose.command(compose.service(spec, "events"))[1:]
    block_ms = compose.parse_cli(main, argv)[1]["block_ms"]
    assert block_ms / 1000 < COMPOSE_STOP_GRACE_S / 2
    for name in WORKERS:
        svc = compose.service(spec, name)
        assert svc["init"] is True, f"{name}: without an init as PID 1, SIGTERM would not reach nba"
        assert svc.get("stop_signal", "SIGTERM") == "SIGTERM"
        assert "stop_grace_period" not in svc
        assert svc["restart"] == "unless-stopped"
