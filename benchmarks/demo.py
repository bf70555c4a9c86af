"""Wall time of the main job, per step: ``.venv/bin/python -m benchmarks.demo [--state-dir DIR]``.

Runs ``./recomart demo`` twice in a state directory of its own (default: a new temporary one):

1. **fresh**: the venv is in place, the embedded Postgres and Redis of that state dir are stopped and
   it holds no data (the issue's starting state);
2. **second run** on the data the first one left (reported separately, ``second_run``).

Each run's steps come from the ``demo_timings.json`` the demo writes (the services, Airflow's
migration, the landing files, the catalog API and each DAG run with its tasks); ``total_s`` is the
wall time of the whole ``./recomart demo`` process, start-up and report included.  The load average
is recorded before each run: on a shared machine the figures are only comparable at a similar load.
The embedded servers are stopped and the state dir removed afterwards (``--keep`` keeps it).
Writes ``benchmarks/results/demo.json``.  Set the ``RECOMART_*_PORT`` variables to free ports when
other deployments run on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "demo.json"


def load_avg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def git_commit() -> str | None:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def run_demo(env: dict[str, str], state_dir: Path) -> dict[str, Any]:
    """One ``./recomart demo``: its output streamed through, its wall time and the demo's own timings."""
    load = load_avg()
    started = time.monotonic()
    subprocess.run([str(ROOT / "recomart"), "demo"], cwd=ROOT, env=env, check=True)
    wall = round(time.monotonic() - started, 1)
    timings = json.loads((state_dir / "demo_timings.json").read_text())
    return {
        **timings,
        "total_s": wall,
        "steps_total_s": timings["total_s"],
        # the CLI's own start (the ./recomart script, Python, recomart's imports) and the report
        "outside_steps_s": round(wall - timings["total_s"], 1),
        "load_avg_before": load,
    }


def stop_services(env: dict[str, str]) -> None:
    subprocess.run([str(ROOT / "recomart"), "services", "down"], cwd=ROOT, env=env, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, help="an empty or missing directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the state dir and its running servers")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    state_dir = (args.state_dir or Path(tempfile.mkdtemp(prefix="recomart-demo-bench-"))).resolve()
    if state_dir.exists() and any(state_dir.iterdir()):
        parser.error(f"{state_dir} is not empty: the fresh run needs a state dir with no earlier data")
    env = {**os.environ, "RECOMART_STATE_DIR": str(state_dir)}
    try:
        fresh = run_demo(env, state_dir)
        second = run_demo(env, state_dir)
    finally:
        if not args.keep:
            stop_services(env)
            shutil.rmtree(state_dir, ignore_errors=True)
    figures = {
        "total_s": fresh["total_s"],
        "steps": fresh["steps"],
        "tasks": fresh["tasks"],
        "start_state": "venv in place, embedded Postgres and Redis stopped, empty state dir (no earlier data)",
        "load_avg": fresh["load_avg_before"],
        "steps_total_s": fresh["steps_total_s"],
        "outside_steps_s": fresh["outside_steps_s"],
        "second_run": {
            k: second[k] for k in ("total_s", "steps_total_s", "outside_steps_s", "steps", "tasks", "load_avg_before")
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "git_commit": git_commit(),
        "command": " ".join([".venv/bin/python -m benchmarks.demo", *(argv if argv is not None else sys.argv[1:])]),
        "target_s": 100,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: figures[k] for k in ("total_s", "load_avg", "git_commit")}, indent=2))
    print(f"second run on existing data: {second['total_s']}s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
