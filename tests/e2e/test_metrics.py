"""``GET /metrics`` over HTTP: what each request, decision and fallback adds, labelled without any identifier."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, serve, settings_for
from tests.e2e.test_api import DEMO_CUSTOMER

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

ASSIGN = {
    "customer_id": DEMO_CUSTOMER,
    "intent": "billing",
    "channel": "voice",
    "language": "en",
    "agent_ids": ["A0001", "A0002", "A0003"],
}


def _scrape(client: httpx.Client) -> tuple[Samples, str]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    return samples, response.text


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_decisions_and_view_ages_are_counted_by_template(http: httpx.Client) -> None:
    before, _ = _scrape(http)
    recommended = http.post("/v1/recommend", json={"customer_id": DEMO_CUSTOMER, "channel": "voice"}).json()
    features = http.get(f"/v1/customers/{DEMO_CUSTOMER}/features")
    assert features.status_code == 200
    assert http.get("/v1/no-such-route").status_code == 404
    assigned = http.post("/v1/assign", json=ASSIGN).json()
    after, text = _scrape(http)

    def added(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    latency = "nba_http_request_duration_seconds_count"
    assert added(latency, route="/v1/recommend", method="POST", status="200") == 1
    assert added(latency, route="/v1/customers/{customer_id}/features", method="GET", status="200") == 1
    assert added(latency, route="unmatched", method="GET", status="404") == 1
    assert added(latency, route="/v1/assign", method="POST", status="200") == 1
    # The fast read's one request landed in a bucket no wider than the whole of its latency count says.
    fast = dict(route="/v1/customers/{customer_id}/features", method="GET", status="200")
    assert added("nba_http_request_duration_seconds_bucket", le="+Inf", **fast) == 1

    top = recommended["actions"][0]["action_id"]
    assert added("nba_decisions_total", endpoint="recommend", choice=top) == 1
    assert added("nba_decisions_total", endpoint="assign", choice=assigned["ranked_by"]) == 1
    fallbacks = {key: v for key, v in after.items() if key[0] == "nba_fallbacks_total"}
    assert fallbacks == {key: v for key, v in before.items() if key[0] == "nba_fallbacks_total"}

    # Both decisions read the customer: each view it has (an age) was observed twice, the others not at all.
    written = {v["name"] for v in features.json()["views"] if v["age_seconds"] is not None}
    assert written
    counted = "nba_feature_view_age_seconds_count"
    views = written | {dict(labels)["view"] for name, labels in after if name == counted}
    assert {view: added(counted, view=view) for view in views} == {view: 2 * (view in written) for view in views}

    # The models in force, as /ready names them.
    for model, version in http.get("/ready").json()["model_versions"].items():
        assert _value(after, "nba_model_info", model=model, version=version) == 1
    # No label carries the customer's id (it would be personal data and unbounded cardinality).
    assert DEMO_CUSTOMER not in text


def test_fallbacks_are_counted_by_the_dependency_that_failed(data_dir: Path, champions: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    with serve(settings_for(data_dir, dead)) as served, served.client() as client:
        assert client.post("/v1/recommend", json={"customer_id": DEMO_CUSTOMER, "channel": "voice"}).json()["degraded"]
        assert client.post("/v1/assign", json=ASSIGN).json()["degraded"]
        samples, _ = _scrape(client)
    assert _value(samples, "nba_fallbacks_total", endpoint="recommend", dependency="online_store") == 1
    assert _value(samples, "nba_fallbacks_total", endpoint="assign", dependency="online_store") == 1
    assert _value(samples, "nba_decisions_total", endpoint="assign", choice="order_given") == 1
    assert not any(name == "nba_feature_view_age_seconds_count" for name, _ in samples)
