"""Task bodies of the ``ingest_events`` DAG: load the landing files of a window, validate them."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from recomart.config import Settings
from recomart.tasks.common import as_date

log = logging.getLogger(__name__)


def days_in_window(start_day: str | None, end_day: str | None, interval_start: Any, interval_end: Any) -> list[date]:
    """The days a run loads: the trigger form's ``start_day``..``end_day`` (inclusive, each exactly
    ``YYYY-MM-DD``, else ``InvalidDayError``) if given, else every day in the run's data interval
    ``[start, end)`` (one day for the daily timetable)."""
    from recomart.ingest.window import InvalidDayError, parse_day

    if start_day:
        first = parse_day(start_day, "start_day")
        last = parse_day(end_day, "end_day") if end_day else first
    elif interval_start is not None:
        first = as_date(interval_start)
        end = as_date(interval_end) if interval_end is not None else first + timedelta(days=1)
        last = max(first, end - timedelta(days=1))
    else:
        raise InvalidDayError("no window: give start_day/end_day or run with a data interval")
    if last < first:
        raise InvalidDayError(f"end_day {last} is before start_day {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def day_window(days: list[date]) -> dict[str, str]:
    """``{"start", "end"}`` (ISO, UTC) of the days ``[first, last + 1)``: the asset event's ``extra``."""
    start = datetime.combine(days[0], time(), UTC)
    end = datetime.combine(days[-1] + timedelta(days=1), time(), UTC)
    return {"start": start.isoformat(), "end": end.isoformat()}


def ingest_landing_files(dsn: str, s: Settings, days: list[date]) -> dict[str, Any]:
    """Load every feed of the data set for each day; one transaction per feed and day.  Records of users
    erased on request are left out with the erasure key and counted (``records_erased``).  ``no_change``
    is the reason when nothing new was loaded (see :func:`unchanged_reason`), else None."""
    from recomart.credentials import secrets_dir
    from recomart.ingest.erasure import read_erasure_key
    from recomart.ingest.feeds import feeds_for_dataset
    from recomart.ingest.load import load_feed_dates

    key = read_erasure_key(secrets_dir(s.state_dir))
    totals = {
        "loaded": 0,
        "unchanged": 0,
        "skipped_missing": 0,
        "records_loaded": 0,
        "records_rejected": 0,
        "records_erased": 0,
    }
    for feed in feeds_for_dataset(s.dataset):
        # daily feeds load every day of the window; a snapshot feed (e.g. users) once, as of the last day
        feed_days = days if feed.mode == "daily_partition" else [days[-1]]
        # the UCI landing links into the configured source folder: the only link target outside the landing folder
        for result in load_feed_dates(dsn, feed, s.landing_dir, feed_days, link_roots=(s.uci_dir,), erasure_key=key):
            log.info(
                "%s %s: %s (%d loaded, %d rejected, %d of erased users left out) %s",
                feed.name,
                result.logical_date,
                result.status,
                result.records_loaded,
                result.records_rejected,
                result.records_erased,
                result.message,
            )
            totals[result.status] = totals.get(result.status, 0) + 1
            totals["records_loaded"] += result.records_loaded
            totals["records_rejected"] += result.records_rejected
            totals["records_erased"] += result.records_erased
    return {
        "window": day_window(days),
        "days": len(days),
        "day_list": [d.isoformat() for d in days],
        "dataset": s.dataset,
        **totals,
        "no_change": unchanged_reason(days, totals),
    }


def unchanged_reason(days: list[date], totals: dict[str, int]) -> str | None:
    """Why a load changed nothing in ``raw`` (no file ``loaded`` or ``empty``: all unchanged or
    missing), or None when it changed something."""
    if totals.get("loaded", 0) or totals.get("empty", 0):
        return None
    return (
        f"nothing new loaded for {days[0]} .. {days[-1]} ({totals.get('unchanged', 0)} files unchanged, "
        f"{totals.get('skipped_missing', 0)} missing): no asset event"
    )


def validate_loaded_days(dsn: str, s: Settings, days: list[date] | list[str]) -> dict[str, Any]:
    """Run the raw suites of the data set's feeds (one day's partition when the run loaded one day);
    raise ``DataQualityError`` naming the expectation and sample values on a critical failure."""
    from recomart.ingest.feeds import feeds_for_dataset
    from recomart.quality import validate_raw

    summary = validate_raw(
        dsn,
        s.dataset,
        docs_dir=s.gx_docs_dir,
        logical_date=as_date(days[0]) if len(days) == 1 else None,
        tables=[f.table for f in feeds_for_dataset(s.dataset)],
    )
    return summary.to_dict()
