"""Champions change under a running service: a promotion is served within seconds without a failed request, a
corrupt or missing artifact leaves the old champion in force, and MLflow down at start means the last-known-good
copies on disk.

Each test has an MLflow store of its own, a copy of the session's (its champions, trained once per session), so
moving ``champion`` here moves nothing the other tests serve. New versions are the champion's own bundle registered
again: a new version number is what the service must notice and put in force.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from mlflow import MlflowClient

from service import Settings
from service.keys import Role
from service.model_cache import LastKnownGood
from tests.conftest import Served, free_port, logged, serve, settings_for
from training import CHAMPION, MlflowSettings, ModelRegistry

BODY = {"customer_id": "C000042", "channel": "voice"}
POLL_S = 0.2
CHURN = "nba-churn"


def _copy_store(source: Path, target: Path) -> str:
    """A consistent copy of the session's sqlite MLflow store (its artifacts stay where they are): its URI."""
    target.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target / "mlflow.db") as dst:
        src.backup(dst)
    return f"sqlite:///{(target / 'mlflow.db').resolve()}"


@pytest.fixture
def store(tmp_path: Path, data_dir: Path, champions: dict[str, str]) -> ModelRegistry:
    """A registry of the test's own holding the session's champions."""
    uri = _copy_store(data_dir / "mlflow.db", tmp_path / "mlflow")
    return ModelRegistry(MlflowSettings(tracking_uri=uri, experiment="nba-tests", model_prefix="nba"), tmp_path)


def _settings(data: Path, redis_url: str, tracking_uri: str) -> Settings:
    settings = settings_for(data, redis_url)
    return settings.model_copy(
        update={
            "service": settings.service.model_copy(update={"model_poll_s": POLL_S}),
            "mlflow": MlflowSettings(tracking_uri=tracking_uri, experiment="nba-tests", model_prefix="nba"),
        }
    )


def _register_again(store: ModelRegistry, *aliases: str) -> str:
    """The churn champion's bundle as a new version of ``nba-churn``, ``aliases`` pointed at it."""
    bundle, _ = store.load("churn")
    return store.log_and_register(
        bundle, params={}, tags={"contract_version": bundle.contract_version}, aliases=aliases
    )


def _artifact(store: ModelRegistry, version: str) -> Path:
    """Where the bundle file of ``nba-churn`` ``version`` lies in the local artifact store."""
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.tracking_uri)
    source = client.get_model_version(CHURN, version).source
    return Path(urlparse(source).path) / "bundle.joblib"


def _metric(client: httpx.Client, line_start: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def _until(what: str, check: object, seconds: float = 10.0) -> float:
    """Poll ``check()`` until true; the seconds it took."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - started < seconds, f"not within {seconds} s: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


class _Load:
    """Recommend requests in a loop on a thread of their own, each answer's status and churn version kept."""

    def __init__(self, served: Served) -> None:
        self.answers: list[tuple[int, str | None, bool]] = []
        self._served = served
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._served.client(Role.DESKTOP) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/v1/recommend", json=BODY)
                except httpx.HTTPError as exc:
                    self.answers.append((0, type(exc).__name__, True))
                    continue
                body = response.json() if response.status_code == 200 else {}
                self.answers.append(
                    (response.status_code, body.get("model_versions", {}).get(CHURN), body.get("degraded", True))
                )

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def served(tmp_path: Path, redis_url: str, store: ModelRegistry) -> Iterator[Served]:
    with serve(_settings(tmp_path / "data", redis_url, store.tracking_uri)) as running:
        yield running


def test_a_promotion_is_served_within_seconds_without_a_failed_request(
    served: Served, store: ModelRegistry, tmp_path: Path
) -> None:
    with served.client() as client:
        before = client.get("/health").json()["model_versions"][CHURN]
        with _Load(served) as load:
            _until("the load has started", lambda: len(load.answers) >= 5)
            new = _register_again(store, CHAMPION)
            took = _until("the new version is served", lambda: any(v == new for _, v, _ in load.answers[-3:]))
            served_new = len(load.answers)
            _until("a few more answers", lambda: len(load.answers) >= served_new + 5)
        health = client.get("/health").json()
        in_force = _metric(client, f'nba_model_info{{model="{CHURN}",version="{new}"}}')
        swaps = _metric(client, f'nba_model_swaps_total{{model="{CHURN}"}}')
    assert new != before
    assert took < 5
    statuses = {status for status, _, _ in load.answers}
    assert statuses == {200}, f"a request failed during the swap: {statuses}"
    assert not any(degraded for _, _, degraded in load.answers)
    versions = [v for _, v, _ in load.answers]
    switched = versions.index(new)
    assert set(versions[:switched]) == {before}
    assert set(versions[switched:]) == {new}, "the versions served went back"
    assert health["model_versions"][CHURN] == new
    assert health["models_from"][CHURN] == "registry"
    assert health["model_problems"] == {}
    assert in_force == 1.0
    assert swaps == 2.0  # the first load, then the promotion
    assert LastKnownGood(tmp_path / "data" / "last-known-good").version(CHURN) == new


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_broken_artifact_at_promotion_leaves_the_old_champion_in_force(
    served: Served, store: ModelRegistry, damage: str
) -> None:
    bad = _register_again(store)
    artifact = _artifact(store, bad)
    if damage == "corrupt":
        artifact.write_bytes(b"not a joblib file" * 100)
    else:
        shutil.rmtree(artifact.parent)
    with served.client(Role.ADMIN) as client, logged("nba.models") as records, _Load(served) as load:
        before = client.get("/health").json()["model_versions"][CHURN]
        _until("the load has started", lambda: len(load.answers) >= 5)
        store.set_alias("churn", CHAMPION, bad)
        _until("the failure is reported", lambda: CHURN in client.get("/health").json()["model_problems"])
        time.sleep(3 * POLL_S)  # a few more polls: the failed version is not put in force later either
        health = client.get("/health").json()
        failures = _metric(client, f'nba_model_load_failures_total{{model="{CHURN}"}}')
    assert health["model_versions"][CHURN] == before
    assert f"version {bad} was not put in force" in health["model_problems"][CHURN]
    # The load went on through the failed promotion: every answer full, from the old champion.
    assert {status for status, _, _ in load.answers} == {200}
    assert {version for _, version, _ in load.answers} == {before}
    assert not any(degraded for _, _, degraded in load.answers)
    assert failures == 1.0  # counted once per version, however often it is looked at
    errors = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # logged once too, not at every poll
    assert errors[0].startswith(f"{CHURN} v{bad} was not put in force: ")


def test_mlflow_down_at_start_serves_the_last_known_good_copies(
    tmp_path: Path, redis_url: str, store: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    with serve(_settings(data, redis_url, store.tracking_uri)) as first, first.client() as client:
        expected = client.get("/health").json()["model_versions"]
    # MLflow is a tracking server nobody answers on now; its client is told not to retry for minutes, as nba run does.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    down = f"http://127.0.0.1:{free_port()}"
    with logged("nba.models") as records, serve(_settings(data, redis_url, down)) as second, second.client() as client:
        health = client.get("/health").json()
        ready = client.get("/ready")
        answer = client.post("/v1/recommend", json=BODY).json()
        from_disk = _metric(client, f'nba_model_last_known_good{{model="{CHURN}"}}')
        registry_up = _metric(client, "nba_model_registry_up ")
    messages = [r.getMessage() for r in records]
    assert health["model_versions"] == expected
    assert health["models_from"] == dict.fromkeys(expected, "last_known_good")
    assert health["model_registry"] == "unreachable"
    assert ready.status_code == 200
    assert answer["model_versions"] == {k: v for k, v in expected.items() if k != "nba-resolution"}
    assert answer["degraded"] is False
    assert from_disk == 1.0
    assert registry_up == 0.0
    assert any(m.startswith("the model registry cannot be reached") for m in messages)
    assert any(
        m.startswith(f"{CHURN}: serving version {expected[CHURN]} from the last-known-good copy") for m in messages
    )
