"""The model bundle: everything the service needs to score, in one file, versioned as one unit.

A bundle carries the LightGBM booster, its calibrator, the exact input layout it was trained on (the
feature contract's version and the column order, or for a user's own table the inferred column schema),
for action models the action codes, and for the resolution model the handle-time regressor beside the
classifier, the contact's categories (intent, channel, language), whose codes lead each row, and the inputs
read from the agent's columns for the contact's intent (see :func:`with_matched`). The service
imports this module and nothing else from training, so the bundle format is the only thing the two rooms
share besides the feature contract.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import joblib
import lightgbm as lgb
import numpy as np

from training.calibrate import Calibrator
from training.fast_trees import FastTrees, Unsupported
from training.table_schema import TableSchema

ModelKind = Literal["churn", "propensity", "resolution"]
Matched = tuple[tuple[str, tuple[str, ...]], ...]
"""Inputs an agent holds once per skill, read for the contact's intent: each input's name and, per intent code,
the column it reads (``("intent_proficiency", ("proficiency_billing", "proficiency_technical", ...))``)."""
INTENT_INPUT = "contact_intent"
BUNDLE_FILE = "bundle.joblib"
# Scoring happens a few rows at a time inside a request: OpenMP threads would only spin on the shared cores.
_PREDICT_THREADS = 1
FAST_ROWS = 1_000
"""Rows a call scores on a prepared bundle's fast path (:mod:`training.fast_trees`) at most; a larger batch (batch
scoring, evaluation) goes to LightGBM, whose threads pay off there."""


@dataclass(frozen=True)
class ModelBundle:
    """A trained, calibrated model and the input layout it expects."""

    kind: ModelKind
    booster: lgb.Booster
    calibrator: Calibrator
    feature_names: tuple[str, ...]
    """Columns in order: the contract's model inputs (``EntitySchema.model_names``), then any extra (``action`` for
    churn and propensity)."""
    contract_version: str
    actions: tuple[str, ...] = ()
    """For action models: the action ids, in the order their codes were assigned."""
    metrics: dict[str, float] = field(default_factory=dict)
    schema: TableSchema | None = None
    """For a model trained on a user's own table (``nba train churn --dataset``): how to read that table.
    Such a bundle's ``contract_version`` starts with ``byo-``, so the service never serves it."""
    handle_time: lgb.Booster | None = None
    """For the resolution model: the regressor of a contact's handle time in seconds, on the same rows."""
    contact_fields: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """For the resolution model: the contact's categorical inputs (name, categories in code order), which lead
    each row; the customer's model inputs and then the agent's follow (see :meth:`pair_rows`)."""
    matched: Matched = ()
    """For the resolution model: the inputs that close each row, read from the agent's columns for the contact's
    intent (:func:`with_matched`), whose names end :attr:`feature_names`."""

    def prepare(self) -> ModelBundle:
        """Lay the trees out for the fast path (:mod:`training.fast_trees`; ~50 ms a model), for a bundle about to
        serve requests. Unprepared, or where the fast path does not take the model, LightGBM scores; both give the
        same predictions bit for bit and the same contributions to rounding (1e-9 in the tests). Returns the
        bundle."""
        for attr, booster in (("_fast", self.booster), ("_fast_handle_time", self.handle_time)):
            fast: FastTrees | None = None
            if booster is not None:
                try:
                    fast = FastTrees(booster)
                except Unsupported:
                    fast = None
            object.__setattr__(self, attr, fast)
        return self

    def _fast_for(self, x: np.ndarray, attr: str = "_fast") -> FastTrees | None:
        fast: FastTrees | None = self.__dict__.get(attr)
        return fast if fast is not None and len(x) <= FAST_ROWS else None

    def __getstate__(self) -> dict[str, object]:
        """What pickling keeps: the bundle without the fast path's tables (rebuilt by :meth:`prepare`)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_fast", "_fast_handle_time")}

    def _uncalibrated(self, x: np.ndarray) -> np.ndarray:
        """The booster's probabilities before calibration, one per row of ``x``."""
        fast = self._fast_for(x)
        if fast is not None:
            return fast.predict(x)
        return np.asarray(self.booster.predict(x, num_threads=_PREDICT_THREADS), dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, one per row of ``x``."""
        return self.calibrator.transform(self._uncalibrated(x))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the raw score (SHAP values, as LightGBM's ``pred_contrib``); last column is
        the bias."""
        fast = self._fast_for(x)
        if fast is not None and fast.contributions_supported:
            return fast.contributions(x)
        return np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=_PREDICT_THREADS), dtype=np.float64)

    def with_actions(self, x: np.ndarray, actions: Sequence[str]) -> np.ndarray:
        """Rows of ``x`` (one customer vector, or a matrix of them) repeated once per action with the action's code
        appended, customer by customer: row ``i * len(actions) + j`` is customer ``i`` offered ``actions[j]``.

        An action the model never saw gets a NaN code (LightGBM scores it as a missing category)."""
        codes = np.array([self.actions.index(a) if a in self.actions else np.nan for a in actions], dtype=float)
        customers = np.atleast_2d(x)
        n, m, width = len(customers), len(actions), customers.shape[1]
        rows = np.empty((n * m, width + 1), dtype=np.result_type(customers.dtype, codes.dtype))
        rows[:, :width] = customers if n == 1 else np.repeat(customers, m, axis=0)
        rows[:, width] = codes if n == 1 else np.tile(codes, n)
        return rows

    def predict_handle_time(self, x: np.ndarray) -> np.ndarray:
        """Expected handle time in seconds, one per row of ``x`` (the resolution model only)."""
        if self.handle_time is None:
            raise TypeError(f"a {self.kind} bundle has no handle-time model")
        fast = self._fast_for(x, "_fast_handle_time")
        if fast is not None:
            raw = fast.predict(x)
        else:
            raw = np.asarray(self.handle_time.predict(x, num_threads=_PREDICT_THREADS), dtype=np.float64)
        return np.maximum(raw, 0.0)

    def contact_codes(self, contact: Mapping[str, str]) -> np.ndarray:
        """The contact's category codes in :attr:`contact_fields` order; NaN for a value the model never saw."""
        return np.array(
            [cats.index(contact[name]) if contact[name] in cats else np.nan for name, cats in self.contact_fields],
            dtype=np.float64,
        )

    def pair_rows(self, contact: Mapping[str, str], customer: np.ndarray, agents: np.ndarray) -> np.ndarray:
        """One row per candidate agent for one contact: the contact's codes, the customer's model inputs (a
        vector) and that agent's model inputs (a row of ``agents``), so all candidates score in one call."""
        n, codes, customer = len(agents), self.contact_codes(contact), customer.reshape(-1)
        names = self.feature_names[: len(self.feature_names) - len(self.matched)]
        width = len(codes) + len(customer)
        rows = np.empty((n, len(names) + len(self.matched)), dtype=np.float64)
        rows[:, : len(codes)] = codes
        rows[:, len(codes) : width] = customer
        rows[:, width : len(names)] = agents.reshape(n, -1)
        # with_matched's columns, for the one intent every row shares: its column of each matched input.
        intent = float(rows[0, names.index(INTENT_INPUT)]) if n and self.matched else math.nan
        for j, (_, sources) in enumerate(self.matched):
            code = next((c for c in range(len(sources)) if intent == c), None)
            rows[:, len(names) + j] = math.nan if code is None else rows[:, names.index(sources[code])]
        return rows

    def save(self, directory: Path) -> Path:
        """Write the bundle to ``directory/bundle.joblib``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / BUNDLE_FILE
        joblib.dump(self, path)
        return path

    @staticmethod
    def load(path: Path) -> ModelBundle:
        """Read a bundle written by :meth:`save` (a directory or the file itself), prepared for the fast path."""
        file = path / BUNDLE_FILE if path.is_dir() else path
        bundle = joblib.load(file)
        if not isinstance(bundle, ModelBundle):
            raise TypeError(f"{file} holds a {type(bundle).__name__}, not a ModelBundle")
        return bundle.prepare()


def with_matched(x: np.ndarray, names: Sequence[str], matched: Matched) -> np.ndarray:
    """``x`` (columns ``names``, with the contact's intent code in ``contact_intent``) and one more column per
    ``matched`` input: the row's value of the column that input reads for the row's intent (NaN for an unknown
    intent). A tree model then splits on "the agent's rating for this contact's intent" directly, instead of
    learning which of the agent's per-skill columns each intent reads from a few thousand contacts."""
    if not matched:
        return x
    column = {name: i for i, name in enumerate(names)}
    intent = x[:, column[INTENT_INPUT]]
    extra = np.full((len(x), len(matched)), np.nan)
    for j, (_, sources) in enumerate(matched):
        for code, source in enumerate(sources):
            rows = intent == code
            extra[rows, j] = x[rows, column[source]]
    return np.column_stack([x, extra])
