"""Task bodies of the ``ingest_catalog`` DAG: fetch the catalogue from the API, validate it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from recomart.config import Settings


def ingest_catalog_snapshot(
    dsn: str,
    base_url: str,
    *,
    full_refresh: bool,
    full_snapshot_hours: float = 24.0,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Fetch the catalogue and bring ``raw.products`` up to date: incrementally, unless ``full_refresh``
    or the last full snapshot is ``full_snapshot_hours`` or more older than ``as_of`` (the run's data
    interval end; default now), when a full snapshot also marks absent products inactive.  The summary's
    ``no_change`` gives the reason when no product changed (its DAG then emits no asset event)."""
    from recomart.ingest.catalog import full_snapshot_interval, ingest_catalog

    every = full_snapshot_interval(full_snapshot_hours)
    result = ingest_catalog(dsn, base_url, incremental=not full_refresh, full_snapshot_every=every, as_of=as_of)
    summary = result.as_dict()
    changed = result.inserted + result.updated + result.deactivated + result.reactivated
    summary["no_change"] = (
        None
        if changed
        else f"no product inserted, updated, deactivated or reactivated ({result.mode}, {result.fetched} fetched)"
    )
    return summary


def validate_products(dsn: str, s: Settings) -> dict[str, Any]:
    """Run the ``raw.products`` suite; raise ``DataQualityError`` on a critical failure."""
    from recomart.quality import validate_raw

    return validate_raw(dsn, s.dataset, docs_dir=s.gx_docs_dir, tables=["products"]).to_dict()
