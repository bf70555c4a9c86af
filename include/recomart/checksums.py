"""Checksums of business columns, to prove that a re-run leaves the same rows.

``table_checksums`` hashes every table (and view) of the pipeline's schemas, order-independently, over
all columns except the ones that legitimately change from run to run. The exclusions are explicit and
listed in :data:`RUN_METADATA_COLUMNS` and :data:`EXCLUDED_TABLES`.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

SCHEMAS = ("raw", "quarantine", "staging", "intermediate", "marts", "snapshots", "reco", "ops")

# Columns that record *when* or *by which run* something was done, not what the data is.
RUN_METADATA_COLUMNS: dict[str, set[str]] = {
    "*": {"_load_id", "_loaded_at", "load_id", "loaded_at", "quarantined_at"},
    # the dbt invocation that wrote the row's day or pair (the incremental models' state)
    "intermediate.int_interactions": {"built_at"},
    "intermediate.int_user_items": {"built_at"},
    "intermediate.int_user_category_history": {"built_at"},
    "marts.user_features_history": {"built_at"},
    "marts.item_features_history": {"built_at"},
    "marts.report_hourly_interactions": {"built_at"},
    "marts.report_daily_baskets": {"built_at"},
    # attempt_id: a serial; its values follow the order of attempts (two runs loading dates concurrently)
    "ops.loaded_files": {"started_at", "finished_at", "attempt_id"},
    "ops.schema_migrations": {"applied_at"},
    # dbt's record of its last successful build (dbt_project/macros/tests/new_rows.sql)
    "ops.dbt_last_build": {"loaded_until", "invocation_id", "built_until"},
    # how far Great Expectations' ratings suite has validated, and when (recomart.quality.watermarks)
    "ops.gx_validated_until": {"loaded_until", "validated_at"},
    # the watermark itself is business state; the rest describes the last run (full, then incremental)
    # and the last full snapshot (when, which run)
    "ops.catalog_watermark": {
        "last_load_id",
        "last_success_at",
        "fetched",
        "upserted",
        "unchanged",
        "quarantined",
        "mode",
        "resolved",
        "deactivated",
        "reactivated",
        "last_full_at",
        "last_full_load_id",
    },
    "raw.products": {"deactivated_at", "deactivated_by_load"},
    "quarantine.products": {"resolved_at", "resolved_by_load"},
    "staging.stg_catalog__products": {"deactivated_at", "deactivated_by_load_id"},
    "reco.user_recommendations": {"generation_id", "model_version"},
    "reco.user_recommendations_enriched": {"generation_id", "model_version"},
    "reco.popular_items": {"generation_id"},
    "reco.similar_items": {"generation_id"},
    "reco.similar_items_enriched": {"generation_id"},
    "snapshots.snap_catalog__products": {
        "dbt_scd_id",
        "dbt_updated_at",
        "dbt_valid_from",
        "dbt_valid_to",
        "deactivated_at",
        "deactivated_by_load_id",
    },
}

# Append-only logs: every run adds a row by design.
EXCLUDED_TABLES = {"reco.generations", "ops.model_promotions"}


def _excluded(relation: str, column: str) -> bool:
    return column in RUN_METADATA_COLUMNS["*"] or column in RUN_METADATA_COLUMNS.get(relation, set())


def table_checksums(dsn: str, schemas: tuple[str, ...] = SCHEMAS) -> dict[str, tuple[int, str]]:
    """``{"schema.table": (row_count, md5)}`` over the business columns of every relation.

    Rows are hashed one by one and the hashes sorted before the final md5, so physical row order does
    not matter. ``*_previous`` and ``*__staging`` tables and the append-only logs are skipped.
    """
    out: dict[str, tuple[int, str]] = {}
    with psycopg.connect(dsn) as conn:
        columns = conn.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_schema = any(%s) order by table_schema, table_name, ordinal_position",
            (list(schemas),),
        ).fetchall()
        by_relation: dict[str, list[str]] = {}
        for schema, table, column in columns:
            by_relation.setdefault(f"{schema}.{table}", []).append(column)
        for relation, cols in sorted(by_relation.items()):
            if relation in EXCLUDED_TABLES or relation.endswith(("_previous", "__staging")):
                continue
            kept = [c for c in cols if not _excluded(relation, c)]
            schema, table = relation.split(".", 1)
            row_text = sql.SQL("md5(row({})::text)").format(sql.SQL(", ").join(map(sql.Identifier, kept)))
            query = sql.SQL(
                "select count(*), coalesce(md5(string_agg(h, '' order by h)), '') from (select {} as h from {}.{}) t"
            ).format(row_text, sql.Identifier(schema), sql.Identifier(table))
            count, digest = conn.execute(query).fetchone()
            out[relation] = (count, digest)
    return out
