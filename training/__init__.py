"""Training: the simulated world, point-in-time frames, LightGBM models and the MLflow registry.

The service imports only the bundle format (:class:`ModelBundle`) and the registry (:class:`ModelRegistry`)
from here.
"""

from training.bundle import ModelBundle, ModelKind
from training.errors import DatasetError, ModelNotFound, RegistryUnavailable, ScoringError, TrainingError
from training.settings import MlflowSettings
from training.tracking import CHALLENGER, CHAMPION, ModelRegistry, RegisteredVersion

__all__ = [
    "CHALLENGER",
    "CHAMPION",
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
]
