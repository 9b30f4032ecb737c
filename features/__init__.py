"""The feature store: the one contract between training and serving.

The registry declares every feature once; the offline store (parquet + DuckDB) builds point-in-time
training frames from it; the online store (Redis) serves the same vectors to the service.
"""

from features.embedded import EmbeddedValkey, online_store_url
from features.erasure import ErasureLedger
from features.errors import (
    EmptySampleError,
    FeatureStoreError,
    OfflineStoreError,
    OnlineStoreUnavailable,
    RegistryError,
    UnknownFeatureError,
)
from features.event_archive import EventArchive
from features.event_state import Event, EventLayout
from features.event_stream import ConsumeStats, EventPublisher, StreamConsumer
from features.materialize import materialize, materialize_events
from features.offline_store import OfflineStore
from features.online_store import EntityBatch, EntityVector, OnlineStore
from features.redis_client import OnlineClient, connect
from features.registry import EntitySchema, Feature, FeatureView, Registry
from features.settings import EventStreamSettings, OfflineSettings, RedisSettings
from features.view_read import ViewVector

__all__ = [
    "ConsumeStats",
    "EmbeddedValkey",
    "EmptySampleError",
    "EntityBatch",
    "EntitySchema",
    "EntityVector",
    "ErasureLedger",
    "Event",
    "EventArchive",
    "EventLayout",
    "EventPublisher",
    "EventStreamSettings",
    "Feature",
    "FeatureStoreError",
    "FeatureView",
    "OfflineSettings",
    "OfflineStore",
    "OfflineStoreError",
    "OnlineClient",
    "OnlineStore",
    "OnlineStoreUnavailable",
    "RedisSettings",
    "Registry",
    "RegistryError",
    "StreamConsumer",
    "UnknownFeatureError",
    "ViewVector",
    "connect",
    "materialize",
    "materialize_events",
    "online_store_url",
]
