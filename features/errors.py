"""Errors raised by the feature store.

FeatureStoreError
├── RegistryError            the feature contract (YAML) is invalid
├── UnknownFeatureError      a name that the contract does not declare
├── OnlineStoreUnavailable   Redis did not answer (down, slow, refused)
├── OfflineStoreError        a parquet table is missing or malformed
└── EmptySampleError         the quality check found no entity in the online store
"""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Base class of every error the feature store raises."""


class RegistryError(FeatureStoreError):
    """The feature contract failed validation; the message names the file and the field."""


class UnknownFeatureError(FeatureStoreError, KeyError):
    """A feature, view or entity name that the contract does not declare."""


class OnlineStoreUnavailable(FeatureStoreError):
    """The online store (Redis) could not be reached or timed out."""


class OfflineStoreError(FeatureStoreError):
    """An offline table is missing, unreadable or lacks a column the contract needs."""


class EmptySampleError(FeatureStoreError):
    """The quality check found no entity to read: nothing was materialized, or all of it was erased."""
