"""What every benchmark result file carries about its run, and how it is written."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_metadata() -> dict[str, object]:
    """``measured_at`` (UTC), ``git_commit`` (None outside a checkout), ``command`` (as typed, from
    ``sys.argv``), ``machine`` and the 1-minute ``load_average`` at the end of the run."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    module = Path(sys.argv[0]).stem
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "command": " ".join([".venv/bin/python -m", f"benchmarks.{module}", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "load_average": round(os.getloadavg()[0], 1),
    }


def write_result(result: dict, out: Path | None) -> dict:
    """Print ``result`` as JSON and, when ``out`` is given, write it there; returns ``result``."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
    return result
