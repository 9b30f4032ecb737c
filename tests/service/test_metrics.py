"""The metrics' own arithmetic: what one call adds, read back from the exposition Prometheus scrapes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from service.metrics import Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_view_ages_land_in_their_buckets_and_stale_views_are_counted() -> None:
    metrics = Metrics(lambda: {"nba-churn": "3"})
    metrics.views_read({"customer_profile": 30.0, "customer_activity": 7_200.0, "offers": None}, ["customer_activity"])
    metrics.views_read({"customer_profile": 5.0}, [])
    samples = _samples(metrics)
    assert samples[("nba_feature_view_age_seconds_count", frozenset({("view", "customer_profile")}))] == 2
    assert samples[("nba_feature_view_age_seconds_sum", frozenset({("view", "customer_profile")}))] == 35.0
    assert (
        samples[("nba_feature_view_age_seconds_bucket", frozenset({("view", "customer_profile"), ("le", "10.0")}))] == 1
    )
    assert (
        samples[("nba_feature_view_age_seconds_bucket", frozenset({("view", "customer_profile"), ("le", "60.0")}))] == 2
    )
    assert ("nba_feature_view_age_seconds_count", frozenset({("view", "offers")})) not in samples
    assert samples[("nba_stale_views_total", frozenset({("view", "customer_activity")}))] == 1
    assert samples[("nba_model_info", frozenset({("model", "nba-churn"), ("version", "3")}))] == 1


def test_two_apps_in_one_process_keep_their_own_figures() -> None:
    first, second = Metrics(dict), Metrics(dict)
    first.observe_request("/v1/recommend", "POST", 200, 0.002)
    first.observe_request("/v1/recommend", "POST", 200, 0.004)
    labels = frozenset({("route", "/v1/recommend"), ("method", "POST"), ("status", "200")})
    assert _samples(first)[("nba_http_request_duration_seconds_count", labels)] == 2
    assert _samples(first)[("nba_http_request_duration_seconds_bucket", labels | {("le", "0.003")})] == 1
    assert ("nba_http_request_duration_seconds_count", labels) not in _samples(second)
