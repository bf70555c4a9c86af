"""Task bodies of the ``transform`` DAG: ``dbt build``, mart validation, ``feast apply``, materialize, and
the nightly data report."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg

from recomart.config import Settings
from recomart.marts import feature_history_built_at, feature_history_rebuilt_from, feature_history_span

log = logging.getLogger(__name__)


def build_warehouse_models(s: Settings, full_refresh: bool = False) -> dict[str, Any]:
    """``dbt build`` of the whole project (models, snapshot, data tests) for the configured data set.

    Without the unit tests: their inputs are fixed rows in the yml, not the warehouse's data, so a
    nightly run would only repeat what CI (``tests/integration/test_dbt.py``) and ``dbt test`` run, on
    the critical path of the models they test (dbt's own advice for production builds; about 6 of the
    112 node-seconds of a daily build at 10M events).

    A daily run is incremental: ``int_interactions`` and the feature histories recompute only their
    lookback window of days and the days of late-loaded events (``dbt_project/README.md``, section
    Incremental marts); ``full_refresh`` (a backfill, or the DAG's ``full_refresh`` param) rebuilds
    every mart from raw, which gives the same rows. The ``reco`` views that show product details
    survive either: they read the catalogue through ``reco.product_details()``, which dbt's CASCADE
    drop of a replaced table does not reach. Returns the build's summary (``DbtResult.as_dict``)."""
    from recomart.tools import tool_env
    from recomart.transform.dbt import dbt_build

    # target/ under the state dir, one per warehouse: dbt's partial parse (partial_parse.msgpack) and
    # manifest are kept per deployment, so a later build re-parses only what changed
    result = dbt_build(
        s.dbt_project_dir,
        tool_env(s),
        vars={"dataset": s.dataset},
        target_path=s.dbt_target_dir,
        log_path=s.dbt_target_dir.parent / "logs",
        full_refresh=full_refresh,
        exclude_resource_types=("unit_test",),
    )
    return result.as_dict() if hasattr(result, "as_dict") else {"ok": True}


def validate_mart_tables(dsn: str, s: Settings, every_row: bool = False) -> dict[str, Any]:
    """Run the mart suites after ``dbt build``; a critical failure stops Feast and training. The ratings'
    suite reads the pairs loaded since its last pass unless ``every_row`` (a full refresh)."""
    from recomart.quality import validate_marts

    return validate_marts(dsn, s.dataset, docs_dir=s.gx_docs_dir, every_row=every_row).to_dict()


def apply_feature_repo(s: Settings) -> None:
    """``feast apply`` of ``feature_repo/`` into the SQL registry, skipped when the definitions are
    unchanged since the last apply (:func:`recomart.features.apply_if_changed`)."""
    from recomart.features import apply_if_changed
    from recomart.tools import tool_env

    log.info(apply_if_changed(s.feature_repo_dir, tool_env(s)))


def windows_from_asset_events(events: Mapping[Any, Iterable[Any]] | None) -> list[tuple[datetime, datetime]]:
    """The ``[start, end)`` windows carried in the ``extra`` of the triggering asset events."""
    windows = []
    for asset_events in (events or {}).values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            if extra.get("start") and extra.get("end"):
                windows.append((datetime.fromisoformat(extra["start"]), datetime.fromisoformat(extra["end"])))
    return windows


def ledger_window(dsn: str) -> tuple[datetime, datetime] | None:
    """``[first loaded day, last loaded day + 1)`` from ``ops.loaded_files``, or None before any load."""
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("select to_regclass('ops.loaded_files')").fetchone()
        if exists is None or exists[0] is None:
            return None
        row = conn.execute(
            "select min(logical_date), max(logical_date) from ops.loaded_files where status = 'loaded'"
        ).fetchone()
    if row is None or row[0] is None:
        return None
    first, last = row
    return datetime.combine(first, time(), UTC), datetime.combine(last + timedelta(days=1), time(), UTC)


def materialization_window(
    dsn: str, windows: list[tuple[datetime, datetime]], since: datetime | None = None
) -> tuple[datetime, datetime]:
    """One explicit window: the asset events' windows and the ledger's range, stretched to the span of
    the feature histories (so every entity's latest row is in it, also a signup day before the first
    load or today's row stamped with tomorrow's midnight). With ``since`` (the ``built_at`` of the
    history rows the last complete materialization read), the ledger's range and the histories' start
    give way to the first day of the history rows dbt wrote after it: only an entity with such a row
    can have changed. Derived from data only, never from the wall clock."""
    candidates = list(windows)
    from_ledger = ledger_window(dsn)
    span = feature_history_span(dsn)
    if since is not None and span:
        candidates.append((feature_history_rebuilt_from(dsn, since) or span[1], span[1]))
    else:
        if from_ledger:
            candidates.append(from_ledger)
        if span:
            candidates.append(span)
    if not candidates:
        raise RuntimeError("nothing to materialize: no loaded files in ops.loaded_files and empty feature histories")
    return min(w[0] for w in candidates), max(w[1] for w in candidates)


def materialize_features(s: Settings, dsn: str, windows: list[tuple[datetime, datetime]]) -> dict[str, Any]:
    """Write every entity's latest feature row in the window to Redis, overwriting same-time rows so
    that a rebuilt mart's corrections reach the online store (Feast's Redis writer skips them).

    The window (:func:`materialization_window`) starts at the first history row dbt wrote since the
    mark the last complete run left in Redis (:func:`recomart.features.materialized_mark`); without a
    mark (a first run, a Redis that lost its data) it spans the whole histories. An entity whose rows
    from that day on a rebuild deleted without replacing them keeps its online row until a full refresh
    (which writes every history row again) or a run without a mark."""
    from recomart.features import materialized_mark, rematerialize_window, set_materialized_mark
    from recomart.tools import tool_env

    env = tool_env(s)
    built_at = feature_history_built_at(dsn)
    since = materialized_mark(s.feature_repo_dir, env) if built_at else None
    start, end = materialization_window(dsn, windows, since)
    result = rematerialize_window(s.feature_repo_dir, env, start, end)
    if built_at:
        set_materialized_mark(s.feature_repo_dir, env, built_at)
    log.info("materialized %s for [%s, %s] in %.1fs", result.feature_views, start, end, result.seconds)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "feature_views": list(result.feature_views),
        "seconds": round(result.seconds, 2),
    }


def report_day(logical_date: datetime | None, windows: list[tuple[datetime, datetime]], dsn: str) -> date:
    """The day the nightly data report is named after: the run's logical date; for an asset-triggered
    run (which has none in Airflow 3) the last day of the triggering events' windows, else the last
    loaded day of the ledger.  Derived from the run and the data, so a re-run names the same file."""
    if logical_date is not None:
        return logical_date.astimezone(UTC).date()
    ends = [end for _, end in windows]
    if not ends and (loaded := ledger_window(dsn)) is not None:
        ends = [loaded[1]]
    if not ends:
        raise RuntimeError("no data report day: the run has no logical date, no asset windows and no loaded files")
    return (max(ends) - timedelta(microseconds=1)).astimezone(UTC).date()


def write_data_report(s: Settings, dsn: str, day: date) -> dict[str, Any]:
    """Write ``<state>/reports/<day>.html`` (:mod:`recomart.data_report`) and log it to MLflow."""
    from recomart.data_report.nightly import write_nightly

    path, run_id, data = write_nightly(s, day, dsn)
    drawn = sorted(name for name, rows in data.rows.items() if rows)
    log.info("data report %s (MLflow run %s): %d plots with data: %s", path, run_id, len(drawn), drawn)
    return {"path": str(path), "mlflow_run_id": run_id, "plots_with_data": drawn}
