"""``nba demo`` and ``nba train ...``: build the demo, train and register models."""

from __future__ import annotations

import asyncio

import click

from features import (
    FeatureStoreError,
    OfflineSettings,
    OfflineStore,
    RedisSettings,
    Registry,
    online_store_url,
)
from features.console import settings_from_env
from training.bundle import ModelKind
from training.console import Reporter, abort
from training.demo import DemoConfig, ensure_materialized, ensure_models, ensure_world
from training.errors import TrainingError
from training.report import register_result
from training.settings import MlflowSettings
from training.simulate_cli import AGENTS, CUSTOMERS
from training.tracking import CHALLENGER, CHAMPION, ModelRegistry
from training.train import TrainParams, train_model


def build_demo(config: DemoConfig, reporter: Reporter, *, redis_url: str, force: bool = False) -> dict[str, str]:
    """World, online store and champion models, each built only if missing (all of them with ``force``)."""
    offline_settings = settings_from_env(OfflineSettings)
    redis_settings = settings_from_env(RedisSettings)
    registry = Registry.load()
    world_dir = offline_settings.world_dir
    offline = OfflineStore(world_dir, registry)
    stamp = ensure_world(world_dir, config, reporter, force=force)
    asyncio.run(
        ensure_materialized(
            redis_url,
            redis_settings.namespace,
            registry,
            offline,
            stamp,
            reporter,
            force=force,
            cluster=redis_settings.cluster,
        )
    )
    models = ModelRegistry(settings_from_env(MlflowSettings), offline_settings.data_dir)
    reporter.note(f"MLflow store: {models.tracking_uri}")
    return ensure_models(models, registry, offline, reporter, force=force, seed=config.seed)


@click.command("demo")
@click.option("--force", is_flag=True, help="Rebuild the world, re-materialize and retrain even if they exist.")
@CUSTOMERS
@AGENTS
@click.option("--months", type=click.IntRange(3, 36), default=6, show_default=True, help="Months of history.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulation and the training.")
def demo(force: bool, customers: int, agents: int, months: int, seed: int) -> None:
    """Build the demo world, materialize it into Redis, train and register champion models.

    Data goes under NBA_DATA_DIR (.nba); Redis is REDIS_URL or an embedded Valkey; MLflow is
    MLFLOW_TRACKING_URI or sqlite under the data dir.
    """
    reporter = Reporter()
    config = DemoConfig(customers=customers, agents=agents, months=months, seed=seed)
    try:
        with online_store_url(settings_from_env(RedisSettings), settings_from_env(OfflineSettings)) as url:
            versions = build_demo(config, reporter, redis_url=url, force=force)
    except (FeatureStoreError, TrainingError) as exc:
        abort(str(exc))
    reporter.note("champions: " + ", ".join(f"{k} v{v}" for k, v in versions.items()))


@click.group("train")
def train() -> None:
    """Train a model on the offline store's tables and register it in MLflow."""


def _train(kind: ModelKind, alias: str, seed: int) -> None:
    offline_settings = settings_from_env(OfflineSettings)
    registry = Registry.load()
    world = offline_settings.world_dir
    offline = OfflineStore(world, registry)
    reporter = Reporter()
    try:
        models = ModelRegistry(settings_from_env(MlflowSettings), offline_settings.data_dir)
        with reporter.step(f"Training the {kind} model on {world}"):
            result = train_model(kind, registry, offline, params=TrainParams(seed=seed))
        with reporter.step(f"Registering it as {models.model_name(kind)}@{alias}"):
            version = register_result(models, result, aliases=(alias,))
    except (FeatureStoreError, TrainingError) as exc:
        abort(str(exc))
    metrics = result.bundle.metrics
    click.echo(
        f"{models.model_name(kind)} version {version} ({alias}): test ROC-AUC {metrics['roc_auc']:.3f}, "
        f"PR-AUC {metrics['pr_auc']:.3f}, log loss {metrics['log_loss']:.4f}, Brier {metrics['brier']:.4f}, "
        f"ECE {metrics['ece']:.4f}, top-decile lift {metrics['lift_top_decile']:.2f}"
    )


_ALIAS = click.option(
    "--alias",
    type=click.Choice([CHALLENGER, CHAMPION]),
    default=CHALLENGER,
    show_default=True,
    help="Alias the new version gets.",
)
_SEED = click.option("--seed", type=int, default=7, show_default=True, help="LightGBM and calibration seed.")


@train.command("churn")
@_ALIAS
@_SEED
def churn(alias: str, seed: int) -> None:
    """Train the churn model (churn within 30 days) from churn_labels.parquet."""
    _train("churn", alias, seed)


@train.command("propensity")
@_ALIAS
@_SEED
def propensity(alias: str, seed: int) -> None:
    """Train the offer-propensity model (P(accept | customer, action)) from offers.parquet."""
    _train("propensity", alias, seed)
