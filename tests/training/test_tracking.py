"""The model registry on a real MLflow store (sqlite + local artifacts): versions, aliases, round trips.

Every test opens its own store under ``tmp_path`` with a model prefix of its own, so no two tests share a
registered model.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from training import (
    CHALLENGER,
    CHAMPION,
    MlflowSettings,
    ModelBundle,
    ModelKind,
    ModelNotFound,
    ModelRegistry,
    RegistryUnavailable,
)
from training.calibrate import Calibrator

FEATURES = ("tenure_months", "monthly_charge", "logins_30d")
ACTIONS = ("discount_10", "retention_offer")
PARAMS = {"learning_rate": 0.1, "rows_train": 400}


def _bundle(kind: ModelKind, seed: int, rounds: int) -> ModelBundle:
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


@pytest.fixture(scope="module")
def bundles() -> dict[str, ModelBundle]:
    return {
        "a": _bundle("churn", 1, 5),
        "b": _bundle("churn", 2, 12),
        "p": _bundle("propensity", 3, 8),
    }


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(99).normal(size=(50, len(FEATURES) + 1))


@pytest.fixture(scope="module")
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


def _columns(bundle: ModelBundle, x: np.ndarray) -> np.ndarray:
    return x[:, : len(bundle.feature_names)]


def _register(models: ModelRegistry, bundle: ModelBundle, *aliases: str) -> str:
    tags = {"kind": bundle.kind, "contract_version": bundle.contract_version}
    if aliases:
        return models.log_and_register(bundle, params=PARAMS, tags=tags, aliases=aliases)
    return models.log_and_register(bundle, params=PARAMS, tags=tags)


def test_versions_count_up_and_aliases_point(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> None:
    assert models.model_name("churn").endswith("-churn")
    assert _register(models, bundles["a"]) == "1"
    assert _register(models, bundles["b"], CHAMPION) == "2"
    assert _register(models, bundles["p"], CHAMPION, "shadow") == "1"  # another kind, another model
    assert models.version_for("churn", CHALLENGER) == "1"  # the default alias of a new version
    assert models.version_for("churn", CHAMPION) == "2"
    assert models.version_for("propensity", CHAMPION) == "1"
    assert models.version_for("propensity", "shadow") == "1"


@pytest.mark.parametrize(("kind", "name"), [("churn", "b"), ("propensity", "p")], ids=["churn", "propensity"])
def test_load_predicts_identically(
    models: ModelRegistry, bundles: dict[str, ModelBundle], x: np.ndarray, kind: ModelKind, name: str
) -> None:
    original = bundles[name]
    _register(models, bundles["a"], CHAMPION)  # an older champion of churn, replaced below
    version = _register(models, original, CHAMPION)

    loaded, loaded_version = models.load(kind, CHAMPION)

    assert loaded_version == version
    rows = _columns(original, x)
    assert np.array_equal(loaded.predict(rows), original.predict(rows))
    assert np.array_equal(loaded.contributions(rows), original.contributions(rows))
    assert (loaded.kind, loaded.feature_names, loaded.contract_version, loaded.actions, loaded.metrics) == (
        original.kind,
        original.feature_names,
        original.contract_version,
        original.actions,
        original.metrics,
    )
    assert loaded.calibrator.method == original.calibrator.method


def test_set_alias_moves_the_champion(models: ModelRegistry, bundles: dict[str, ModelBundle], x: np.ndarray) -> None:
    a, b = bundles["a"], bundles["b"]
    rows = _columns(a, x)
    assert not np.array_equal(a.predict(rows), b.predict(rows))
    _register(models, a, CHAMPION)
    _register(models, b, CHALLENGER)
    assert np.array_equal(models.load("churn")[0].predict(rows), a.predict(rows))

    models.set_alias("churn", CHAMPION, "2")

    champion, version = models.load("churn")
    assert version == "2"
    assert np.array_equal(champion.predict(rows), b.predict(rows))
    assert {v.version: set(v.aliases) for v in models.versions("churn")} == {
        "2": {CHAMPION, CHALLENGER},
        "1": set(),
    }
    models.set_alias("churn", CHAMPION, "1")  # and back: a rollback is the same call
    assert models.version_for("churn", CHAMPION) == "1"


def test_versions_list_aliases_and_metrics(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> None:
    assert models.versions("churn") == []
    _register(models, bundles["a"], CHAMPION)
    _register(models, bundles["b"])
    listed = models.versions("churn")
    name = models.model_name("churn")
    assert [(v.name, v.version, v.aliases) for v in listed] == [
        (name, "2", (CHALLENGER,)),
        (name, "1", (CHAMPION,)),
    ]
    assert dict(listed[0].metrics) == bundles["b"].metrics
    assert dict(listed[1].metrics) == bundles["a"].metrics
    assert listed[0].run_id is not None
    assert listed[1].run_id is not None
    assert listed[0].run_id != listed[1].run_id
    assert models.versions("propensity") == []


@pytest.mark.parametrize(
    ("register", "alias"),
    [(False, CHAMPION), (True, "shadow")],
    ids=["no-model", "no-alias"],
)
def test_load_of_a_missing_alias(
    models: ModelRegistry, bundles: dict[str, ModelBundle], register: bool, alias: str
) -> None:
    if register:
        _register(models, bundles["a"], CHAMPION)
    where = f"{models.model_name('churn')}@{alias}"
    with pytest.raises(ModelNotFound, match=where):
        models.load("churn", alias)
    with pytest.raises(ModelNotFound, match=where):
        models.version_for("churn", alias)


def test_set_alias_to_a_missing_version(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> None:
    _register(models, bundles["a"], CHAMPION)
    with pytest.raises(ModelNotFound, match=rf"{models.model_name('churn')} version 7"):
        models.set_alias("churn", CHAMPION, "7")
    assert models.version_for("churn", CHAMPION) == "1"
    assert issubclass(ModelNotFound, RegistryUnavailable)


def test_unusable_store_is_registry_unavailable(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the store's folder should be")
    uri = f"sqlite:///{tmp_path}/not-a-dir/mlflow.db"
    with pytest.raises(RegistryUnavailable, match="not-a-dir"):
        ModelRegistry(MlflowSettings(tracking_uri=uri, experiment="x", model_prefix="t"), tmp_path).versions("churn")
