"""The simulated world is deterministic, honours the feature contract and has the ground truth we claim."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.registry import Registry
from training.world import (
    ACTIONS,
    WorldConfig,
    behaviour_probabilities,
    simulate,
    true_churn_probability,
    true_expected_value,
)

END = dt.date(2024, 6, 30)
TABLES = ("customer_snapshots", "churn_labels", "offers", "agent_snapshots", "contacts")


def _read(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in TABLES}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("world")
    simulate(WorldConfig(customers=2000, agents=20, months=6, seed=3, end=END), out)
    return _read(out)


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy() for name in Registry.load().entity("customer").names}


def test_same_seed_is_identical_and_other_seed_differs(tmp_path: Path) -> None:
    config = WorldConfig(customers=2000, agents=10, months=3, seed=11, end=END)
    simulate(config, tmp_path / "a")
    simulate(config, tmp_path / "b")
    simulate(WorldConfig(customers=2000, agents=10, months=3, seed=12, end=END), tmp_path / "c")
    a, b, c = _read(tmp_path / "a"), _read(tmp_path / "b"), _read(tmp_path / "c")
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name])
        file = f"{name}.parquet"
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert not a["customer_snapshots"].equals(c["customer_snapshots"])


def test_columns_follow_the_registry(world: dict[str, pd.DataFrame]) -> None:
    reg = Registry.load()
    snaps, agents = world["customer_snapshots"], world["agent_snapshots"]
    assert set(snaps.columns) - {"customer_id", "feature_ts"} == set(reg.entity("customer").names)
    assert set(agents.columns) - {"agent_id", "feature_ts"} == set(reg.entity("agent").names)
    for feature in reg.entity("customer").features:
        if feature.dtype == "category":
            assert set(snaps[feature.name]) <= set(feature.categories or ())
    assert str(snaps["feature_ts"].dtype) == "datetime64[us, UTC]"
    assert snaps["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert agents[["speaks_en", "speaks_es", "speaks_fr"]].any(axis=1).all()
    assert snaps.groupby("customer_id")["tenure_months"].diff().dropna().eq(1).all()


def test_labels_and_offers_agree(world: dict[str, pd.DataFrame]) -> None:
    snaps, labels, offers = world["customer_snapshots"], world["churn_labels"], world["offers"]
    assert len(labels) == len(snaps)
    assert (labels["ts"].to_numpy() == (snaps["feature_ts"] + pd.Timedelta(days=1)).to_numpy()).all()
    joined = offers.merge(labels, on=["customer_id", "ts"], suffixes=("", "_label"), validate="one_to_one")
    assert len(joined) == len(offers)
    assert (joined["churned"] == joined["churned_label"]).all()
    assert 0.3 < len(offers) / len(snaps) < 0.5
    assert offers["decision_id"].is_unique
    assert (offers.loc[offers["action_id"] == "no_action", "accepted"] == 0).all()
    # Churned customers never come back.
    last = labels[labels["churned"] == 1].groupby("customer_id")["ts"].max()
    later = snaps.merge(last.rename("gone"), on="customer_id")
    assert (later["feature_ts"] < later["gone"]).all()


def test_propensities_match_the_behaviour_policy(world: dict[str, pd.DataFrame]) -> None:
    snaps, offers = world["customer_snapshots"], world["offers"]
    assert offers["propensity"].between(0.03, 1.0).all()
    rows = snaps.assign(ts=snaps["feature_ts"] + pd.Timedelta(days=1)).merge(offers, on=["customer_id", "ts"])
    probs = behaviour_probabilities(_columns(rows))
    assert np.allclose(probs.sum(axis=1), 1.0)
    chosen = probs[np.arange(len(rows)), [ACTIONS.index(a) for a in rows["action_id"]]]
    assert np.allclose(chosen, rows["propensity"].to_numpy())


def test_churn_rates_and_monotone_ground_truth(world: dict[str, pd.DataFrame]) -> None:
    snaps, labels = world["customer_snapshots"], world["churn_labels"]
    rate = labels["churned"].mean()
    assert 0.03 <= rate <= 0.08
    complaint = snaps["open_complaint"].to_numpy()
    churned = labels["churned"].to_numpy()
    assert churned[complaint].mean() > 1.5 * churned[~complaint].mean()
    p = true_churn_probability(_columns(snaps))
    assert p[complaint].mean() > p[~complaint].mean()
    assert abs(p.mean() - rate) < 0.01
    tenure = snaps["tenure_months"].to_numpy()
    assert p[tenure > 48].mean() < p[tenure < 12].mean()


def test_risk_ranking_is_not_the_best_policy(world: dict[str, pd.DataFrame]) -> None:
    snaps = world["customer_snapshots"]
    c = _columns(snaps[snaps["feature_ts"] == snaps["feature_ts"].max()])
    risk = true_churn_probability(c)
    value = np.stack([true_expected_value(c, a) for a in ACTIONS], axis=1)
    best = value.argmax(axis=1)
    top = risk >= np.quantile(risk, 0.8)
    premium = c["segment"] == "premium"
    # Premium customers are put off by retention offers: their churn rises even at high risk.
    assert (true_churn_probability(c, "retention_offer")[premium & top] > risk[premium & top]).all()
    # Some of the riskiest customers are best left alone...
    assert (best[top] == ACTIONS.index("no_action")).sum() > 0
    # ...so the oracle beats "retention offer to the riskiest 20%, nothing to the rest".
    by_risk = np.where(top, ACTIONS.index("retention_offer"), ACTIONS.index("no_action"))
    rows = np.arange(len(risk))
    assert value[rows, best].sum() > value[rows, by_risk].sum() * 1.005
    assert len(set(best.tolist())) >= 4


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="customers"):
        WorldConfig(customers=10, end=END)
    with pytest.raises(ValueError, match="agents"):
        WorldConfig(agents=1, end=END)
    with pytest.raises(ValueError, match="months"):
        WorldConfig(months=40, end=END)
