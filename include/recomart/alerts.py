"""Failure summaries for Airflow callbacks (no Airflow import needed)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("recomart.alerts")


def failure_summary(context: Mapping[str, Any]) -> str:
    """One readable paragraph: which task of which run failed, on which try, and why."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", None) or getattr(context.get("dag_run"), "run_id", "?")
    try_number = getattr(ti, "try_number", "?")
    exception = context.get("exception")
    interval = context.get("data_interval_start"), context.get("data_interval_end")
    reason = f"{type(exception).__name__}: {exception}" if exception else "no exception recorded"
    window = f" data interval {interval[0]} -> {interval[1]};" if interval[0] else ""
    return f"RecoMart task FAILED: dag={dag_id} task={task_id} run={run_id} try={try_number};{window} reason: {reason}"


def log_failure_summary(context: Mapping[str, Any]) -> None:
    """``on_failure_callback``: log the summary at ERROR level so it stands out in the task log."""
    log.error(failure_summary(context))
