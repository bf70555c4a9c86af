"""Landing files written by tests (importable from every test module: ``tests/`` is on ``sys.path``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from recomart.ingest.feeds import GENERATED_EVENTS

EVENT_HEADER = ["event_id", "event_time", "user_id", "item_id", "event_type", "quantity", "unit_price"]


def write_events(landing: Path, day: date, rows: list[list[str]], bad_lines: Sequence[str] = ()) -> Path:
    """Write the generated shop's events file for ``day`` with the csv module, then append raw
    (malformed) ``bad_lines``; return its path."""
    path = GENERATED_EVENTS.path_for(landing, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(EVENT_HEADER)
        writer.writerows(rows)
        fh.writelines(line + "\n" for line in bad_lines)
    return path
