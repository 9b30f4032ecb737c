"""The ``nba`` command as a user runs it: help everywhere, one clear line for each set-up mistake,
and ``nba run`` serving the README's curl lines."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from rich.console import Console

from features import Registry
from service.catalog import Catalog
from service.cli import main
from service.keys import KeyFile
from service.keys_cli import ensure_demo_keys
from tests.conftest import free_port
from training.console import Reporter

NBA = str(Path(sys.executable).parent / "nba")
README = Path(__file__).resolve().parents[2] / "README.md"


def _clean_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The user's environment without any store override: the embedded defaults are under test."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "MLFLOW_TRACKING_URI") and not k.startswith("NBA_")
    }
    # The tests' demo is the session world's size: the 50,000-customer default takes minutes to build and train.
    demo = {"NBA_DEMO_CUSTOMERS": "5000", "NBA_TRAIN_THREADS": "1"}
    return {**env, "NBA_DATA_DIR": str(data_dir), "NBA_PORT": str(port), **demo, **extra}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run"],
        ["demo"],
        ["train"],
        ["train", "churn"],
        ["train", "propensity"],
        ["train", "resolution"],
        ["events"],
        ["events", "consume"],
        ["events", "publish"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
    ],
    ids=lambda args: "-".join(args) or "nba",
)
def test_every_command_has_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output
    assert len(result.output.splitlines()) > 3


def test_run_stops_with_one_line_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([NBA, "run"], env=_clean_env(tmp_path, port), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "NBA_PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_stops_with_one_line_when_redis_url_is_broken(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    env = _clean_env(tmp_path, free_port(), REDIS_URL=dead)
    done = subprocess.run([NBA, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"REDIS_URL={dead} does not answer" in done.stderr
    assert "unset REDIS_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_rejects_a_bad_environment_variable_naming_it(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, free_port())
    env["NBA_PORT"] = "eighty"
    done = subprocess.run([NBA, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "invalid environment setting: port" in done.stderr


def _readme_curls(exported: dict[str, str]) -> list[tuple[str, dict[str, object], dict[str, str]]]:
    """The README's curl lines, in the order a reader meets them, as (path, JSON body, headers), with the shell
    variables they use (the keys ``make run`` shows) taken from ``exported``."""
    calls: list[tuple[str, dict[str, object], dict[str, str]]] = []
    for line in README.read_text().splitlines():
        if line.startswith("curl ") and "/v1/" in line:
            words = shlex.split(line)
            url = next(w for w in words if w.startswith("http://127.0.0.1:8000/"))
            headers = dict(
                words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H" and ": " in words[i + 1]
            )
            headers = {k: re.sub(r"\$(\w+)", lambda m: exported[m[1]], v) for k, v in headers.items()}
            body = json.loads(words[words.index("-d") + 1])
            calls.append((url.removeprefix("http://127.0.0.1:8000"), body, headers))
    assert [path for path, _, _ in calls] == [
        "/v1/recommend",
        "/v1/assign",
        "/v1/recommend",  # with the live context: a cancel intent
        "/v1/recommend",  # and a customer asking for a person
        "/v1/feedback",  # on the first recommend's decision
        "/v1/events",  # an identifier linked to the demo customer, one event on its own
        "/v1/customers/lookup",  # and found by it
        "/v1/events",  # a live event on its own
        "/v1/events",  # a batch of two
    ], "the README's curl lines changed: test what they show"
    return calls


def _run_until_ready(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], float]:
    start = time.monotonic()
    proc = subprocess.Popen(
        [NBA, "run"],
        env=_clean_env(data_dir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = start + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nba run exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc, time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("nba run did not become ready in 240 s")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return out


def _demo_keys(data_dir: Path) -> dict[str, str]:
    """What the first ``make run`` on a terminal shows, read back as the shell would: ``NBA_..._KEY`` → key.

    The subprocess below has no terminal, so it makes no keys (``test_keys.py`` holds that); these are made by
    the same function ``nba run`` calls, into the file it reads."""
    out = io.StringIO()
    ensure_demo_keys(KeyFile(data_dir / "keys.json"), Reporter(Console(file=out, width=60)), make=True)
    return dict(re.findall(r"export (NBA_\w+_KEY)=(\S+)", out.getvalue()))


def test_run_builds_the_demo_then_serves_the_readme_curl_lines(tmp_path: Path) -> None:
    data_dir, port = tmp_path, free_port()
    exported = _demo_keys(data_dir)
    proc, _ = _run_until_ready(data_dir, port)
    try:
        answers: list[dict[str, Any]] = []
        for path, body, headers in _readme_curls(exported):
            if body.get("decision_id") == "<the decision_id>":  # the README's placeholder: the first answer's id
                body = {**body, "decision_id": answers[0]["decision_id"]}
            response = httpx.post(f"http://127.0.0.1:{port}{path}", json=body, headers=headers, timeout=10)
            assert response.status_code == 200, (path, response.text[:200])
            answers.append(response.json())
        recommended, assigned, cancelling, asking, feedback, linked, found, one, batch = answers
    finally:
        first_output = _stop(proc)
    assert proc.returncode == 0
    assert len(recommended["actions"]) >= 3
    assert recommended["cold_start"] is False
    priority = Catalog.load(Registry.load()).priority
    keys = [(priority[a["group"]], -a["score"]) for a in recommended["actions"]]
    assert keys == sorted(keys), "ranked by group priority, then score"
    lifted = [a for a in cancelling["actions"] if a["group"] == "retention"]
    assert lifted
    assert all(a["context_weight"] == 2.0 for a in lifted)
    assert asking["actions"][0]["action_id"] == "transfer_specialist"
    assert feedback["recorded"] == ["plan_upgrade"]
    assert feedback["events_applied"] == 2
    assert assigned["agents"]
    assert assigned["degraded"] is False
    assert one == {
        "applied": 1,
        "duplicates": 0,
        "too_old": 0,
        "erased": 0,
        "results": [{"event_id": "ev-1", "status": "applied"}],
    }
    assert [r["status"] for r in batch["results"]] == ["applied", "applied"]
    assert linked["applied"] == 1
    assert found["customer_id"] == "C000042"
    assert re.search(r"✓ Simulating the demo world .*\(\d+\.\d s\)", first_output)
    assert "API keys: 5 in " in first_output
    assert "Training and registering the churn model" in first_output

    # The second run reuses everything the first one built.
    proc, _ = _run_until_ready(data_dir, port)
    second_output = _stop(proc)
    assert "reusing" in second_output
    assert "already holds this world" in second_output
    assert "Training and registering" not in second_output
    assert "nba-churn: champion is version 1" in second_output


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("NBA_SHADOW_RESULTS_MAX_LEN", "10", "shadow_results_max_len"),
        ("NBA_DECISION_LOG_RETENTION_DAYS", "0", "decision_log_retention_days"),
    ],
)
def test_shadow_run_rejects_a_bad_setting_naming_it(tmp_path: Path, variable: str, value: str, field: str) -> None:
    env = {"NBA_DATA_DIR": str(tmp_path), variable: value}
    done = CliRunner().invoke(main, ["shadow", "run", "--max-decisions", "1"], env=env)
    assert done.exit_code != 0
    assert f"invalid environment setting: {field}" in done.output
