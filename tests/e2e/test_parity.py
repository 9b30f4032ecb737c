"""Training/serving parity: the vector a model trains on is the vector the service feeds it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import numpy as np
import pyarrow as pa
import pytest
import redis.asyncio as aioredis

from features import OfflineStore, OnlineStore, Registry
from training import ModelRegistry


def _training_frame_now(offline: OfflineStore, ids: list[str]) -> np.ndarray:
    """Rows exactly as the point-in-time join builds training frames, with the label time set to now."""
    now = datetime.now(UTC)
    labels = pa.table({"customer_id": ids, "ts": pa.array([now] * len(ids), type=pa.timestamp("us", tz="UTC"))})
    frame = offline.point_in_time("customer", labels)
    order = {cid: i for i, cid in enumerate(frame.column("customer_id").to_pylist())}
    matrix = offline.matrix("customer", frame)
    return matrix[[order[c] for c in ids]]


def test_every_online_vector_equals_its_training_frame_row(
    offline: OfflineStore, registry: Registry, redis_url: str, materialized: None
) -> None:
    ids = offline.latest("customer").column("customer_id").to_pylist()
    expected = _training_frame_now(offline, ids)

    async def read_all() -> np.ndarray:
        client = aioredis.Redis.from_url(redis_url)
        store = OnlineStore(client, registry)
        try:
            vectors = [(await store.read(cid))[0].values for cid in ids]
        finally:
            await client.aclose()
        return np.vstack(vectors)

    served = asyncio.run(read_all())
    assert served.shape == (len(ids), len(registry.entity("customer").names))
    assert np.array_equal(served, expected, equal_nan=True)
    assert np.isnan(served).sum() == np.isnan(expected).sum()


def test_the_api_scores_the_training_vector(
    http: httpx.Client, offline: OfflineStore, model_registry: ModelRegistry
) -> None:
    ids = offline.latest("customer").column("customer_id").to_pylist()[::250]
    churn, _ = model_registry.load("churn")
    expected = churn.predict(_training_frame_now(offline, ids))
    served = [
        http.post("/v1/recommend", json={"customer_id": cid, "channel": "chat"}).json()["customer"]["churn_risk"]
        for cid in ids
    ]
    assert served == pytest.approx(expected.tolist(), rel=1e-12)
