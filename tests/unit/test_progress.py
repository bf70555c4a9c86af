"""Progress off a terminal (a log, CI): timed lines that say how far the work got, and a closing line."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from recomart.progress import Board, counting


def _log_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def test_counting_prints_timed_lines_and_a_closing_count() -> None:
    console, buffer = _log_console()
    with counting("generate: days", 3, "events", console=console, every_s=0.0) as advance:
        for events in (10, 20, 30):
            advance(events)
    lines = buffer.getvalue().splitlines()
    # the elapsed seconds depend on the machine's load: only their shape is checked
    assert [re.sub(r", \d+ s$", ", <t> s", line) for line in lines[:3]] == [
        f"generate: days: {n}/3, {total} events, <t> s" for n, total in ((1, 10), (2, 30), (3, 60))
    ]
    assert lines[3].startswith("generate: days: 3/3, 60 events in ")


def test_board_names_what_is_still_pending() -> None:
    console, buffer = _log_console()
    with Board(console, every_s=0.0) as board:
        board.add("MLflow UI")
        board.add("catalog API")
        board.finish("catalog API", "healthy")
        board.tick()
        board.finish("MLflow UI", "exited")
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "waiting for MLflow UI" and lines[1] == "waiting for catalog API"
    assert lines[2].startswith("catalog API: healthy after ")
    assert lines[3].startswith("still waiting for MLflow UI (") and "catalog API" not in lines[3]
    assert lines[4].startswith("MLflow UI: exited after ")


def test_generate_command_reports_days_and_events(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECOMART_")}
    result = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "generate", "--users", "30", "--items", "10", "--days", "2"],
        env={**clean, "RECOMART_STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    closing = result.stderr.strip().splitlines()[-1]
    assert closing.startswith("generate: days: 2/2, ") and " events in " in closing
    events = int(closing.split(", ")[1].split(" events")[0].replace(",", ""))
    assert f"events={events}," in result.stdout  # the bar counted what the summary reports
