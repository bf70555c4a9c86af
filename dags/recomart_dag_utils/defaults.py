"""Default task arguments and connection helpers shared by every RecoMart DAG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from recomart.alerts import log_failure_summary

WAREHOUSE_CONN_ID = "recomart_warehouse"
CATALOG_CONN_ID = "recomart_catalog_api"

DEFAULT_ARGS = {
    "owner": "recomart",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": log_failure_summary,
}


def warehouse_dsn() -> str:
    """libpq URL of the warehouse, from the ``AIRFLOW_CONN_RECOMART_WAREHOUSE`` connection, migrated to
    the newest schema (:func:`recomart.tasks.common.migrated_warehouse`)."""
    from recomart.tasks.common import migrated_warehouse

    conn = BaseHook.get_connection(WAREHOUSE_CONN_ID)
    return migrated_warehouse(conn.get_uri().replace("postgres://", "postgresql://", 1))


def catalog_base_url() -> str:
    """Base URL of the catalog API, from the ``AIRFLOW_CONN_RECOMART_CATALOG_API`` connection."""
    conn = BaseHook.get_connection(CATALOG_CONN_ID)
    return f"{conn.schema or 'http'}://{conn.host}:{conn.port}" if conn.port else f"http://{conn.host}"


@contextmanager
def fail_fast_on_bad_data() -> Iterator[None]:
    """Turn bad input (a malformed or refused file, too many rejected records, a failed critical
    expectation) into a failure without retries: bad data stays bad, and each retry would only add a
    failed attempt to the ledger."""
    from recomart.errors import BadInputError

    try:
        yield
    except BadInputError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def skip_when_unchanged(summary: dict) -> None:
    """End the task as skipped, so that it emits no asset event and starts no consumer, when the task
    body's ``summary`` says the run changed nothing (``no_change``: the reason, logged by Airflow)."""
    if summary.get("no_change"):
        raise AirflowSkipException(summary["no_change"])
