"""``POST /v1/admin/catalog/reload``: put the catalog file's current version in force (admin)."""

from __future__ import annotations

from litestar import post

from service.catalog_source import CatalogSource
from service.openapi import KEYED, error_responses
from service.schemas import CatalogReloadResponse


@post(
    "/v1/admin/catalog/reload",
    operation_id="reload_catalog",
    summary="Reload the action catalog from its file",
    description="Loads and validates the catalog file, then puts it in force for the next requests. A file that "
    "fails validation never replaces the running catalog: 422 whose `detail` names the file and, for each problem, "
    "the action and the field (also in `errors`), and the running catalog stays. The file is also polled for "
    "changes every NBA_CATALOG_POLL_S seconds, so this is for when a change must count now.",
    status_code=200,
    tags=["admin"],
    responses=error_responses(*KEYED, 422),
)
async def reload_catalog(catalogs: CatalogSource) -> CatalogReloadResponse:
    """Reload the catalog; the new one's version and actions."""
    before = catalogs.current.version
    catalog = catalogs.reload()
    return CatalogReloadResponse(
        path=str(catalogs.path),
        version=catalog.version,
        actions=[a.id for a in catalog.actions],
        reloaded=catalog.version != before,
    )
