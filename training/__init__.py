"""Training: the simulated world, point-in-time frames, LightGBM models and the MLflow registry.

The service imports only the bundle format (:class:`ModelBundle`), the value arithmetic of an action
(:mod:`training.action_value`) and the registry (:class:`ModelRegistry`) from here.
"""

from training.action_value import NO_ACTION, churn_by_action, expected_gain, untreated_rows
from training.bundle import ModelBundle, ModelKind
from training.errors import DatasetError, ModelNotFound, RegistryUnavailable, ScoringError, TrainingError
from training.settings import MlflowSettings
from training.tracking import CHALLENGER, CHAMPION, ModelRegistry, RegisteredVersion

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "NO_ACTION",
    "DatasetError",
    "MlflowSettings",
    "ModelBundle",
    "ModelKind",
    "ModelNotFound",
    "ModelRegistry",
    "RegisteredVersion",
    "RegistryUnavailable",
    "ScoringError",
    "TrainingError",
    "churn_by_action",
    "expected_gain",
    "untreated_rows",
]
