"""Run the DAG chain through :mod:`recomart.airflow_runner` and show what it is doing while it runs.

The runner's output is read on a thread; the caller's thread prints, with ``rich``, one line per DAG
and task as it starts and a timed line every :data:`TICK_S` seconds of a task that is still running
(on a terminal, a spinner with the elapsed time instead).  The result holds each DAG's run id, state
and seconds and each task's seconds (``dag_id.task_id``), for the report and the benchmark.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from recomart import processes
from recomart.airflow_runner import MARK
from recomart.config import Settings
from recomart.tools import ToolError, tool_env

TICK_S = 5.0
_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")


@dataclass
class ChainTimings:
    """Per DAG: ``runs[dag_id] = {"run_id", "state", "seconds", "consumed_events"}`` (the asset events its
    producers queued for it, see :func:`recomart.airflow_runner.consume_queued_asset_events`); per task:
    ``tasks["dag.task"] = seconds``; ``startup_s``: from the runner's start to its first DAG (Python and
    Airflow loading) less ``migrate_s``, the metadata database's migration when it was asked for."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, float] = field(default_factory=dict)
    startup_s: float | None = None
    migrate_s: float | None = None


@dataclass
class _Current:
    dag_id: str = ""
    task_id: str = ""
    dag_started: float = 0.0
    task_started: float = 0.0


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@contextmanager
def _status(console: Console) -> Iterator[Any]:
    """A rich spinner on a terminal; None elsewhere (the caller prints timed lines instead)."""
    if not console.is_terminal:
        yield None
        return
    with console.status("starting Airflow") as status:
        yield status


class _Display:
    """Turns the runner's output into progress lines and timings."""

    def __init__(self, console: Console, status: Any) -> None:
        self.console, self.status = console, status
        self.current = _Current()
        self.timings = ChainTimings()
        self.started = self.last_tick = time.monotonic()

    def _end_task(self, now: float) -> None:
        if self.current.task_id:
            key = f"{self.current.dag_id}.{self.current.task_id}"
            self.timings.tasks[key] = round(now - self.current.task_started, 1)
        self.current.task_id = ""

    def line(self, text: str) -> None:
        now = time.monotonic()
        if text.startswith(MARK):
            self._runner_event(json.loads(text[len(MARK) :]), now)
        elif match := _TASK_START.search(text):
            self._end_task(now)
            self.current.task_id, self.current.task_started = match.group(1), now
            self.console.print(f"    [{now - self.current.dag_started:5.1f}s] {self.current.dag_id}.{match.group(1)}")

    def _runner_event(self, event: dict[str, Any], now: float) -> None:
        if event["event"] == "migrated":
            self.timings.migrate_s = event["seconds"]
            self.console.print(f"    Airflow metadata database migrated in {event['seconds']:.1f}s")
        elif event["event"] == "start":
            self._run_started(event["dag_id"], now)
        else:
            self._run_ended(event, now)

    def _run_started(self, dag_id: str, now: float) -> None:
        if self.timings.startup_s is None:  # the first run: Python and Airflow are loaded (and migrated)
            self.timings.startup_s = round(now - self.started - (self.timings.migrate_s or 0.0), 1)
        self.current = _Current(dag_id, "", now, now)
        self.console.print(f"\n==> {dag_id} (Airflow dag.test)")

    def _run_ended(self, event: dict[str, Any], now: float) -> None:
        self._end_task(now)
        self.timings.runs[event["dag_id"]] = {
            k: event.get(k) for k in ("run_id", "state", "seconds", "consumed_events")
        }
        self.console.print(f"    {event['dag_id']}: {event['state']} in {event['seconds']:.1f}s ({event['run_id']})")
        self.current.dag_id = ""

    def tick(self) -> None:
        now = time.monotonic()
        if not self.current.dag_id:
            return
        what = f"{self.current.dag_id}.{self.current.task_id or '(starting)'}"
        elapsed = f"{now - self.current.dag_started:5.1f}s"
        if self.status is not None:
            self.status.update(f"{what} running, {elapsed}")
        elif now - self.last_tick >= TICK_S:
            self.console.print(f"    [{elapsed}] {what} still running")
            self.last_tick = now


def run_dags_with_progress(
    s: Settings, runs: list[dict[str, Any]], *, migrate: bool = False, console: Console | None = None
) -> ChainTimings:
    """Run ``runs`` (``{"dag_id", "conf"}``) in one :mod:`recomart.airflow_runner` process with progress
    lines (``migrate``: the metadata database first, as ``airflow db migrate`` does).  Airflow's whole
    output goes to ``<state>/logs/<prefix>-demo-chain.log``; a failed run raises :class:`ToolError` with
    the end of that output."""
    console = console or Console(highlight=False)
    command = [sys.executable, "-m", "recomart.airflow_runner", json.dumps(runs), *(["--migrate"] if migrate else [])]
    proc = subprocess.Popen(
        command, cwd=s.project_root, env=tool_env(s), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    tail: deque[str] = deque(maxlen=60)
    log_path = processes.logfile(s, "demo-chain")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"    Airflow's output: {log_path}")
    with _status(console) as status, log_path.open("w") as log_file:
        display = _Display(console, status)
        while True:
            try:
                text = lines.get(timeout=1.0)
            except queue.Empty:
                display.tick()
                continue
            if text is None:
                break
            tail.append(text)
            log_file.write(text + "\n")
            display.line(text)
            display.tick()
    if proc.wait() != 0 or len(display.timings.runs) != len(runs):
        raise ToolError(
            f"the DAG chain stopped (exit {proc.returncode}); all output in {log_path}, last:\n" + "\n".join(tail)
        )
    return display.timings
