"""The fast scoring path equals LightGBM's predict and pred_contrib; the calibrator's arithmetic equals scikit-learn."""

from __future__ import annotations

from functools import cache

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training import ModelBundle
from training.bundle import with_matched
from training.calibrate import Calibrator
from training.fast_trees import AVAILABLE, TABLE_SPLITS, FastTrees

TOLERANCE = 1e-9


def _data(seed: int, rows: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
    """Numbers with NaNs and exact zeros, a categorical column (codes 0-6, some NaN), a binary outcome."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8)) * 10
    x[:, 3] = rng.integers(0, 7, rows)
    x[:, 4] = np.where(rng.random(rows) < 0.3, 0.0, x[:, 4])
    x[rng.random(x.shape) < 0.08] = np.nan
    zero = np.nan_to_num(x[:, 4]) == 0
    signal = np.nan_to_num(x[:, 0]) / 10 + np.isin(x[:, 3], (1, 4)) - zero + rng.normal(size=rows)
    return x, (signal > 0.3).astype(int)


def _booster(objective: str, seed: int, **params: object) -> tuple[lgb.Booster, np.ndarray]:
    x, y = _data(seed)
    target = y if objective == "binary" else np.nan_to_num(x[:, 0]) * 3 + y * 50
    settings = {"objective": objective, "verbosity": -1, "num_threads": 1, "seed": seed, "num_leaves": 31, **params}
    booster = lgb.train(settings, lgb.Dataset(x, target, categorical_feature=[3]), num_boost_round=40)
    return booster, x


@pytest.fixture(autouse=True)
def _built() -> None:
    assert AVAILABLE, "training/_trees.c was not built: reinstall with a C compiler (pip install -e .)"


@pytest.mark.parametrize(
    ("objective", "params"),
    [
        ("binary", {}),
        ("binary", {"zero_as_missing": True}),
        ("binary", {"use_missing": False}),
        ("regression", {}),
        ("binary", {"num_leaves": 7}),
        ("binary", {"num_leaves": 9, "zero_as_missing": True}),
        ("regression", {"num_leaves": 5}),
    ],
    ids=[
        "binary-nan-missing",
        "binary-zero-missing",
        "binary-no-missing",
        "regression",
        "binary-7-leaves",
        "binary-9-leaves-zero-missing",
        "regression-5-leaves",
    ],
)
def test_fast_trees_equal_lightgbm(objective: str, params: dict[str, object]) -> None:
    booster, x = _booster(objective, 7, **params)
    fast = FastTrees(booster)
    # Trees of at most TABLE_SPLITS splits take their terms from a table by the row's way through them; the others
    # are computed leaf by leaf (31 leaves: 30 splits).
    splits = np.diff(fast._arrays["tree_node_start"])
    tabled = np.diff(fast._arrays["tree_table_start"]) > 0
    np.testing.assert_array_equal(tabled, (splits > 0) & (splits <= TABLE_SPLITS))
    rows = np.vstack([x[:200], np.full((1, x.shape[1]), np.nan), np.zeros((1, x.shape[1])), -x[:5]])
    rows[-3, 3] = 99.0  # a category never seen
    # One customer's rows for several actions (one column apart), as a recommend scores them, and repeated rows:
    # a row that takes an earlier row's way through a tree takes that row's terms for it.
    customer = np.repeat(x[200:203], 7, axis=0)
    customer[:, 3] = np.tile(np.arange(7), 3)
    rows = np.vstack([rows, customer, customer[:4]])
    # Predictions are LightGBM's to the last bit (the same sums in the same order, the same exp); contributions are
    # the same Shapley values summed in another order.
    np.testing.assert_array_equal(fast.raw(rows), booster.predict(rows, raw_score=True))
    np.testing.assert_array_equal(fast.predict(rows), booster.predict(rows))
    scale = max(1.0, float(np.abs(booster.predict(rows, raw_score=True)).max()))
    np.testing.assert_allclose(
        fast.contributions(rows), booster.predict(rows, pred_contrib=True), rtol=0, atol=TOLERANCE * scale
    )


@cache
def _fast(objective: str, missing: str, leaves: int) -> tuple[lgb.Booster, FastTrees, np.ndarray]:
    booster, x = _booster(objective, 11, num_leaves=leaves, **({"zero_as_missing": True} if missing == "zero" else {}))
    return booster, FastTrees(booster), x


_CELL = st.one_of(
    st.floats(-40, 40),
    st.sampled_from([np.nan, 0.0, -0.0, 1e-36, -1.0, 7.0, 99.0]),  # missing, zeros, categories never seen
    st.integers(0, 6).map(float),  # the categorical column's codes
)


@pytest.mark.parametrize(
    ("objective", "missing", "leaves"),
    [("binary", "nan", 31), ("binary", "zero", 31), ("regression", "nan", 31), ("binary", "zero", 7)],
    ids=["binary-nan-missing", "binary-zero-missing", "regression", "binary-7-leaves-zero-missing"],
)
@settings(max_examples=150, deadline=None)
@given(
    base=st.integers(0, 2_999),
    varying=st.sets(st.integers(0, 7), max_size=3),
    cells=st.lists(st.lists(_CELL, min_size=8, max_size=8), min_size=2, max_size=40),
)
def test_rows_that_share_columns_score_as_alone(
    objective: str, missing: str, leaves: int, base: int, varying: set[int], cells: list[list[float]]
) -> None:
    """Rows of one call that differ in a few columns share the trees whose way never tests those columns: every
    row's score stays LightGBM's and its own plain walk's (one row alone) to the last bit, its contributions
    LightGBM's."""
    booster, fast, x = _fast(objective, missing, leaves)
    rows = np.tile(x[base], (len(cells), 1))
    columns = sorted(varying)
    rows[:, columns] = np.array(cells)[:, columns]
    raw = fast.raw(rows)
    alone = np.concatenate([fast.raw(row) for row in rows])
    np.testing.assert_array_equal(raw.view(np.uint64), booster.predict(rows, raw_score=True).view(np.uint64))
    np.testing.assert_array_equal(raw.view(np.uint64), alone.view(np.uint64))
    np.testing.assert_array_equal(fast.predict(rows).view(np.uint64), booster.predict(rows).view(np.uint64))
    # The contributions' splits on shared columns are decided once for all rows: still LightGBM's values.
    scale = max(1.0, float(np.abs(raw).max()))
    np.testing.assert_allclose(
        fast.contributions(rows), booster.predict(rows, pred_contrib=True), rtol=0, atol=TOLERANCE * scale
    )


def test_a_prepared_bundle_scores_as_lightgbm() -> None:
    booster, x = _booster("binary", 3)
    calibrator = Calibrator(method="sigmoid").fit(np.asarray(booster.predict(x)), _data(3)[1])
    plain = ModelBundle("churn", booster, calibrator, tuple(f"f{i}" for i in range(8)), "contract")
    prepared = ModelBundle("churn", booster, calibrator, plain.feature_names, "contract").prepare()
    rows = x[:50]
    np.testing.assert_array_equal(prepared.predict(rows), plain.predict(rows))
    np.testing.assert_allclose(prepared.contributions(rows), plain.contributions(rows), rtol=0, atol=TOLERANCE)
    assert "_fast" not in prepared.__getstate__()  # the tables are never pickled with the bundle


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrator_arithmetic_equals_scikit_learn(method: str) -> None:
    rng = np.random.default_rng(0)
    raw = rng.random(4_000) ** 2
    calibrator = Calibrator(method=method).fit(raw, (rng.random(4_000) < raw).astype(int))  # type: ignore[arg-type]
    probe = np.r_[rng.random(500), 0.0, 1.0, 1e-12, 1 - 1e-12, raw.min(), raw.max()]
    np.testing.assert_allclose(calibrator.transform(probe), calibrator.transform_sklearn(probe), rtol=0, atol=1e-12)


@pytest.mark.parametrize("intent", ["billing", "technical", "never-seen"])
def test_pair_rows_equal_with_matched(intent: str) -> None:
    """A contact's rows are laid out for the intent they share: the same matrix as the general with_matched."""
    names = ("contact_intent", "contact_channel", "tenure", "skill_billing", "skill_technical", "rate_billing", "load")
    matched = (("intent_skill", ("skill_billing", "skill_technical")), ("intent_rate", ("rate_billing", "load")))
    bundle = ModelBundle(
        "resolution",
        None,  # type: ignore[arg-type]
        Calibrator(method="sigmoid"),
        (*names, "intent_skill", "intent_rate"),
        "contract",
        contact_fields=(("intent", ("billing", "technical")), ("channel", ("voice", "chat"))),
        matched=matched,
    )
    agents = np.random.default_rng(1).normal(size=(9, 4))
    agents[2, 1] = np.nan
    customer = np.array([12.0])
    rows = bundle.pair_rows({"intent": intent, "channel": "chat"}, customer, agents)
    codes = bundle.contact_codes({"intent": intent, "channel": "chat"})
    general = with_matched(np.column_stack([np.tile(codes, (9, 1)), np.tile(customer, (9, 1)), agents]), names, matched)
    np.testing.assert_array_equal(rows, general)
