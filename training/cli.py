"""``nba demo`` and ``nba train ...``: build the demo, train and register models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.console import Console

from features import (
    FeatureStoreError,
    OfflineSettings,
    OfflineStore,
    RedisSettings,
    Registry,
    online_store_url,
)
from features.console import settings_from_env
from training import byo
from training.bundle import ModelKind
from training.console import Reporter, abort
from training.demo import DemoConfig, ensure_materialized, ensure_models, ensure_world
from training.errors import TrainingError
from training.evaluate import describe_metrics
from training.report import register_result
from training.resolution import describe_resolution
from training.settings import MlflowSettings
from training.simulate_cli import AGENTS, CUSTOMERS
from training.tracking import CHALLENGER, CHAMPION, ModelRegistry
from training.train import TrainParams, train_model


def build_demo(
    config: DemoConfig, reporter: Reporter, *, registry: Registry, redis_url: str, force: bool = False
) -> dict[str, str]:
    """World, online store and champion models of ``registry``'s contract, each built only if missing (all of them
    with ``force``)."""
    offline_settings = settings_from_env(OfflineSettings)
    redis_settings = settings_from_env(RedisSettings)
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
    registry = Registry.load()  # a bad contract stops here, before the online store is started or reached
    try:
        with online_store_url(settings_from_env(RedisSettings), settings_from_env(OfflineSettings)) as url:
            versions = build_demo(config, reporter, registry=registry, redis_url=url, force=force)
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
            result = train_model(kind, registry, offline, params=TrainParams.for_model(kind, seed=seed))
        with reporter.step(f"Registering it as {models.model_name(kind)}@{alias}"):
            version = register_result(models, result, aliases=(alias,))
    except (FeatureStoreError, TrainingError) as exc:
        abort(str(exc))
    click.echo(f"{models.model_name(kind)} version {version} ({alias}): {describe_metrics(result.bundle.metrics)}")
    if kind == "resolution":
        for line in describe_resolution(result.bundle.metrics):
            click.echo(line)


_ALIAS = click.option(
    "--alias",
    type=click.Choice([CHALLENGER, CHAMPION]),
    default=CHALLENGER,
    show_default=True,
    help="Alias the new version gets.",
)
_SEED = click.option("--seed", type=int, default=7, show_default=True, help="LightGBM and calibration seed.")


def _train_dataset(
    path: Path, alias: str, seed: int, *, label: str, entity: str, positive: str | None, time: str | None
) -> None:
    offline_settings = settings_from_env(OfflineSettings)
    reporter = Reporter()
    try:
        models = ModelRegistry(settings_from_env(MlflowSettings), offline_settings.data_dir)
        name = byo.model_name(models.model_name("churn"), path)
        with reporter.step(f"Training a churn model on {path}"):
            trained = byo.train_dataset(
                path, label=label, entity=entity, positive=positive, time=time, params=TrainParams(seed=seed)
            )
        with reporter.step(f"Registering it as {name}@{alias}"):
            version = register_result(models, trained.result, aliases=(alias,), name=name)
    except TrainingError as exc:
        abort(str(exc))
    byo.print_summary(Console(highlight=False), trained, path=path, name=name, version=version, alias=alias)


@train.command("churn")
@_ALIAS
@_SEED
@click.option(
    "--dataset",
    type=click.Path(path_type=Path),
    help="Train on your own table (.csv or .parquet) instead of the offline store; column types are inferred.",
)
@click.option("--label-column", help="With --dataset: the outcome (0/1, yes/no, true/false, or see --positive-label).")
@click.option("--entity-column", help="With --dataset: the customer id column (kept out of the model).")
@click.option("--positive-label", help="With --dataset: the label value that means churned (for any other labels).")
@click.option("--time-column", help="With --dataset: split by time (oldest rows train, newest test), not at random.")
def churn(
    alias: str,
    seed: int,
    dataset: Path | None,
    label_column: str | None,
    entity_column: str | None,
    positive_label: str | None,
    time_column: str | None,
) -> None:
    """Train the churn model (churn within 30 days) from churn_labels.parquet, or on your own --dataset.

    With --dataset the model is registered as PREFIX-churn-byo-<file stem>, beside the contract's churn model.
    """
    options = {
        "--label-column": label_column,
        "--entity-column": entity_column,
        "--positive-label": positive_label,
        "--time-column": time_column,
    }
    if dataset is None:
        given = [flag for flag, value in options.items() if value is not None]
        if given:
            abort(f"{', '.join(given)} only apply with --dataset FILE")
        _train("churn", alias, seed)
        return
    if label_column is None or entity_column is None:
        abort("--dataset needs --label-column (the outcome) and --entity-column (the customer id)")
    _train_dataset(
        dataset, alias, seed, label=label_column, entity=entity_column, positive=positive_label, time=time_column
    )


@train.command("propensity")
@_ALIAS
@_SEED
def propensity(alias: str, seed: int) -> None:
    """Train the offer-propensity model (P(accept | customer, action)) from offers.parquet."""
    _train("propensity", alias, seed)


@train.command("resolution")
@_ALIAS
@_SEED
def resolution(alias: str, seed: int) -> None:
    """Train the resolution model (P(first-contact resolution) and expected handle time of a contact with an
    agent) from contacts.parquet; on a simulated world, check it against the oracle."""
    _train("resolution", alias, seed)
