"""Training/serving parity: the vector a model trains on is the vector the service feeds it, and the
world's ground truth reads the features the way both stores compute them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis.asyncio as aioredis

from features import OfflineStore, OnlineStore, Registry
from training import ModelRegistry, untreated_rows
from training.world import event_features_at


def _ids(offline: OfflineStore) -> list[str]:
    return offline.latest("customer").column("customer_id").to_pylist()


def test_every_online_vector_equals_its_training_frame_row(
    offline: OfflineStore, registry: Registry, redis_url: str, materialized: None
) -> None:
    ids = _ids(offline)
    now = time.time()
    expected = offline.matrix("customer", offline.as_of("customer", ids, datetime.fromtimestamp(now, UTC)))

    async def read_all() -> np.ndarray:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        try:
            vectors = [(await store.read(cid, now=now))[0].values for cid in ids]
        finally:
            await client.aclose()
        return np.vstack(vectors)

    served = asyncio.run(read_all())
    assert served.shape == (len(ids), len(registry.entity("customer").names))
    assert np.array_equal(served, expected, equal_nan=True)
    assert np.isnan(served).sum() == np.isnan(expected).sum()
    # Event features are really there: the world has recent logins for most customers.
    logins = registry.entity("customer").index["logins_30d"]
    assert (served[:, logins] > 0).mean() > 0.5


def test_the_api_scores_the_training_vector(
    http: httpx.Client, offline: OfflineStore, model_registry: ModelRegistry
) -> None:
    ids = _ids(offline)[::250]
    churn, _ = model_registry.load("churn")
    expected = churn.predict(untreated_rows(churn, offline.model_matrix("customer", offline.as_of("customer", ids))))
    served = [
        http.post("/v1/recommend", json={"customer_id": cid, "channel": "chat"}).json()["customer"]["churn_risk"]
        for cid in ids
    ]
    assert served == pytest.approx(expected.tolist(), rel=1e-12)


def test_training_frames_see_the_features_the_world_decided_on(
    world: Path, offline: OfflineStore, registry: Registry
) -> None:
    """The simulation drew every outcome from features it computed itself; the point-in-time join must
    rebuild exactly those, or the models learn from something the world never looked at."""
    labels = pq.read_table(world / "churn_labels.parquet")
    frame = offline.point_in_time("customer", labels)
    truth = event_features_at(
        pq.read_table(world / "customer_events.parquet"),
        registry,
        frame.column("customer_id").to_pylist(),
        frame.column("ts"),
    )
    schema = registry.entity("customer")
    for feature in schema.event_features:
        rebuilt = feature.encode_column(frame.column(feature.name))
        if feature.dtype == "category":  # the world gives the names (None for none): code them as the models do
            expected = feature.encode_column(pa.array(truth[feature.name], pa.string()))
        else:
            expected = np.asarray(truth[feature.name], dtype=np.float64)
            expected = np.where(np.isnan(expected), feature.encode(None), expected)  # the models see the default
        assert np.allclose(rebuilt, expected, equal_nan=True, rtol=1e-12, atol=1e-9), feature.name
