"""The offline store: parquet snapshots of each entity, joined point-in-time with DuckDB.

A table ``{entity}_snapshots.parquet`` holds rows of (join key, ``feature_ts``, the entity's declared
features) in human form (category names, booleans, numbers). Training frames come from an as-of join:
each label row gets the latest snapshot taken at or before its timestamp, and a view's values older than
the view's TTL at that moment are nulled, exactly as the online store treats a stale view. Nothing
observed after a label's timestamp can reach its row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from features.errors import OfflineStoreError
from features.registry import EntitySchema, Registry

TIMESTAMP_COLUMN = "feature_ts"


class OfflineStore:
    """Parquet snapshot tables under ``root``, one per entity."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self._registry = registry

    def table_path(self, entity: str) -> Path:
        """Where ``entity``'s snapshots live."""
        return self.root / f"{entity}_snapshots.parquet"

    def _source(self, schema: EntitySchema) -> str:
        path = self.table_path(schema.name)
        if not path.is_file():
            raise OfflineStoreError(f"{path}: no snapshot table for entity {schema.name!r}")
        source = "read_parquet('{}')".format(str(path).replace("'", "''"))
        columns = {c[0] for c in duckdb.connect().sql(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        missing = [c for c in (schema.join_key, TIMESTAMP_COLUMN, *schema.names) if c not in columns]
        if missing:
            raise OfflineStoreError(f"{path}: missing column(s) {', '.join(missing)}")
        return source

    def latest(self, entity: str, as_of: datetime | None = None, *, since: datetime | None = None) -> pa.Table:
        """Each entity's most recent snapshot at or before ``as_of`` (all of them when None).

        ``since`` keeps only the entities whose latest snapshot was observed at or after it: incremental
        materialization by event time. It filters after the latest row is picked, so an entity comes with its
        latest row or not at all; a naive ``since`` is read as UTC, like the parquet timestamps.
        """
        schema = self._registry.entity(entity)
        source = self._source(schema)
        params: dict[str, datetime] = {}
        where = ""
        if as_of is not None:
            where = "WHERE feature_ts <= $as_of"
            params["as_of"] = as_of
        recent = ""
        if since is not None:
            recent = "AND feature_ts >= $since"
            params["since"] = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
        query = f"""
            SELECT {schema.join_key}, feature_ts, {", ".join(schema.names)}
            FROM {source} {where}
            QUALIFY row_number() OVER (PARTITION BY {schema.join_key} ORDER BY feature_ts DESC) = 1 {recent}
            ORDER BY {schema.join_key}
        """
        return duckdb.connect().sql(query, params=params or None).to_arrow_table()

    def point_in_time(self, entity: str, labels: pa.Table, *, ts_column: str = "ts") -> pa.Table:
        """``labels`` with the entity's features as they stood at each row's ``ts_column``.

        Rows with no snapshot at or before their timestamp keep nulls (the models' defaults apply).
        """
        schema = self._registry.entity(entity)
        for needed in (schema.join_key, ts_column):
            if needed not in labels.column_names:
                raise OfflineStoreError(f"label table has no column {needed!r}")
        source = self._source(schema)
        fresh = ", ".join(
            f"CASE WHEN l.{ts_column} - s.feature_ts <= INTERVAL '{view.ttl_days * 86_400} seconds' "
            f"THEN s.{feature.name} END AS {feature.name}"
            for view in schema.views
            for feature in view.features
        )
        con = duckdb.connect()
        con.register("labels", labels)
        query = f"""
            SELECT l.*, s.feature_ts, {fresh}
            FROM labels l ASOF LEFT JOIN {source} s
              ON l.{schema.join_key} = s.{schema.join_key} AND l.{ts_column} >= s.feature_ts
            ORDER BY l.{ts_column}, l.{schema.join_key}
        """
        return con.sql(query).to_arrow_table()

    def matrix(self, entity: str, table: pa.Table) -> np.ndarray:
        """The model input for ``table``'s rows: float64, registry order, NaN for missing."""
        schema = self._registry.entity(entity)
        return np.column_stack([f.encode_column(table.column(f.name)) for f in schema.features])
