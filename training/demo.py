"""The demo: a simulated contact center materialized into Redis, with trained champion models.

Each stage is skipped when its result already exists, so a second ``nba run`` is quick:
the world's parquet tables carry a ``world.json`` stamp, Redis carries a marker naming the contract
version and the world it holds, and MLflow is asked whether each model has a champion.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.compute as pc

from features import OfflineStore, OnlineStore, Registry, connect, materialize, materialize_events
from features.online_store import STORE_LAYOUT
from training.action_value import NO_ACTION
from training.bundle import ModelKind
from training.console import Reporter
from training.errors import ModelNotFound
from training.report import register_result
from training.routing_evaluation import RoutingEvaluation
from training.tracking import CHALLENGER, CHAMPION, ModelRegistry
from training.train import ACTIONS_TAG, TrainParams, train_model
from training.world import WorldConfig, WorldSummary, simulate
from training.world.config import WORLD_STAMP

WORLD_FORMAT = 3
"""The shape of the world's tables; a stamp of another format is rebuilt. 2: a monthly agent snapshot and the
contacts' ``started_at``, which the resolution model's point-in-time frame needs. 3: the routing oracle's
hidden tables (``contact_truth``, ``agent_truth``) and agents with a latent skill behind their rating."""
MARKER_KEY = "meta:materialized"
QUEUE_SKILLS = ("billing", "technical", "retention", "sales")
# Materializing writes pipelines of thousands of hashes: far slower than a request's read, but a server
# that stops answering must still end the demo with an error rather than hang it.
MATERIALIZE_TIMEOUT_S = 30.0


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """The demo world's size: fifty thousand customers, a hundred agents, six months.

    The ratio sets the contact center's volume: about 24,000 contacts a month, some 240 an agent (2,200 and 22 with
    the 5,000 customers the demo had at first). An agent's measured resolution rate for an intent is the evidence
    of its latent skill, and with 22 contacts a month it was too noisy for routing by the resolution model to
    reach 80% of the oracle's gain over skills-only routing on every test world (76% on seeds 2024-2026, 88% with
    20,000 customers); and the model's test month held 2,100 contacts, on which a perfectly calibrated model's ECE is
    already 0.021 by chance (8,500 contacts with 20,000 customers, 0.011).

    Fifty thousand because the next-best-action policy needs them: trained on 20,000 customers it captured 73.5% of
    the oracle's value gain, on 50,000 89.1% (goal 85%; :mod:`training.action_value`). ``nba demo`` builds it in
    2 min 13 s on the 2-core machine with nothing else running (2 min 33 s with the point-in-time join that paired
    every label with every event of its customer, before :mod:`features.event_join`); other jobs on the cores make
    it several times longer, LightGBM's threads waiting on each other. The README's benchmarks have the figures.
    """

    customers: int = 50_000
    agents: int = 100
    months: int = 6
    seed: int = 7


def ensure_world(world_dir: Path, config: DemoConfig, reporter: Reporter, *, force: bool = False) -> dict[str, object]:
    """Simulate the world unless a stamp for the same config and feature contract is there; returns the stamp.

    The contract is part of the stamp because the world's tables carry a column per event field it declares:
    a world simulated under an older contract lacks the new ones.
    """
    stamp_path = world_dir / WORLD_STAMP
    contract = Registry.load().version
    if not force and stamp_path.is_file():
        stamp: dict[str, object] = json.loads(stamp_path.read_text())
        same = stamp.get("config") == asdict(config) and stamp.get("contract") == contract
        if same and stamp.get("format") == WORLD_FORMAT:
            reporter.note(f"demo world: reusing {world_dir} (built {stamp['built_at']})")
            return stamp
    with reporter.step(
        f"Simulating the demo world ({config.customers:,} customers, {config.agents} agents, {config.months} months)"
    ):
        stamp, _ = simulate_world(world_dir, config, end=datetime.now(UTC).date())
    return stamp


def simulate_world(
    world_dir: Path,
    config: DemoConfig,
    *,
    end: date,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, object], WorldSummary]:
    """Simulate ``config``'s world into ``world_dir`` and stamp it, so ``nba demo`` knows what the folder holds.

    ``nba simulate`` writes through here too: a world it wrote under the demo's settings is reused by the demo,
    and one written under other settings is rebuilt rather than served with a stale stamp.
    """
    summary = simulate(
        WorldConfig(customers=config.customers, agents=config.agents, months=config.months, seed=config.seed, end=end),
        world_dir,
        progress=progress,
    )
    stamp: dict[str, object] = {
        "config": asdict(config),
        "contract": Registry.load().version,
        "format": WORLD_FORMAT,
        "end": end.isoformat(),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": {k: v for k, v in asdict(summary).items() if k != "out"},
    }
    (world_dir / WORLD_STAMP).write_text(json.dumps(stamp, indent=2))
    return stamp, summary


async def ensure_materialized(
    url: str,
    namespace: str,
    registry: Registry,
    offline: OfflineStore,
    stamp: dict[str, object],
    reporter: Reporter,
    *,
    force: bool = False,
    cluster: bool = False,
) -> None:
    """Copy the world's latest snapshots into Redis unless Redis already holds this world.

    ``cluster`` says that ``url`` is a node of a Redis Cluster (``RedisSettings.cluster``).
    """
    client = connect(url, timeout_s=MATERIALIZE_TIMEOUT_S, cluster=cluster)
    store = OnlineStore(client, registry, namespace=namespace)
    try:
        marker_key = f"{namespace}:{MARKER_KEY}"
        wanted = json.dumps(
            {"contract": registry.version, "layout": STORE_LAYOUT, "built_at": stamp["built_at"]}, sort_keys=True
        )
        if not force and (await client.get(marker_key)) == wanted.encode():
            reporter.note("online store: already holds this world")
            return
        for entity in ("customer", "agent"):
            total = offline.latest(entity).num_rows
            with (
                reporter.step(f"Materializing {total:,} {entity} snapshots into Redis"),
                reporter.bar(entity + "s", total) as bar,
            ):
                await materialize(offline, store, entity, progress=bar)
        with reporter.step("Materializing customer event state (windowed counts, last values) into Redis"):
            written = await materialize_events(offline, store, "customer")
            reporter.note(f"{written:,} customers with events in the last {store.layout('customer').horizon_days} days")
        agents = offline.latest("agent")
        for skill in QUEUE_SKILLS:
            members = agents.filter(pc.equal(agents.column(f"skill_{skill}"), True)).column("agent_id").to_pylist()
            await store.set_queue(skill, members)
        await client.set(marker_key, wanted)
    finally:
        await store.aclose()
        await client.aclose()


def ensure_models(
    models: ModelRegistry,
    registry: Registry,
    offline: OfflineStore,
    reporter: Reporter,
    *,
    force: bool = False,
    seed: int = 7,
) -> dict[str, str]:
    """Train and register each model that has no champion, or no challenger, on this feature contract; returns
    kind → champion version. A model trained on another contract, or a churn model that does not take the action
    as an input (trained before the churn model learned what offers do), is replaced, not kept: the service would
    refuse it.

    The challenger is the same learner with LightGBM's general settings (:class:`TrainParams`'s defaults, the ones
    a model of a user's own table gets) instead of :meth:`TrainParams.for_model`'s tuned ones: a model trained
    differently, so that shadow mode (``nba shadow run``, issue 8) has something to judge from the first ``make
    run`` on. On the demo it is the weaker of the two (see :mod:`training.action_value`), which the shadow report
    should find.
    """
    versions: dict[str, str] = {}
    kind: ModelKind
    for alias in (CHAMPION, CHALLENGER):
        for kind in ("churn", "propensity", "resolution"):
            current = None if force else _current(models, registry, kind, alias, reporter)
            if current is not None:
                if alias == CHAMPION:
                    versions[kind] = current
                continue
            params = TrainParams.for_model(kind, seed=seed) if alias == CHAMPION else TrainParams(seed=seed)
            with reporter.step(f"Training and registering the {kind} model's {alias}"):
                result = train_model(kind, registry, offline, params=params)
                version = register_result(models, result, aliases=(alias,))
                if alias == CHAMPION:
                    versions[kind] = version
                m = result.bundle.metrics
                reporter.note(
                    f"{models.model_name(kind)} v{version} ({alias}): test ROC-AUC {m['roc_auc']:.3f}, "
                    f"log loss {m['log_loss']:.3f}, ECE {m['ece']:.3f}"
                )
                if "routing_fcr_model" in m and alias == CHAMPION:
                    reporter.note(f"routing by it: {RoutingEvaluation.from_metrics(m).goal_line()}")
    return versions


def _current(models: ModelRegistry, registry: Registry, kind: ModelKind, alias: str, reporter: Reporter) -> str | None:
    """The version ``alias`` names for ``kind`` when it can be served on this contract, else None (and why)."""
    try:
        version, tags = models.tags_of(kind, alias)
    except ModelNotFound:
        return None
    action_aware = kind != "churn" or NO_ACTION in tags.get(ACTIONS_TAG, "").split(",")
    if tags.get("contract_version") == registry.version and action_aware:
        reporter.note(f"{models.model_name(kind)}: {alias} is version {version}")
        return version
    why = "on another feature contract" if action_aware else "without the action as an input"
    reporter.note(f"{models.model_name(kind)} v{version} ({alias}) was trained {why}")
    return None
