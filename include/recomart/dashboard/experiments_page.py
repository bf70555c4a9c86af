"""The Experiments page: every experiment of ``ops.experiments`` and the analysis of one.

The analysis is :mod:`recomart.experiments`' own, as ``./recomart experiment report`` prints it: the
per-user frame of ``marts.fct_experiment_users`` (:func:`~recomart.experiments.frame.users_frame`),
:func:`~recomart.experiments.analysis.analyse` (assignment counts and SRM, conversion per variant with
Wilson intervals, CUPED, the mSPRT decision) and the daily looks of
:func:`~recomart.experiments.analysis.sequential_over_days` for the plot of the estimate over days.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import psycopg
from psycopg.rows import tuple_row

from recomart.dashboard import charts
from recomart.experiments.analysis import analyse, sequential_over_days
from recomart.experiments.definitions import Experiment
from recomart.experiments.frame import MartMissing, users_frame
from recomart.experiments.store import list_experiments

ANALYSES_KEPT = 8
_analyses: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_analyses_lock = threading.Lock()


@contextlib.contextmanager
def tuple_rows(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """``conn`` returning tuples (as :mod:`recomart.experiments` reads them), its row factory restored after."""
    previous = conn.row_factory
    conn.row_factory = tuple_row
    try:
        yield conn
    finally:
        conn.row_factory = previous


def _status(experiment: Experiment, now: datetime) -> str:
    if experiment.running_at(now):
        return "running"
    return "scheduled" if now < experiment.starts_at else "ended"


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def looks_rows(looks: pd.DataFrame) -> list[dict[str, Any]]:
    """The daily looks as chart rows (an unbounded interval end becomes None)."""
    columns = ["day", "variant", "estimate", "lower", "upper", "significant"]
    return [{key: _finite_or_none(value) for key, value in row.items()} for row in looks[columns].to_dict("records")]


def _analysis(experiment: Experiment, frame: pd.DataFrame) -> dict[str, Any]:
    looks_frame = sequential_over_days(frame, experiment.control)
    result = analyse(frame, control=experiment.control, shares=experiment.shares, looks=looks_frame).as_dict()
    looks = looks_rows(looks_frame)
    conversion = [
        {"variant": v["variant"], **{k: v["conversion"][k] for k in ("estimate", "lower", "upper")}}
        for v in result["variants"]
    ]
    return {
        "result": result,
        "charts": {"conversion": charts.conversion_per_variant(conversion), "looks": charts.estimate_over_days(looks)},
    }


def analysis_of(experiment: Experiment, frame: pd.DataFrame) -> dict[str, Any]:
    """:func:`_analysis` of ``frame``, kept for the last :data:`ANALYSES_KEPT` frames: the analysis is a
    pure function of the experiment's control and shares and of the frame's content (hashed), which
    changes only when dbt rebuilds the mart, so a page re-read skips the statistics."""
    content = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
    key = (experiment.name, experiment.control, tuple(experiment.shares.items()), content)
    with _analyses_lock:
        if key in _analyses:
            _analyses.move_to_end(key)
            return _analyses[key]
    found = _analysis(experiment, frame)
    with _analyses_lock:
        _analyses[key] = found
        while len(_analyses) > ANALYSES_KEPT:
            _analyses.popitem(last=False)
    return found


def experiments(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """The page's context: every experiment with its status, and the analysis of ``name`` (default: the
    newest to start) or why there is none (``problem``)."""
    now = datetime.now(UTC)
    with tuple_rows(conn):
        listed = list_experiments(conn)
        chosen = next((e for e in listed if e.name == name), None) if name else (listed[0] if listed else None)
        frame, problem = None, None
        if name and chosen is None:
            problem = f"no experiment named {name!r} in ops.experiments"
        elif chosen is not None:
            try:
                frame = users_frame(conn, chosen)
            except MartMissing as error:
                problem = str(error)
    if frame is not None and frame.empty:
        problem = f"experiment {chosen.name!r} has no exposed users in marts.fct_experiment_users yet"
    context: dict[str, Any] = {
        "experiments": [{"experiment": e, "status": _status(e, now)} for e in listed],
        "chosen": chosen,
        "problem": problem,
        "analysis": None,
    }
    if frame is not None and not frame.empty:
        context["analysis"] = analysis_of(chosen, frame)
    return context
