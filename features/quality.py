"""Feature quality: how much of the online store is missing, stale or out of range, and how far it drifted.

For a sample of the customers in the online store (the first ids a SCAN returns, read through
:meth:`OnlineStore.read` exactly as a decision reads them), per feature: the share served as a default
(missing), the share of its view past the TTL (stale), the share outside the contract's ``min``/``max`` (out
of range; an unknown category is stored as missing, so it counts as missing), and the population stability
index (PSI) against the training distribution.

The reference is the champion's training distribution, rebuilt from the offline store: the point-in-time
frame of the churn label table (``churn_labels.parquet``), the very frame ``nba train churn`` fits on, encoded
by the same :meth:`OfflineStore.matrix`. It is rebuilt rather than stored with the model because this room
may not reach MLflow (``features`` imports neither ``training`` nor the registry), and it is reproducible: the
same tables and the same join give the same frame; MLflow records the label table's hash for each model.

PSI uses ten quantile bins of the reference (numbers; fewer when quantiles coincide, as for counts that are
mostly zero) or one bin per category or truth value, with empty bins floored at ``EPSILON``. Below 0.1 a
feature is stable, from 0.1 it is worth watching, from 0.25 it drifted. It compares the values present:
how often a value is missing is the missing rate, reported on its own. Counting missing
values as one more bin would report every feature of a stale view as drifted (a store holding customers who
left long ago has about a fifth of its profiles past the TTL, none of whom the model trained on), saying
three times, and less clearly, what the stale column says once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from features.errors import EmptySampleError, OfflineStoreError
from features.offline_store import OfflineStore
from features.online_store import EntityVector, OnlineStore
from features.registry import EntitySchema, Feature

BINS = 10
EPSILON = 1e-4
"""The share an empty bin counts as, so that PSI stays finite (the usual choice)."""
PSI_WATCH = 0.1
PSI_DRIFT = 0.25
READ_BATCH = 50
"""Reads in flight at once: enough to hide the round trips, well under redis-py's pool of 100 connections."""
Status = Literal["ok", "watch", "drift", "no reference", "no values"]


def bin_edges(feature: Feature, values: np.ndarray) -> np.ndarray:
    """Inner cut points of ``feature``'s bins, from its reference ``values`` (encoded, NaN for missing).

    Categories and truth values get one bin per code (cuts half-way between codes); numbers the deciles of
    the reference, merged where they coincide.
    """
    if feature.dtype == "category":
        assert feature.categories is not None
        return np.arange(len(feature.categories) - 1, dtype=np.float64) + 0.5
    if feature.dtype == "bool":
        return np.array([0.5])
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return np.empty(0)
    # "lower": cuts are values the reference holds, so a count's bins are whole numbers, not 0.2 or 0.7.
    return np.unique(np.quantile(finite, np.linspace(0.0, 1.0, BINS + 1)[1:-1], method="lower"))


def proportions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the present values (not NaN) in each bin; right-closed, so a value equal to a cut falls below it.

    All zeros when no value is present.
    """
    present = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return counts.astype(np.float64) / max(present.size, 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of ``actual`` against ``expected`` (bin shares of the same bins)."""
    e = np.clip(expected, EPSILON, None)
    a = np.clip(actual, EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def status_of(value: float) -> Status:
    """The PSI band a value falls in."""
    return "drift" if value >= PSI_DRIFT else "watch" if value >= PSI_WATCH else "ok"


@dataclass(frozen=True)
class FeatureReference:
    """One feature's bins and the reference's share of its present values in each."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]


@dataclass(frozen=True)
class Reference:
    """The training distribution of an entity's features, as bins."""

    source: str
    rows: int
    features: dict[str, FeatureReference]

    @classmethod
    def from_matrix(cls, schema: EntitySchema, x: np.ndarray, *, source: str) -> Reference:
        """Bins from ``x``, a model input matrix of ``schema`` (registry order, NaN for missing)."""
        features = {}
        for i, feature in enumerate(schema.features):
            edges = bin_edges(feature, x[:, i])
            features[feature.name] = FeatureReference(tuple(edges), tuple(proportions(x[:, i], edges)))
        return cls(source, int(x.shape[0]), features)


def training_reference(offline: OfflineStore, labels_path: Path, entity: str = "customer") -> Reference:
    """The distribution of the point-in-time frame of ``labels_path`` (join key and ``ts`` columns)."""
    key = offline.registry.entity(entity).join_key
    try:
        labels = pq.read_table(labels_path, columns=[key, "ts"])
    except (OSError, pa.ArrowInvalid) as exc:
        raise OfflineStoreError(f"{labels_path}: cannot read a label table with columns {key}, ts: {exc}") from exc
    frame = offline.point_in_time(entity, labels)
    return Reference.from_matrix(
        offline.registry.entity(entity), offline.matrix(entity, frame), source=f"point-in-time frame of {labels_path}"
    )


@dataclass(frozen=True)
class FeatureQuality:
    """The figures of one feature over the sample; rates are shares in [0, 1]."""

    name: str
    view: str
    missing: float
    """Served as a default (or unknown): not in the store, or its view past the TTL."""
    stale: float
    out_of_range: float
    psi: float | None
    status: Status


@dataclass(frozen=True)
class QualityReport:
    """What ``nba features check`` prints and exports."""

    entity: str
    sampled: int
    reference: str | None
    checked_at: float
    features: tuple[FeatureQuality, ...]
    view_stale: dict[str, float]

    def problems(self, *, max_psi: float, max_stale: float) -> list[str]:
        """Why the check fails: features whose PSI reaches ``max_psi``, views stale in more than ``max_stale``."""
        drifted = [
            f"{f.name}: PSI {f.psi:.3f} >= {max_psi:g}" for f in self.features if f.psi is not None and f.psi >= max_psi
        ]
        stale = [f"{v}: {rate:.1%} stale > {max_stale:.1%}" for v, rate in self.view_stale.items() if rate > max_stale]
        return drifted + stale


def out_of_range(feature: Feature, values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Which stored values break the contract: a number outside ``min``/``max``. Defaults stand in for missing
    values and are checked by the registry instead. A category the contract does not know never reaches here:
    the store encodes categories when it writes them and keeps an unknown one as missing."""
    if feature.dtype in ("category", "bool"):
        return np.zeros(len(values), dtype=bool)
    finite = np.where(np.isnan(values), 0.0, values)
    low = finite < feature.min if feature.min is not None else np.zeros(len(values), dtype=bool)
    high = finite > feature.max if feature.max is not None else np.zeros(len(values), dtype=bool)
    return known & ~np.isnan(values) & (low | high)


def assess(
    schema: EntitySchema, vectors: Sequence[EntityVector], reference: Reference | None, *, checked_at: float
) -> QualityReport:
    """The report over ``vectors`` (read at ``checked_at``, at least one); PSI where the reference bins a feature."""
    if not vectors:
        raise EmptySampleError(
            f"the online store holds no {schema.name} to check: run `nba features materialize` first"
        )
    n = len(vectors)
    x = np.array([v.values for v in vectors], dtype=np.float64).reshape(n, len(schema.features))
    known = np.array([v.known for v in vectors], dtype=bool).reshape(n, len(schema.features))
    view_stale = {v.name: sum(v.name in e.stale_views for e in vectors) / n for v in schema.views}
    rows = []
    for i, feature in enumerate(schema.features):
        bins = reference.features.get(feature.name) if reference is not None else None
        column = x[:, i]
        drift: float | None = None
        status: Status = "no reference"
        if bins is not None:
            status = "no values"
            if np.any(~np.isnan(column)):
                drift = psi(np.array(bins.shares), proportions(column, np.array(bins.edges)))
                status = status_of(drift)
        view = schema.view_of[feature.name]
        rows.append(
            FeatureQuality(
                name=feature.name,
                view=view,
                missing=float((~known[:, i]).mean()),
                stale=view_stale[view],
                out_of_range=float(out_of_range(feature, column, known[:, i]).mean()),
                psi=drift,
                status=status,
            )
        )
    source = reference.source if reference is not None else None
    return QualityReport(schema.name, n, source, checked_at, tuple(rows), view_stale)


async def sample_vectors(store: OnlineStore, entity: str, *, limit: int | None, now: float) -> list[EntityVector]:
    """Up to ``limit`` customers' vectors as of ``now``, read ``READ_BATCH`` at a time."""
    if entity != "customer":
        raise ValueError(f"only customers can be sampled (OnlineStore.read reads one customer), not {entity!r}")
    ids = await store.sample_ids(entity, limit)
    vectors: list[EntityVector] = []
    for start in range(0, len(ids), READ_BATCH):
        chunk = ids[start : start + READ_BATCH]
        replies = await asyncio.gather(*(store.read(i, now=now) for i in chunk))
        vectors += [customer for customer, _ in replies]
    return vectors


async def check(
    store: OnlineStore, schema: EntitySchema, reference: Reference | None, *, sample: int | None
) -> QualityReport:
    """Sample the online store now and assess it against ``reference``."""
    now = time.time()
    vectors = await sample_vectors(store, schema.name, limit=sample, now=now)
    return assess(schema, vectors, reference, checked_at=now)


def write_metrics(report: QualityReport, path: Path) -> None:
    """Write ``report`` as Prometheus gauges in the textfile-collector format (atomically: temp file, rename).

    node_exporter's textfile collector (or any scraper of the file) then exports what the last check found,
    which is how Prometheus expects batch jobs to report.
    """
    registry = CollectorRegistry()
    by_feature = ("entity", "feature", "view")
    missing = Gauge(
        "nba_feature_missing_ratio",
        "Share of sampled entities served this feature's default.",
        by_feature,
        registry=registry,
    )
    outside = Gauge(
        "nba_feature_out_of_range_ratio",
        "Share of sampled values outside the contract's range.",
        by_feature,
        registry=registry,
    )
    drift = Gauge(
        "nba_feature_psi",
        "Population stability index against the training distribution.",
        by_feature,
        registry=registry,
    )
    stale = Gauge(
        "nba_feature_view_stale_ratio",
        "Share of sampled entities whose view is past its TTL.",
        ("entity", "view"),
        registry=registry,
    )
    sampled = Gauge("nba_feature_check_sampled", "Entities the last check read.", ("entity",), registry=registry)
    last = Gauge(
        "nba_feature_check_timestamp_seconds", "When the last check read the store.", ("entity",), registry=registry
    )
    for f in report.features:
        labels = (report.entity, f.name, f.view)
        missing.labels(*labels).set(f.missing)
        outside.labels(*labels).set(f.out_of_range)
        if f.psi is not None:
            drift.labels(*labels).set(f.psi)
    for view, rate in report.view_stale.items():
        stale.labels(report.entity, view).set(rate)
    sampled.labels(report.entity).set(report.sampled)
    last.labels(report.entity).set(report.checked_at)
    write_to_textfile(str(path), registry)
