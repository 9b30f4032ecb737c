"""Errors raised by training and the model registry.

TrainingError
├── DatasetError        a table or label set is unusable (missing column, one class only, empty)
├── ScoringError        nba score cannot run as asked (malformed --model, not a table's model, unwritable --out)
├── OffPolicyError      a log cannot be evaluated off-policy (missing column, propensity outside (0, 1], empty)
└── RegistryUnavailable the MLflow store cannot be reached or lacks the asked-for model
    └── ModelNotFound   no such registered model, version or alias
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base class of every error training raises."""


class DatasetError(TrainingError):
    """The data cannot train a model; the message names the table and the column."""


class ScoringError(TrainingError):
    """``nba score`` cannot run as asked; the message names the option at fault."""


class OffPolicyError(TrainingError):
    """Logged decisions cannot be evaluated off-policy; the message names the column at fault."""


class RegistryUnavailable(TrainingError):
    """The MLflow tracking store or registry failed."""


class ModelNotFound(RegistryUnavailable):
    """No registered model, version or alias by that name."""
