"""Helpers shared by the task bodies of several DAGs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from recomart.warehouse.migrate import migrate


def as_date(value: Any) -> date:
    """A ``date`` from a date, a datetime (UTC day of an aware one) or an ISO string."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def repeat_purchases_allowed(dataset: str | None) -> bool:
    """The feed policy of data set ``dataset``: True if any of its feeds declares
    ``repeat_purchases_recommendable`` (UCI), False for the generated shop and unknown data sets."""
    from recomart.ingest.feeds import feeds_for_dataset

    if not dataset:
        return False
    try:
        return any(feed.repeat_purchases_recommendable for feed in feeds_for_dataset(dataset))
    except KeyError:
        return False


def migrated_warehouse(dsn: str) -> str:
    """``dsn`` after bringing its warehouse to the newest schema migration (one ledger read when it is
    current): every task reaches the warehouse through this, so a deployment upgrades on its first run."""
    migrate(dsn, log=print)
    return dsn
