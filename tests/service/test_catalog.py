"""The packaged action catalog and the feature contract name the same actions."""

from __future__ import annotations

from features import Registry
from service.catalog import NO_ACTION, Catalog


def test_last_offer_knows_every_action_the_catalog_can_present(registry: Registry) -> None:
    """An action missing from ``last_offer``'s categories would read as unknown after it is presented."""
    catalog = Catalog.load(registry)
    offered = {action.id for action in catalog.actions} - {NO_ACTION}
    categories = registry.entity("customer").feature("last_offer").categories
    assert categories is not None
    assert set(categories) == offered
