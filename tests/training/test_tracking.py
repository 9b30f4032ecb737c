"""The model registry on a real MLflow store (sqlite + local artifacts): versions, aliases, round trips.

Every test opens its own store under ``tmp_path`` with a model prefix of its own (the ``models`` fixture of
``conftest.py``), so no two tests share a registered model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from features import OfflineStore, Registry
from tests.training.conftest import FEATURES, register
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
from training.console import Reporter
from training.demo import ensure_models
from training.tracking import CHAMPION_HISTORY_TAG


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(99).normal(size=(50, len(FEATURES) + 1))


def _columns(bundle: ModelBundle, x: np.ndarray) -> np.ndarray:
    return x[:, : len(bundle.feature_names)]


def test_versions_count_up_and_aliases_point(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> None:
    assert models.model_name("churn").endswith("-churn")
    assert register(models, bundles["a"]) == "1"
    assert register(models, bundles["b"], CHAMPION) == "2"
    assert register(models, bundles["p"], CHAMPION, "shadow") == "1"  # another kind, another model
    assert models.version_for("churn", CHALLENGER) == "1"  # the default alias of a new version
    assert models.version_for("churn", CHAMPION) == "2"
    assert models.version_for("propensity", CHAMPION) == "1"
    assert models.version_for("propensity", "shadow") == "1"


@pytest.mark.parametrize(("kind", "name"), [("churn", "b"), ("propensity", "p")], ids=["churn", "propensity"])
def test_load_predicts_identically(
    models: ModelRegistry, bundles: dict[str, ModelBundle], x: np.ndarray, kind: ModelKind, name: str
) -> None:
    original = bundles[name]
    register(models, bundles["a"], CHAMPION)  # an older champion of churn, replaced below
    version = register(models, original, CHAMPION)

    loaded, loaded_version = models.load(kind, CHAMPION)

    assert loaded_version == version
    rows = _columns(original, x)
    assert np.array_equal(loaded.predict(rows), original.predict(rows))
    # A loaded bundle explains through the fast path (training/fast_trees.py): LightGBM's TreeSHAP values, summed in
    # another order, so equal to rounding.
    np.testing.assert_allclose(loaded.contributions(rows), original.contributions(rows), rtol=0, atol=1e-12)
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
    register(models, a, CHAMPION)
    register(models, b, CHALLENGER)
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
    register(models, bundles["a"], CHAMPION)
    register(models, bundles["b"])
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
    ("registered", "alias"),
    [(False, CHAMPION), (True, "shadow")],
    ids=["no-model", "no-alias"],
)
def test_load_of_a_missing_alias(
    models: ModelRegistry, bundles: dict[str, ModelBundle], registered: bool, alias: str
) -> None:
    if registered:
        register(models, bundles["a"], CHAMPION)
    where = f"{models.model_name('churn')}@{alias}"
    with pytest.raises(ModelNotFound, match=where):
        models.load("churn", alias)
    with pytest.raises(ModelNotFound, match=where):
        models.version_for("churn", alias)


def test_load_version_by_alias_or_number_and_what_is_missing(
    models: ModelRegistry, bundles: dict[str, ModelBundle], x: np.ndarray
) -> None:
    a, b = bundles["a"], bundles["b"]
    register(models, a, CHAMPION)
    register(models, b)
    name = models.model_name("churn")
    rows = _columns(a, x)
    for typed in (name, "churn"):  # the full name or the kind, as nba models takes them
        loaded, full, version = models.load_version(typed, alias=CHALLENGER)
        assert (full, version) == (name, "2")
        assert np.array_equal(loaded.predict(rows), b.predict(rows))
    loaded, _, version = models.load_version(name, version="1")
    assert version == "1"
    assert np.array_equal(loaded.predict(rows), a.predict(rows))

    # An unknown name, alias or version, each with what there is instead.
    for typed, how, message in (
        ("nope", {"alias": CHAMPION}, r"^no registered model 'nope' in sqlite:.*; known: "),
        (name, {"alias": "shadow"}, rf"^{name} has no alias 'shadow'; aliases: challenger \(version 2\), "),
        (name, {"version": "7"}, rf"^{name} has no version '7'; versions: 1, 2$"),
    ):
        with pytest.raises(ModelNotFound, match=message):
            models.load_version(typed, **how)


def test_set_alias_to_a_missing_version(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> None:
    register(models, bundles["a"], CHAMPION)
    with pytest.raises(ModelNotFound, match=rf"{models.model_name('churn')} version 7"):
        models.set_alias("churn", CHAMPION, "7")
    assert models.version_for("churn", CHAMPION) == "1"
    assert issubclass(ModelNotFound, RegistryUnavailable)


def test_unusable_store_is_registry_unavailable(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the store's folder should be")
    uri = f"sqlite:///{tmp_path}/not-a-dir/mlflow.db"
    with pytest.raises(RegistryUnavailable, match="not-a-dir"):
        ModelRegistry(MlflowSettings(tracking_uri=uri, experiment="x", model_prefix="t"), tmp_path).versions("churn")


# ---- promote and rollback ---------------------------------------------------------------------------


def _aliases(models: ModelRegistry) -> dict[str, tuple[str, ...]]:
    return {v.version: v.aliases for v in models.versions("churn")}


def test_promote_moves_the_challenger_and_records_the_champion_it_replaces(
    models: ModelRegistry, bundles: dict[str, ModelBundle]
) -> None:
    name = models.model_name("churn")
    register(models, bundles["a"], CHAMPION)
    register(models, bundles["b"])  # challenger by default

    move = models.promote("churn")  # the kind is enough

    assert (move.name, move.version, move.previous, move.challenger_cleared) == (name, "2", "1", True)
    assert _aliases(models) == {"2": (CHAMPION,), "1": ()}
    assert models.champion_history(name) == ["1"]
    with pytest.raises(ModelNotFound, match=f"{name} has no {CHALLENGER}"):
        models.promote(name)  # the full name works too; the challenger was used up


def test_promote_a_named_version_leaves_the_challenger(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> None:
    for bundle in (bundles["a"], bundles["b"], bundles["a"]):
        register(models, bundle)
    models.set_alias("churn", CHAMPION, "1")

    move = models.promote("churn", "2")

    assert (move.version, move.previous, move.challenger_cleared) == ("2", "1", False)
    assert _aliases(models) == {"3": (CHALLENGER,), "2": (CHAMPION,), "1": ()}
    again = models.promote("churn", "2")  # already champion: nothing recorded twice
    assert (again.version, again.previous) == ("2", "2")
    assert models.champion_history(models.model_name("churn")) == ["1"]


def test_rollback_walks_back_through_the_champions_without_flip_flopping(
    models: ModelRegistry, bundles: dict[str, ModelBundle]
) -> None:
    name = models.model_name("churn")
    register(models, bundles["a"], CHAMPION)  # v1
    register(models, bundles["b"], CHAMPION)  # v2: registering with the alias records v1 too
    register(models, bundles["a"])  # v3
    models.promote("churn")
    assert models.champion_history(name) == ["1", "2"]

    assert (models.rollback("churn").version, models.version_for("churn", CHAMPION)) == ("2", "2")
    second = models.rollback("churn")  # one more step back, not back to 3
    assert (second.version, second.previous) == ("1", "2")
    assert models.version_for("churn", CHAMPION) == "1"
    with pytest.raises(ModelNotFound, match=f"{name}: nothing to roll back to .champion is version 1"):
        models.rollback("churn")
    assert models.version_for("churn", CHAMPION) == "1"

    models.promote("churn", "3")  # forward again: the version it replaces is the only way back
    assert models.champion_history(name) == ["1"]
    assert models.rollback("churn").version == "1"


def test_rollback_skips_a_deleted_version(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> None:
    name = models.model_name("churn")
    for _ in range(3):
        register(models, bundles["a"], CHAMPION)
    assert models.champion_history(name) == ["1", "2"]
    client = MlflowClient(tracking_uri=models.tracking_uri, registry_uri=models.tracking_uri)
    client.delete_model_version(name, "2")
    assert client.get_registered_model(name).tags[CHAMPION_HISTORY_TAG] == '["1", "2"]'

    assert models.rollback(name).version == "1"
    assert models.champion_history(name) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.promote("nope"), r"no registered model 'nope' in sqlite:.*known: t\w+-churn"),
        (lambda m: m.promote("churn", "9"), r"-churn has no version '9'; versions: 1"),
        (lambda m: m.rollback("churn"), r"-churn: nothing to roll back to .champion is version 1"),
    ],
    ids=["unknown-model", "unknown-version", "no-history"],
)
def test_promote_and_rollback_errors(
    models: ModelRegistry, bundles: dict[str, ModelBundle], call: Callable[[ModelRegistry], object], message: str
) -> None:
    register(models, bundles["a"], CHAMPION)
    with pytest.raises(ModelNotFound, match=message):
        call(models)
    assert _aliases(models) == {"1": (CHAMPION,)}


def test_registered_names_are_the_prefixed_ones(models: ModelRegistry, bundles: dict[str, ModelBundle]) -> None:
    assert models.registered_names() == []
    register(models, bundles["p"])
    register(models, bundles["a"])
    assert models.registered_names() == [models.model_name("churn"), models.model_name("propensity")]
    assert models.resolve("propensity") == models.model_name("propensity")


def test_the_demo_keeps_a_champion_of_this_contract_and_replaces_one_of_another(
    models: ModelRegistry, bundles: dict[str, ModelBundle], registry: Registry, offline: OfflineStore
) -> None:
    """After a contract change `make run` must not keep serving-refused champions: it retrains those."""
    stale = register(models, bundles["a"], CHAMPION)  # trained on "contract-1", not the packaged contract
    versions = ensure_models(models, registry, offline, Reporter())
    churn, version = models.load("churn")
    assert (version, churn.contract_version) == (versions["churn"], registry.version)
    assert version != stale
    # Run again: both champions are on this contract now, so nothing is trained or registered.
    assert ensure_models(models, registry, offline, Reporter()) == versions
