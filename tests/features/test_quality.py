"""The quality check: PSI behaves as the index it claims to be, and the rates it reports over the online store
are the ones the offline store says the online store should show."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from prometheus_client.parser import text_string_to_metric_families

from features import EntityVector, OfflineStore, OnlineStore, Registry
from features.errors import EmptySampleError
from features.quality import (
    PSI_DRIFT,
    PSI_WATCH,
    Reference,
    assess,
    bin_edges,
    check,
    proportions,
    psi,
    training_reference,
    write_metrics,
)
from tests.conftest import run_with_store, served_known

T = TypeVar("T")
NS = "quality"


def _run(redis_url: str, registry: Registry, body: Callable[[OnlineStore], Awaitable[T]], ns: str = "nba") -> T:
    return run_with_store(redis_url, registry, body, ns)


SHARES = arrays(np.float64, st.integers(2, 12), elements=st.floats(0, 1)).filter(lambda a: a.sum() > 0)


@given(expected=SHARES, data=st.data())
def test_psi_is_zero_for_the_same_shares_and_positive_otherwise(expected: np.ndarray, data: st.DataObject) -> None:
    expected = expected / expected.sum()
    actual = data.draw(arrays(np.float64, len(expected), elements=st.floats(0, 1)).filter(lambda a: a.sum() > 0))
    actual = actual / actual.sum()
    assert psi(expected, expected) == 0.0
    # Every term (a - e) ln(a / e) is >= 0, so the index is too, and symmetric in its two arguments.
    assert psi(expected, actual) >= 0.0
    assert psi(expected, actual) == pytest.approx(psi(actual, expected))


@given(values=arrays(np.float64, st.integers(1, 300), elements=st.floats(-1e6, 1e6) | st.just(np.nan)))
def test_proportions_share_out_the_present_values(values: np.ndarray) -> None:
    edges = np.array([-10.0, 0.0, 10.0])
    shares = proportions(values, edges)
    present = values[~np.isnan(values)]
    assert len(shares) == 4
    if present.size:
        assert shares.sum() == pytest.approx(1.0)
        # Right-closed bins: a value equal to a cut counts below it.
        assert shares[0] == pytest.approx((present <= -10).mean())
        assert shares[1] == pytest.approx(((present > -10) & (present <= 0)).mean())
        assert shares[3] == pytest.approx((present > 10).mean())
    else:
        assert shares.sum() == 0.0


def test_bins_are_deciles_for_numbers_and_one_per_code_otherwise(registry: Registry) -> None:
    schema = registry.entity("customer")
    values = np.arange(1000, dtype=np.float64)
    edges = bin_edges(schema.feature("monthly_charge"), values)
    assert len(edges) == 9
    assert proportions(values, edges) == pytest.approx(np.full(10, 0.1), abs=0.002)
    # Counts that are mostly zero: coinciding deciles merge instead of making empty bins.
    counts = np.array([0.0] * 800 + [1.0] * 150 + [5.0] * 50)
    assert list(bin_edges(schema.feature("logins_7d"), counts)) == [0.0, 1.0]
    plan = bin_edges(schema.feature("plan"), np.array([0.0, 2.0]))
    assert list(plan) == [0.5, 1.5]
    assert list(proportions(np.array([0.0, 0.0, 1.0, 2.0, np.nan]), plan)) == [0.5, 0.25, 0.25]
    assert list(bin_edges(schema.feature("consent_marketing"), np.array([1.0]))) == [0.5]


def _vectors(registry: Registry, x: np.ndarray, stale: tuple[str, ...] = ()) -> list[EntityVector]:
    schema = registry.entity("customer")
    return [
        EntityVector(f"C{i}", row, True, ~np.isnan(row), schema.names, {v.name: 0.0 for v in schema.views}, stale)
        for i, row in enumerate(x)
    ]


def test_a_sample_of_the_reference_is_stable_and_a_shift_drifts(registry: Registry) -> None:
    schema = registry.entity("customer")
    rng = np.random.default_rng(7)
    i = schema.index["monthly_charge"]
    reference_x = np.zeros((5000, len(schema.features)))
    reference_x[:, i] = rng.normal(60, 15, 5000)
    reference = Reference.from_matrix(schema, reference_x, source="synthetic")

    same = np.zeros((1000, len(schema.features)))
    same[:, i] = rng.normal(60, 15, 1000)
    stable = {f.name: f for f in assess(schema, _vectors(registry, same), reference, checked_at=0.0).features}
    assert stable["monthly_charge"].psi is not None
    assert stable["monthly_charge"].psi < PSI_WATCH
    assert stable["monthly_charge"].status == "ok"

    shifted = same.copy()
    shifted[:, i] += 15  # one standard deviation
    drifted = {f.name: f for f in assess(schema, _vectors(registry, shifted), reference, checked_at=0.0).features}
    assert drifted["monthly_charge"].psi is not None
    assert drifted["monthly_charge"].psi >= PSI_DRIFT
    assert drifted["monthly_charge"].status == "drift"
    assert drifted["tenure_months"].psi == 0.0  # untouched columns do not move


def test_rates_count_missing_stale_and_out_of_range_values(registry: Registry) -> None:
    schema = registry.entity("customer")
    x = np.zeros((4, len(schema.features)))
    x[:, schema.index["monthly_charge"]] = [10.0, -5.0, np.nan, 20.0]  # min 0: one below
    x[:, schema.index["last_sentiment"]] = [0.5, 1.5, -1.0, np.nan]  # [-1, 1]: one above, the bound is in
    vectors = _vectors(registry, x)
    vectors[1] = EntityVector("C1", x[1], True, ~np.isnan(x[1]), schema.names, {}, ("customer_profile",))
    report = assess(schema, vectors, None, checked_at=1.0)
    by = {f.name: f for f in report.features}
    assert by["monthly_charge"].out_of_range == 0.25
    assert by["monthly_charge"].missing == 0.25
    assert by["last_sentiment"].out_of_range == 0.25
    assert by["plan"].out_of_range == 0.0  # categories are checked when written: an unknown one is missing
    assert by["tenure_months"].out_of_range == 0.0
    assert report.view_stale["customer_profile"] == 0.25
    assert by["plan"].stale == 0.25
    assert by["logins_7d"].stale == 0.0
    assert all(f.psi is None and f.status == "no reference" for f in report.features)
    assert report.problems(max_psi=PSI_DRIFT, max_stale=0.2) == ["customer_profile: 25.0% stale > 20.0%"]
    assert report.problems(max_psi=PSI_DRIFT, max_stale=0.25) == []


def test_an_empty_sample_is_an_error_naming_the_fix(registry: Registry) -> None:
    with pytest.raises(EmptySampleError, match="nba features materialize"):
        assess(registry.entity("customer"), [], None, checked_at=0.0)


@pytest.fixture(scope="module")
def reference(offline: OfflineStore, world: Path) -> Reference:
    return training_reference(offline, world / "churn_labels.parquet")


def test_check_over_the_whole_store_reports_what_the_offline_store_predicts(
    materialized: None, redis_url: str, registry: Registry, offline: OfflineStore, reference: Reference
) -> None:
    schema = registry.entity("customer")
    report = _run(redis_url, registry, lambda store: check(store, schema, reference, sample=None))
    ids = offline.latest("customer").column("customer_id").to_pylist()
    assert report.sampled == len(ids)

    # What the online store should serve now, from the offline store: the same rates, the same PSI.
    table = offline.as_of("customer", ids, at=datetime.fromtimestamp(report.checked_at, UTC))
    expected_missing = 1.0 - served_known(schema, table).mean(axis=0)
    x = offline.matrix("customer", table)
    for i, f in enumerate(report.features):
        assert f.missing == pytest.approx(expected_missing[i], abs=1e-9), f.name
        bins = reference.features[f.name]
        assert f.psi == pytest.approx(psi(np.array(bins.shares), proportions(x[:, i], np.array(bins.edges)))), f.name
        assert f.out_of_range == 0.0, f.name  # the simulated world keeps to the contract
    for view in schema.views:
        if view.source == "snapshot":
            stamps = table.column("feature_ts").to_pylist()
            old = sum(report.checked_at - ts.timestamp() > view.ttl_seconds for ts in stamps) / len(ids)
            assert report.view_stale[view.name] == pytest.approx(old), view.name


def test_sample_reads_at_most_n_customers(
    materialized: None, redis_url: str, registry: Registry, reference: Reference
) -> None:
    schema = registry.entity("customer")
    report = _run(redis_url, registry, lambda store: check(store, schema, reference, sample=120))
    assert report.sampled == 120


def test_out_of_range_values_in_the_store_are_counted(
    redis_client: redis.Redis, redis_url: str, registry: Registry
) -> None:
    schema = registry.entity("customer")
    good = {"customer_id": "G1", "monthly_charge": 30.0, "plan": "basic", "tenure_months": 3}
    bad = {"customer_id": "B1", "monthly_charge": -4.0, "plan": "platinum", "tenure_months": 3}

    async def body(store: OnlineStore) -> None:
        await store.write("customer", [good, bad], observed_at=[time.time()] * 2)

    _run(redis_url, registry, body, ns=NS)
    report = _run(redis_url, registry, lambda store: check(store, schema, None, sample=None), ns=NS)
    by = {f.name: f for f in report.features}
    assert report.sampled == 2
    assert by["monthly_charge"].out_of_range == 0.5
    # The packed store encodes a category when it is written: one the contract does not know is stored as
    # missing (and served as the default), so the check counts it there, not as out of range.
    assert by["plan"].out_of_range == 0.0
    assert by["plan"].missing == 0.5
    assert by["tenure_months"].out_of_range == 0.0


def test_metrics_file_holds_the_report(registry: Registry, tmp_path: Path) -> None:
    schema = registry.entity("customer")
    x = np.ones((3, len(schema.features)))
    x[0, schema.index["monthly_charge"]] = -1.0
    reference = Reference.from_matrix(schema, np.ones((10, len(schema.features))), source="ones")
    report = assess(schema, _vectors(registry, x, stale=("customer_usage",)), reference, checked_at=1234.5)
    path = tmp_path / "nba_features.prom"
    write_metrics(report, path)
    samples = {
        (s.name, s.labels.get("feature") or s.labels.get("view") or ""): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }
    assert samples[("nba_feature_out_of_range_ratio", "monthly_charge")] == pytest.approx(1 / 3)
    assert samples[("nba_feature_missing_ratio", "monthly_charge")] == 0.0
    assert samples[("nba_feature_psi", "tenure_months")] == 0.0
    assert samples[("nba_feature_psi", "monthly_charge")] == pytest.approx(
        next(f.psi for f in report.features if f.name == "monthly_charge")
    )
    assert samples[("nba_feature_view_stale_ratio", "customer_usage")] == 1.0
    assert samples[("nba_feature_view_stale_ratio", "customer_profile")] == 0.0
    assert samples[("nba_feature_check_sampled", "")] == 3
    assert samples[("nba_feature_check_timestamp_seconds", "")] == 1234.5
