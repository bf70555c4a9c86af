"""``./recomart backfill``: docs/backfill.md's procedure over Airflow's REST API, with progress.

1. pause the downstream DAGs (default ``transform``), so the backfill's asset events start no run;
2. create the backfill (``POST /api/v2/backfills``; ``/dry_run`` first gives the number of runs);
3. follow it: a bar of finished runs (or a line every 10 s in a log) until the scheduler marks it
   completed (``completed_at``);
4. unless told otherwise, unpause the downstream DAGs and trigger each once, so one run consumes the
   whole backfill (``transform`` with ``full_refresh``: its incremental marts are rebuilt from raw).

Needs the api-server and the scheduler (``./recomart up``); reads nothing from Airflow's metadata DB.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

from recomart.config import Settings
from recomart.progress import counting
from recomart.stack import airflow_rest

FINISHED = ("success", "failed")


# the held DAGs' run conf after a backfill: transform rebuilds its incremental marts from raw
_RUN_CONF_AFTER_BACKFILL = {"transform": {"full_refresh": True}}


def _trigger_body(dag_id: str) -> dict[str, Any]:
    """The ``POST /dags/{dag_id}/dagRuns`` body of a held DAG's one run after the backfill."""
    return {"logical_date": None, "conf": _RUN_CONF_AFTER_BACKFILL.get(dag_id, {})}


class BackfillFailed(RuntimeError):
    """The backfill could not be created, or did not complete in time."""


@dataclass(frozen=True)
class BackfillResult:
    backfill_id: int
    runs: int
    states: dict[str, int]  # final state -> runs
    skipped: int  # dates in the range that already had a run (with reprocess "none")
    triggered: list[str]  # downstream DAGs triggered once afterwards


def _body(dag_id: str, first: date, last: date, max_active_runs: int, reprocess: str) -> dict[str, Any]:
    return {
        "dag_id": dag_id,
        "from_date": f"{first.isoformat()}T00:00:00Z",
        "to_date": f"{last.isoformat()}T00:00:00Z",
        "max_active_runs": max_active_runs,
        "reprocess_behavior": reprocess,
    }


def _check(response: httpx.Response, what: str) -> Any:
    if response.is_error:
        raise BackfillFailed(f"{what}: Airflow answered {response.status_code}: {response.text[:300]}")
    return response.json()


def _run_states(api: httpx.Client, dag_id: str, first: date, last: date) -> Counter:
    """States of the DAG's backfill runs whose logical date lies in [first, last]."""
    params = {
        "run_type": "backfill",
        "logical_date_gte": f"{first.isoformat()}T00:00:00Z",
        "logical_date_lte": f"{last.isoformat()}T00:00:00Z",
        "limit": 1000,
    }
    runs = _check(api.get(f"/dags/{dag_id}/dagRuns", params=params), "listing the backfill's runs")["dag_runs"]
    return Counter(str(run["state"]) for run in runs)


def _follow(api: httpx.Client, backfill_id: int, body: dict, planned: int, timeout_s: float) -> Counter:
    """Show finished runs until Airflow marks the backfill completed; returns the runs' final states."""
    dag_id = body["dag_id"]
    first, last = date.fromisoformat(body["from_date"][:10]), date.fromisoformat(body["to_date"][:10])
    deadline = time.monotonic() + timeout_s
    shown_done = shown_failed = 0
    with counting(f"backfill {dag_id} {first}..{last}: runs", planned, "failed") as advance:
        while True:
            states = _run_states(api, dag_id, first, last)
            done, failed = min(sum(states[s] for s in FINISHED), planned), states["failed"]
            for n in range(done - shown_done):  # one step per newly finished run, its failures counted
                advance(1 if n < failed - shown_failed else 0)
            shown_done, shown_failed = max(done, shown_done), max(failed, shown_failed)
            if _check(api.get(f"/backfills/{backfill_id}"), "reading the backfill")["completed_at"]:
                return states
            if time.monotonic() > deadline:
                raise BackfillFailed(f"backfill {backfill_id} not completed within {timeout_s:.0f} s: {dict(states)}")
            time.sleep(2)


def run_backfill(
    s: Settings,
    dag_id: str,
    first: date,
    last: date,
    *,
    max_active_runs: int = 4,
    reprocess: str = "none",
    hold: tuple[str, ...] = ("transform",),
    run_held: bool = True,
    timeout_s: float = 6 * 3600,
) -> BackfillResult:
    """Backfill ``dag_id`` for logical dates ``first``..``last`` (inclusive) as docs/backfill.md does.

    ``hold``: DAGs paused for the duration; with ``run_held`` they are unpaused and triggered once at
    the end (else they stay paused). ``reprocess``: Airflow's ``reprocess_behavior`` (``none``,
    ``failed``, ``completed``). Raises :class:`BackfillFailed` when Airflow refuses or time runs out.
    """
    body = _body(dag_id, first, last, max_active_runs, reprocess)
    with airflow_rest(s) as api:
        if _check(api.get(f"/dags/{dag_id}"), f"reading DAG {dag_id}")["is_paused"]:
            raise BackfillFailed(f"{dag_id} is paused, so its backfill runs would never start. Fix: unpause it")
        for held in hold:
            _check(api.patch(f"/dags/{held}", json={"is_paused": True}), f"pausing {held}")
        planned = _check(api.post("/backfills/dry_run", json=body), "planning the backfill")["total_entries"]
        created = _check(api.post("/backfills", json=body), "creating the backfill")
        states = _follow(api, created["id"], body, planned, timeout_s)
        triggered = []
        if run_held:
            for held in hold:
                _check(api.patch(f"/dags/{held}", json={"is_paused": False}), f"unpausing {held}")
                _check(api.post(f"/dags/{held}/dagRuns", json=_trigger_body(held)), f"triggering {held}")
                triggered.append(held)
    skipped = (last - first).days + 1 - planned
    return BackfillResult(created["id"], sum(states.values()), dict(states), skipped, triggered)
