"""The Litestar service: recommend and assign, scored on the feature store with the champion models."""

from service.app import create_app
from service.settings import AuthSettings, ServiceSettings, Settings

__all__ = ["AuthSettings", "ServiceSettings", "Settings", "create_app"]
