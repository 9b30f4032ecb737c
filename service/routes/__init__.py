"""The API's route handlers, one module per resource."""

from service.routes.admin import reload_catalog
from service.routes.assign import assign
from service.routes.customers import customer_features, customer_lookup, erase_customer
from service.routes.events import ingest_events
from service.routes.feedback import feedback
from service.routes.health import health, prometheus_metrics, ready
from service.routes.recommend import recommend

__all__ = [
    "assign",
    "customer_features",
    "customer_lookup",
    "erase_customer",
    "feedback",
    "health",
    "ingest_events",
    "prometheus_metrics",
    "ready",
    "recommend",
    "reload_catalog",
]
