"""The resolution model: its point-in-time frame leaks nothing from after a contact started, the session's
champion (trained on the test world by the ``champions`` fixture) beats skills-only routing on the oracle's
truth, and ``nba train resolution`` registers a challenger and prints its figures."""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from features import OfflineStore, Registry
from service.cli import main
from tests.conftest import own_world
from training import DatasetError, ModelRegistry
from training.resolution_frame import feature_names, pair_frame, pair_matrix, time_split

# The agent profile a leaked snapshot would carry: values no real snapshot of the world holds.
LEAKED = {"proficiency_billing": 0.0123, "resolution_rate_30d": 0.999, "handle_time_mean_30d_s": 12345.0}


def test_frame_takes_the_agent_as_of_the_contact_start(
    tmp_path: Path, world: Path, registry: Registry, offline: OfflineStore
) -> None:
    contacts = pq.read_table(world / "contacts.parquet")
    contact = contacts.slice(contacts.num_rows // 2, 1)
    agent, started = contact.column("agent_id")[0].as_py(), contact.column("started_at")[0].as_py()
    before = pair_frame(offline, contact)
    # The agent's profile changes a second after the contact started: the frame must not see it.
    own = own_world(tmp_path, world)
    snapshots = pq.read_table(world / "agent_snapshots.parquet")
    row = snapshots.filter(pc.equal(snapshots.column("agent_id"), agent)).slice(0, 1).to_pylist()[0]
    changed = {**row, **LEAKED, "feature_ts": started + timedelta(seconds=1)}
    (own / "agent_snapshots.parquet").unlink()
    pq.write_table(
        pa.concat_tables([snapshots, pa.Table.from_pylist([changed], snapshots.schema)]),
        own / "agent_snapshots.parquet",
    )
    store = OfflineStore(own, registry)
    after = pair_frame(store, contact)
    for name in LEAKED:
        assert after.column(name).to_pylist() == before.column(name).to_pylist()
        assert after.column(name)[0].as_py() != LEAKED[name]
    assert after.column("agent_feature_ts")[0].as_py() < started
    np.testing.assert_array_equal(pair_matrix(registry, store, after), pair_matrix(registry, offline, before))
    # The same contact a minute later does see the new profile: the join is as-of, not a stale copy.
    later = contact.set_column(
        contact.column_names.index("started_at"),
        "started_at",
        pa.array([started + timedelta(minutes=1)], contact.schema.field("started_at").type),
    )
    seen = pair_frame(store, later)
    assert {name: seen.column(name)[0].as_py() for name in LEAKED} == LEAKED


def test_frame_counts_no_event_of_the_contact_itself(world: Path, offline: OfflineStore) -> None:
    contacts = pq.read_table(world / "contacts.parquet")
    frame = pair_frame(offline, contacts.slice(0, 2_000))
    events = offline.events("customer")
    ended = events.filter(pc.equal(events.column("type"), "contact_ended"))
    # The contract's 30-day count of contacts ended: UTC days after the start's day minus 30, up to the start.
    # A contact's own end (after its start) is not among them, nor is anything else of its outcome.
    by_customer: dict[str, list[object]] = {}
    for customer, at in zip(
        ended.column("customer_id").to_pylist(), ended.column("occurred_at").to_pylist(), strict=True
    ):
        by_customer.setdefault(customer, []).append(at)
    for customer, start, count in zip(
        frame.column("customer_id").to_pylist(),
        frame.column("started_at").to_pylist(),
        frame.column("contacts_30d").to_pylist(),
        strict=True,
    ):
        window = [t for t in by_customer.get(customer, []) if _day(t) > _day(start) - 30 and t <= start]
        assert (count or 0) == len(window)


def _day(at: datetime) -> int:
    return math.floor(at.timestamp() / 86_400)


def test_time_split_holds_out_the_newest_30_days(world: Path) -> None:
    started = pq.read_table(world / "contacts.parquet").column("started_at")
    train, valid, test = time_split(started, world / "contacts.parquet")
    ts = started.to_numpy()
    assert ts[train].max() < ts[valid].min() <= ts[valid].max() < ts[test].min()
    assert ts.max() - ts[test].min() <= np.timedelta64(30, "D")
    assert (train | valid | test).all()
    assert not (train & valid).any()
    assert not (valid & test).any()
    with pytest.raises(DatasetError, match=r"contacts over more than 60 days"):
        time_split(started.filter(pa.array(ts >= ts[valid].min())), world / "contacts.parquet")


def test_champion_routes_better_than_skills_only(
    champions: dict[str, str], model_registry: ModelRegistry, registry: Registry
) -> None:
    bundle, version = model_registry.load("resolution")
    assert version == champions["resolution"]
    assert bundle.feature_names == feature_names(registry)
    assert bundle.feature_names[-5:] == (
        "intent_proficiency",
        "intent_resolution_rate_90d",
        "intent_contacts_90d",
        "intent_resolution_rate_180d",
        "intent_contacts_180d",
    )
    assert dict(bundle.matched)["intent_proficiency"] == tuple(
        f"proficiency_{s}" for s in ("billing", "technical", "retention", "sales")
    )
    assert bundle.handle_time is not None
    logged = next(v for v in model_registry.versions("resolution") if v.version == version).metrics
    m = dict(logged)
    assert m == pytest.approx(bundle.metrics)
    # Against the truth: probabilities that follow the oracle's and are calibrated to them, and routing (the
    # routing evaluation, tested on its own in test_routing_evaluation) that beats the agents' rating.
    assert m["truth_corr"] > 0.7
    assert m["truth_ece"] < 0.03
    assert m["routing_fcr_random"] < m["routing_fcr_skills_only"] < m["routing_fcr_model"] <= m["routing_fcr_oracle"]
    assert m["routing_gain_captured"] > 0.5
    # The test ECE is near what a perfectly calibrated model would show on so few contacts by chance.
    assert 0.005 < m["ece_noise_floor"] < 0.04
    assert m["ece"] < m["ece_noise_floor"] + 0.02
    # The handle-time regressor beats its same-run baseline, the agent's 30-day mean.
    assert m["handle_time_mae"] < m["handle_time_baseline_mae"]
    assert m["handle_time_r2"] > 0.1 > m["handle_time_baseline_r2"]
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile"):
        assert math.isfinite(m[name])
    assert m["roc_auc"] > 0.6


def test_train_resolution_registers_a_challenger_and_prints_the_oracle_check(tmp_path: Path, world: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    own_world(data, world)
    env = {k: None for k in os.environ if k.startswith("NBA_") or k == "MLFLOW_TRACKING_URI"}
    env |= {"NBA_DATA_DIR": str(data), "NBA_MLFLOW_EXPERIMENT": "nba-tests", "COLUMNS": "200"}
    result = CliRunner().invoke(main, ["train", "resolution"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("nba-resolution version 1 (challenger): test ROC-AUC") for line in lines)
    assert any(line.startswith("handle time: test MAE") for line in lines)
    assert any(line.startswith("against the oracle: correlation") for line in lines)
    assert any(line.startswith("model captures") and "over skills-only routing" in line for line in lines)
    assert any(line.split()[:1] == ["skills-only"] for line in lines)
