"""``nba train churn --dataset``: a churn model on a user's own table, made like the contract's models.

The table is read and typed by :mod:`training.dataset`. With a time column, the oldest 60% of rows train,
the next 20% validate and the newest 20% test, and rows sharing a time stay on one side, so the test
rows come after everything the model saw. Without one, a stratified random 60 / 20 / 20 split by seed.
Fitting, early stopping, calibration and metrics are :func:`training.train.fit_split`'s, the same as for
the contract's models. The model is registered as ``PREFIX-churn-byo-STEM`` (STEM from the file name),
beside the contract's ``PREFIX-churn`` and never in its place: its bundle's contract version starts with
``byo-``, which the service refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from training.dataset import Dataset, load_dataset
from training.errors import DatasetError
from training.evaluate import describe_metrics
from training.train import Split, TrainingResult, TrainParams, fit_split

TRAIN_SHARE, VALID_SHARE = 0.6, 0.2
MIN_PER_CLASS = 10
"""Fewer rows of an outcome cannot put some in each of train, validation and test."""


@dataclass(frozen=True)
class ByoResult:
    """A model trained on a user's table, with what the user is told about the table and the split."""

    dataset: Dataset
    split: Split
    result: TrainingResult


def model_name(churn_name: str, path: Path) -> str:
    """``<contract churn model>-byo-<file stem>``: one registered model per table, never the contract's."""
    stem = re.sub(r"[^a-z0-9_]+", "-", path.stem.lower()).strip("-") or "dataset"
    return f"{churn_name}-byo-{stem}"


def stratified_split(y: np.ndarray, seed: int) -> Split:
    """Random 60 / 20 / 20 masks with each outcome's share the same in every part."""
    rng = np.random.default_rng(seed)
    part = np.empty(len(y), dtype=np.int8)
    for outcome in (0, 1):
        rows = rng.permutation(np.flatnonzero(y == outcome))
        cuts = np.round(len(rows) * np.array([TRAIN_SHARE, TRAIN_SHARE + VALID_SHARE])).astype(int)
        part[rows] = np.searchsorted(cuts, np.arange(len(rows)), side="right")
    return part == 0, part == 1, part == 2


def time_split(t: np.ndarray, column: str) -> Split:
    """Oldest 60% train, next 20% validate, newest 20% test; a time on a boundary goes to the later part."""
    ordered = np.sort(t)
    first, second = (ordered[int(len(t) * q)] for q in (TRAIN_SHARE, TRAIN_SHARE + VALID_SHARE))
    split = (t < first, (t >= first) & (t < second), t >= second)
    if not all(mask.any() for mask in split):
        raise DatasetError(
            f"--time-column {column!r}: {len(np.unique(t))} distinct time(s) cannot split into train (oldest 60%), "
            "validation and test (newest 20%); give a column with more distinct times or leave it out"
        )
    return split


def train_dataset(
    path: Path,
    *,
    label: str,
    entity: str,
    positive: str | None = None,
    time: str | None = None,
    params: TrainParams,
) -> ByoResult:
    """Read, type, split, train, calibrate and evaluate; nothing is registered here."""
    data = load_dataset(path, label=label, entity=entity, positive=positive, time=time)
    counts = np.bincount(data.y, minlength=2)
    if counts.min() < MIN_PER_CLASS:
        raise DatasetError(
            f"--label-column {label!r}: {counts[1]} positive and {counts[0]} negative rows; "
            f"need at least {MIN_PER_CLASS} of each to train, validate and test"
        )
    if time is not None and data.time is not None:
        split = time_split(data.time, time)
    else:
        split = stratified_split(data.y, params.seed)
    schema = data.schema
    result = fit_split(
        "churn",
        data.x,
        data.y,
        split,
        feature_names=schema.feature_names,
        categorical=schema.categorical_indices,
        contract_version=schema.contract_version,
        actions=(),
        params=params,
        source=path,
    )
    bundle = replace(result.bundle, schema=schema)
    tags = {**result.tags, "dataset": path.name, "label_column": label, "entity_column": entity}
    params_out = {**result.params, "split": _split_kind(time)}
    return ByoResult(data, split, replace(result, bundle=bundle, params=params_out, tags=tags))


def _split_kind(time: str | None) -> str:
    return f"by time ({time})" if time else "stratified random"


def print_summary(console: Console, byo: ByoResult, *, path: Path, name: str, version: str, alias: str) -> None:
    """What the user reads: the table as understood, the split, the test metrics and the registered version."""
    data = byo.dataset
    kept = len(data.y)
    read = f"{path}: {data.rows_read} rows" + (f", {kept} used" if kept != data.rows_read else "")
    console.print(read + "".join(f"; {note}" for note in data.notes))
    table = Table(box=box.SIMPLE_HEAD)
    for header in ("column", "type", "detail"):
        table.add_column(header)
    for column in data.columns:
        table.add_row(column.name, column.role, column.detail)
    console.print(table)
    train, valid, test = (int(mask.sum()) for mask in byo.split)
    schema = data.schema
    console.print(
        f"split {_split_kind(schema.time)}: train {train}, validation {valid}, test {test}; "
        f"{len(schema.features)} model inputs, calibration {byo.result.params['calibration']}"
    )
    console.print(describe_metrics(byo.result.bundle.metrics))
    console.print(f"registered {name} version {version} ({alias})")
