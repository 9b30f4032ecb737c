"""The last-known-good copies (``service/model_cache.py``) written by several processes sharing one data dir."""

from __future__ import annotations

import threading
from pathlib import Path

import lightgbm as lgb
import numpy as np

from service.model_cache import LastKnownGood
from training import ModelBundle
from training.calibrate import Calibrator


def _bundle() -> ModelBundle:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(x, y), 5)
    calibrator = Calibrator(method="sigmoid").fit(np.asarray(booster.predict(x)), y)
    return ModelBundle("churn", booster, calibrator, ("a", "b", "c"), "contract-1")


def test_writers_of_the_same_copy_at_once_each_finish_and_leave_one_whole_copy(tmp_path: Path) -> None:
    """Threads of one process share its id, as replicas in containers on one volume (compose.yaml) each have the
    same low one: the writers must not share a temporary name either way."""
    bundle = _bundle()
    cache = LastKnownGood(tmp_path)
    errors: list[BaseException] = []
    for version in range(1, 41):
        start = threading.Barrier(4)

        def write(v: str = str(version), go: threading.Barrier = start) -> None:
            go.wait()
            try:
                cache.save("nba-churn", v, bundle)
            except BaseException as exc:  # what a failing writer raised, for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=write) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    loaded = cache.load("nba-churn")
    assert loaded is not None
    assert loaded.version == "40"
    assert loaded.bundle.feature_names == ("a", "b", "c")
    assert sorted(p.name for p in (tmp_path / "nba-churn").iterdir()) == ["current.json", "v40.joblib"]
