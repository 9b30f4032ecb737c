"""The files a training run leaves in MLflow: reliability diagram, gain importance and SHAP summary, each
checked against numbers computed here from the same model and rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.training.conftest import FEATURES, small_bundle
from training import CHALLENGER, ModelBundle, ModelRegistry
from training.evaluate import expected_calibration_error
from training.report import REPORT_FILES, register_result, write_report
from training.train import HeldOut, TrainingResult

PNG = b"\x89PNG\r\n\x1a\n"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def result() -> TrainingResult:
    bundle = small_bundle("churn", 4, 20)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, len(FEATURES)))
    x[::7, 2] = np.nan  # missing values reach the report as they reach the model
    y = (x[:, 0] + rng.normal(size=600) > 0).astype(np.int8)
    tags = {"kind": "churn", "contract_version": bundle.contract_version, "code_version": "test"}
    return TrainingResult(bundle, {"rows_train": 400}, tags, HeldOut(x, y))


@pytest.fixture(scope="module")
def report(result: TrainingResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(result, tmp_path_factory.mktemp("report"))


def test_every_file_is_written_and_plots_are_pngs(report: Path) -> None:
    assert sorted(p.name for p in report.iterdir()) == sorted(REPORT_FILES)
    for name in REPORT_FILES:
        if name.endswith(".png"):
            data = (report / name).read_bytes()
            assert data.startswith(PNG)
            assert len(data) > 5_000  # axes, bars and labels, not an empty canvas


def test_reliability_bins_are_the_ece_bins(result: TrainingResult, report: Path) -> None:
    p = result.bundle.predict(result.held_out.x)
    y = result.held_out.y
    rows = _rows(report / "reliability.csv")
    assert [(float(r["lower"]), float(r["upper"])) for r in rows] == [(b / 10, (b + 1) / 10) for b in range(10)]
    which = np.minimum((p * 10).astype(int), 9)
    for b, row in enumerate(rows):
        mask = which == b
        assert int(row["count"]) == mask.sum()
        if mask.any():
            assert float(row["mean_predicted"]) == pytest.approx(p[mask].mean())
            assert float(row["observed_rate"]) == pytest.approx(y[mask].mean())
        else:
            assert row["mean_predicted"] == row["observed_rate"] == "nan"
    ece = sum(
        int(r["count"]) / len(p) * abs(float(r["mean_predicted"]) - float(r["observed_rate"]))
        for r in rows
        if int(r["count"])
    )
    assert ece == pytest.approx(expected_calibration_error(y, p))


def test_feature_importance_is_the_boosters_gain(result: TrainingResult, report: Path) -> None:
    booster = result.bundle.booster
    rows = _rows(report / "feature_importance.csv")
    gain = dict(zip(FEATURES, booster.feature_importance(importance_type="gain"), strict=True))
    splits = dict(zip(FEATURES, booster.feature_importance(importance_type="split"), strict=True))
    assert {r["feature"] for r in rows} == set(FEATURES)
    for r in rows:
        assert float(r["gain"]) == pytest.approx(gain[r["feature"]])
        assert int(r["splits"]) == splits[r["feature"]]
    assert [float(r["gain"]) for r in rows] == sorted((float(r["gain"]) for r in rows), reverse=True)
    assert rows[0]["feature"] == "tenure_months"  # the one feature the label is made of


def test_shap_summary_is_the_mean_absolute_contribution(result: TrainingResult, report: Path) -> None:
    contrib = result.bundle.booster.predict(result.held_out.x, pred_contrib=True)
    expected = dict(zip(FEATURES, np.abs(contrib[:, :-1]).mean(axis=0), strict=True))
    rows = _rows(report / "shap_summary.csv")
    assert [r["feature"] for r in rows] == sorted(FEATURES, key=lambda f: -expected[f])
    for r in rows:
        assert float(r["mean_abs_shap"]) == pytest.approx(expected[r["feature"]])


def test_shap_summary_samples_large_test_sets(
    result: TrainingResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("training.report.SHAP_ROWS", 100)
    first = _rows(write_report(result, tmp_path / "a") / "shap_summary.csv")
    assert first == _rows(write_report(result, tmp_path / "b") / "shap_summary.csv")  # the sample is seeded
    full = np.abs(result.bundle.booster.predict(result.held_out.x, pred_contrib=True)[:, :-1]).mean(axis=0)
    sampled = {r["feature"]: float(r["mean_abs_shap"]) for r in first}
    assert [sampled[f] for f in FEATURES] != pytest.approx(list(full))


def test_register_result_logs_the_report_with_the_bundle(
    models: ModelRegistry, result: TrainingResult, tmp_path: Path
) -> None:
    version = register_result(models, result)

    assert version == "1"
    assert models.version_for("churn", CHALLENGER) == "1"
    (listed,) = models.versions("churn")
    assert listed.run_id is not None
    logged = tmp_path / "artifacts" / listed.run_id / "artifacts"
    assert sorted(p.name for p in (logged / "report").iterdir()) == sorted(REPORT_FILES)
    assert (logged / "bundle" / "bundle.joblib").is_file()
    name = models.model_name("churn")
    tags = MlflowClient(tracking_uri=models.tracking_uri).get_model_version(name, "1").tags
    assert {k: tags[k] for k in ("code_version", "contract_version", "kind")} == {
        "code_version": "test",
        "contract_version": "contract-4",
        "kind": "churn",
    }
    loaded, _ = models.load("churn", CHALLENGER)
    assert isinstance(loaded, ModelBundle)
