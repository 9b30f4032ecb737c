"""Registry fixtures of the training tests: small real LightGBM bundles and a real MLflow store per test."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from training import MlflowSettings, ModelBundle, ModelKind, ModelRegistry
from training.calibrate import Calibrator

FEATURES = ("tenure_months", "monthly_charge", "logins_30d")
ACTIONS = ("discount_10", "retention_offer")
PARAMS = {"learning_rate": 0.1, "rows_train": 400}


def small_bundle(kind: ModelKind, seed: int, rounds: int) -> ModelBundle:
    """A small real LightGBM bundle; different seeds and rounds give different predictions."""
    rng = np.random.default_rng(seed)
    width = len(FEATURES) + (1 if kind == "propensity" else 0)
    x = rng.normal(size=(400, width))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=400) > 0).astype(int)
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": seed, "min_data_in_leaf": 10}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)
    calibrator = Calibrator(method="sigmoid").fit(np.asarray(booster.predict(x)), y)
    names = FEATURES if kind == "churn" else (*FEATURES, "action")
    actions = ACTIONS if kind == "propensity" else ()
    metrics = {"roc_auc": 0.7 + seed / 100, "ece": 0.01 * seed, "rows": 400.0}
    return ModelBundle(kind, booster, calibrator, names, f"contract-{seed}", actions, metrics)


@pytest.fixture(scope="session")
def bundles() -> dict[str, ModelBundle]:
    return {
        "a": small_bundle("churn", 1, 5),
        "b": small_bundle("churn", 2, 12),
        "p": small_bundle("propensity", 3, 8),
    }


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly created MLflow database, so each test copies it instead of migrating its own (~1.5 s)."""
    root = tmp_path_factory.mktemp("mlflow-template")
    ModelRegistry(MlflowSettings(tracking_uri=None, experiment="x", model_prefix="template"), root)
    return root / "mlflow.db"


@pytest.fixture
def models(tmp_path: Path, empty_store: Path) -> ModelRegistry:
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return ModelRegistry(MlflowSettings(tracking_uri=None, experiment="x", model_prefix=prefix), tmp_path)


def register(models: ModelRegistry, bundle: ModelBundle, *aliases: str) -> str:
    tags = {"kind": bundle.kind, "contract_version": bundle.contract_version}
    if aliases:
        return models.log_and_register(bundle, params=PARAMS, tags=tags, aliases=aliases)
    return models.log_and_register(bundle, params=PARAMS, tags=tags)
