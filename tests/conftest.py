"""Real parts for every test: a Redis server, an MLflow store, a simulated world, a served API.

Redis is the embedded Valkey (or ``REDIS_URL`` when set), flushed before each test that asks for it.
MLflow is a sqlite store with local artifacts in a temporary folder. The API is served by uvicorn on
a loopback port, the way httpx tests itself against a real server.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
import redis.asyncio
import uvicorn
from litestar.types import ASGIApp

from features import (
    EmbeddedValkey,
    EntitySchema,
    EventStreamSettings,
    OfflineSettings,
    OfflineStore,
    OnlineStore,
    RedisSettings,
    Registry,
    connect,
)
from service import ServiceSettings, Settings, create_app
from service.keys import KeyFile, Role
from service.settings import AuthSettings
from training import MlflowSettings, ModelRegistry
from training.console import Reporter
from training.demo import DemoConfig, ensure_materialized, ensure_models, simulate_world

# One LightGBM training thread per process: xdist's workers (and a demo an `nba run` subprocess builds beside them)
# train at the same time, and OpenMP threads spinning against each other slowed training tens of times.
os.environ["NBA_TRAIN_THREADS"] = "1"

TEST_CUSTOMERS = 5_000
"""Customers of the session's world (:func:`world`)."""


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: ``REDIS_URL`` if the environment names one, else an embedded Valkey for the session.

    Under pytest-xdist each worker has its own session, so its own Valkey; on a ``REDIS_URL`` each worker takes a
    database of its own (1, 2, ...), since the tests flush the database they use."""
    if os.environ.get("REDIS_URL"):
        yield _worker_database(os.environ["REDIS_URL"], os.environ.get("PYTEST_XDIST_WORKER"))
        return
    # A short directory keeps the unix socket path under the OS limit.
    with (
        tempfile.TemporaryDirectory(prefix="nba-") as tmp,
        EmbeddedValkey(Path(tmp), persist=False) as server,
    ):
        yield server.url


def _worker_database(url: str, worker: str | None) -> str:
    """``url`` as it is outside pytest-xdist, else on the database numbered after the worker (gw0 -> 1)."""
    if worker is None:
        return url
    parts = urlsplit(url)
    db = str(int(worker.removeprefix("gw")) + 1)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", db)]
        return f"unix://{parts.path}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test Redis, flushed before the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The packaged feature contract."""
    return Registry.load()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's data directory (world tables, MLflow store, artifacts)."""
    return tmp_path_factory.mktemp("nba-data")


@pytest.fixture(scope="session")
def world(data_dir: Path) -> Path:
    """The demo's world at a tenth of its customers (its seed and agents, ending today), stamped as the demo
    stamps it, so training knows it is a simulated world (the resolution model checks its oracle). Every test
    worker builds it and trains on it, and the demo's 50,000 customers would make each of those trainings about
    ten times slower; what the tests check does not need the demo's contact volume (``bench.policy`` measures
    the goals on the demo's own size)."""
    out = data_dir / "world"
    simulate_world(out, DemoConfig(customers=TEST_CUSTOMERS), end=datetime.now(UTC).date())
    return out


@pytest.fixture(scope="session")
def offline(world: Path, registry: Registry) -> OfflineStore:
    """The offline store over the test world."""
    return OfflineStore(world, registry)


@dataclass(frozen=True)
class SessionKeys:
    """One API key per role, in a keys file every test service reads (:func:`settings_for`)."""

    path: Path
    by_role: dict[Role, str]

    def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        """The header that sends ``role``'s key."""
        return {"Authorization": f"Bearer {self.by_role[role]}"}


@functools.cache
def session_keys() -> SessionKeys:
    """The session's keys, made on first use (a plain function: :func:`settings_for` is called outside fixtures)."""
    folder = tempfile.mkdtemp(prefix="nba-keys-")
    atexit.register(shutil.rmtree, folder, True)
    file = KeyFile(Path(folder) / "keys.json")
    return SessionKeys(file.path, {role: file.create(role, f"test-{role.value}")[1] for role in Role})


def settings_for(data_dir: Path, redis_url: str, *, port: int = 8000) -> Settings:
    """Settings for a test service: nothing read from the environment can leak in; `serve` picks the port.

    The service accepts the session's keys (:func:`session_keys`); `Served.client` sends the admin's.
    """
    return Settings(
        service=ServiceSettings(
            host="127.0.0.1", port=port, catalog_path=None, top_k=5, log_level="warning", model_poll_s=5.0
        ),
        auth=AuthSettings(keys_file=session_keys().path, rate_limit=1_000.0),
        redis=RedisSettings(url=redis_url, namespace="nba", timeout_ms=200),
        offline=OfflineSettings(data_dir=data_dir),
        mlflow=MlflowSettings(tracking_uri=None, experiment="nba-tests", model_prefix="nba"),
        events=EventStreamSettings(stream_max_len=1_000_000),
    )


def own_world(data: Path, world: Path) -> Path:
    """``data/world``, a world of its own whose tables link the session world's: an erasure's ledger (or anything
    else a test writes beside the tables) lands there, not in the world the other tests read."""
    own = data / "world"
    own.mkdir(parents=True)
    for table in world.iterdir():
        (own / table.name).symlink_to(table)
    return own


def own_world_settings(tmp_path: Path, world: Path, data_dir: Path, redis_url: str) -> Settings:
    """Settings over a data dir of its own (see :func:`own_world`), with the session's MLflow store."""
    own = tmp_path / "data"
    own_world(own, world)
    settings = settings_for(own, redis_url)
    shared = MlflowSettings(tracking_uri=f"sqlite:///{(data_dir / 'mlflow.db').resolve()}", experiment="nba-tests")
    return settings.model_copy(update={"mlflow": shared})


@pytest.fixture(scope="session")
def model_registry(data_dir: Path) -> ModelRegistry:
    """The session's real MLflow store (sqlite + local artifacts)."""
    return ModelRegistry(MlflowSettings(tracking_uri=None, experiment="nba-tests", model_prefix="nba"), data_dir)


@pytest.fixture(scope="session")
def champions(model_registry: ModelRegistry, registry: Registry, offline: OfflineStore, world: Path) -> dict[str, str]:
    """Churn, propensity and resolution models trained on the test world and registered as champions."""
    return ensure_models(model_registry, registry, offline, Reporter())


@pytest.fixture
def materialized(redis_client: redis.Redis, redis_url: str, registry: Registry, offline: OfflineStore) -> None:
    """The test world's latest snapshots and its event state in a freshly flushed Redis."""
    materialize_world(redis_url, registry, offline)


def materialize_world(redis_url: str, registry: Registry, offline: OfflineStore) -> None:
    """:func:`materialized` for a module's fixture: the test world in the (flushed) Redis, once for the module."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    stamp: dict[str, object] = {"built_at": f"test-{time.time_ns()}"}
    asyncio.run(ensure_materialized(redis_url, "nba", registry, offline, stamp, Reporter()))


def write_snapshots(root: Path, registry: Registry, customers: list[str], *, at: float) -> None:
    """One plain snapshot per customer taken at ``at``, so a point-in-time join has rows to join events to."""
    table: dict[str, pa.Array] = {
        "customer_id": pa.array(customers),
        "feature_ts": pa.array([datetime.fromtimestamp(at, UTC)] * len(customers), pa.timestamp("us", "UTC")),
    }
    for f in registry.entity("customer").snapshot_features:
        value = {"int": 1, "float": 1.5, "bool": True, "category": (f.categories or ("",))[0]}[f.dtype]
        table[f.name] = pa.array([value] * len(customers))
    pq.write_table(pa.table(table), root / "customer_snapshots.parquet")


def age_decision(client: redis.Redis, namespace: str, decision_id: str, days: float) -> None:
    """Move a remembered decision ``days`` back in time, as if that long had gone by since it was answered (its
    record's ``at``; the expiry stays): how a test answers what feedback holds back until later, the retention."""
    key = f"{namespace}:decision:{{{decision_id}}}"
    record = json.loads(client.get(key))  # type: ignore[arg-type]
    record["at"] -= days * 86_400
    client.set(key, json.dumps(record), keepttl=True)


def served_known(schema: EntitySchema, table: pa.Table) -> np.ndarray:
    """Which features the online store serves as known for ``table``'s rows (from :meth:`OfflineStore.as_of`).

    Those the offline store holds a value for, and every windowed count or sum of an entity the store knows:
    an empty window is a zero, not a gap. (Offline that zero is a null when no event at all joins the row.)
    """
    windowed = {f.name for f in schema.event_features if f.aggregation and f.aggregation.kind in ("count", "sum")}
    return np.column_stack(
        [
            np.full(table.num_rows, True) if f.name in windowed else np.array(table.column(f.name).is_valid())
            for f in schema.features
        ]
    )


@contextmanager
def logged(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records the logger ``name`` (and its children) emits while the block runs, any level.

    The handler sits on that logger itself, not on the root: uvicorn's start-up resets the root logger's handlers."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler, logger = Keep(logging.DEBUG), logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """A running API and the settings it was built from."""

    url: str
    settings: Settings

    def client(self, role: Role | None = Role.ADMIN) -> httpx.Client:
        """An HTTP client on the API sending ``role``'s key of the session (none when None).

        Tests of what a route does call it as admin, which may call every route; ``tests/e2e/test_auth.py``
        holds each route to its role."""
        headers = session_keys().headers(role) if role is not None else {}
        return httpx.Client(base_url=self.url, timeout=10, headers=headers)


@contextmanager
def serve(settings: Settings, build: Callable[[Settings], ASGIApp] = create_app) -> Iterator[Served]:
    """Serve ``build(settings)`` (``create_app`` unless given) with uvicorn in a thread until the block ends."""
    port = free_port()
    settings = settings.model_copy(update={"service": settings.service.model_copy(update={"port": port})})
    config = uvicorn.Config(build(settings), host="127.0.0.1", port=port, log_level=settings.service.log_level)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def api(data_dir: Path, redis_url: str, champions: dict[str, str]) -> Iterator[Served]:
    """The API with champion models, on the test Redis."""
    with serve(settings_for(data_dir, redis_url)) as served:
        yield served


@pytest.fixture
def http(api: Served, materialized: None) -> Iterator[httpx.Client]:
    """An HTTP client on the API, with the world materialized in a fresh Redis."""
    with api.client() as client:
        yield client


T = TypeVar("T")


def run_with_store(
    redis_url: str,
    registry: Registry,
    body: Callable[[OnlineStore], Awaitable[T]],
    namespace: str,
    *,
    cluster: bool = False,
    timeout_s: float = 5.0,
) -> T:
    """Run ``body`` with an online store on a client opened (and closed) inside its own event loop.

    ``cluster``: a Redis Cluster client (:func:`features.connect`) with reads timing out after ``timeout_s``."""

    async def main() -> T:
        if cluster:
            client = connect(redis_url, timeout_s=timeout_s, cluster=True)
        else:
            client = redis.asyncio.Redis.from_url(redis_url)
        store = OnlineStore(client, registry, namespace=namespace)
        try:
            return await body(store)
        finally:
            await store.aclose()
            await client.aclose()

    return asyncio.run(main())
