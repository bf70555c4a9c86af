"""End to end: an experiment of the hybrid against popularity, through the API and the shoppers simulator.

On a deployment where ``./recomart demo`` has run (a live generation of the generated shop): start the
API (2 workers) and the stream worker, create an experiment ``hybrid:0.5,popularity:0.5``, let the
shop's users visit and buy by their planted tastes only (``recomart.stream.shoppers``), wait until the
worker has loaded every exposure, end the experiment, build the exposure marts with dbt, read the
per-user frame (``recomart.experiments.frame``) and analyse it with the function ``./recomart experiment
report`` calls. Writes the key ``end_to_end`` of the result file (other keys are kept).

    .venv/bin/python -m benchmarks.experiment_end_to_end --out benchmarks/results/experiments.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from benchmarks.results_file import run_metadata
from recomart import services
from recomart.config import Settings, load_settings
from recomart.experiments.definitions import Experiment, parse_variants
from recomart.experiments.frame import users_frame
from recomart.experiments.store import create_experiment, stop_experiment
from recomart.serving.server import server_env, uvicorn_args
from recomart.stream.shoppers import simulate_shoppers
from recomart.stream.worker import worker_args
from recomart.tools import tool_env
from recomart.transform import dbt_build


def _start(s: Settings) -> list[subprocess.Popen]:
    """The API (2 workers) and the stream worker, their output in the state folder."""
    api_log = (s.state_dir / "e2e-api.log").open("w")
    worker_log = (s.state_dir / "e2e-worker.log").open("w")
    api = subprocess.Popen(
        uvicorn_args(s, "127.0.0.1", s.api_port, 2), env=server_env(s, s.api_port), stdout=api_log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = subprocess.Popen(worker_args(), env=tool_env(s), stdout=worker_log, stderr=subprocess.STDOUT)
    return [api, worker]


def _wait(condition, timeout_s: float, what: str) -> None:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        try:
            if condition():
                return
        except (httpx.HTTPError, psycopg.Error):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"waited {timeout_s} s for {what}")


def _exposures(s: Settings, name: str) -> int:
    with psycopg.connect(s.warehouse_url) as conn:
        return conn.execute("select count(*) from raw.exposures where experiment = %s", (name,)).fetchone()[0]


def run_experiment(s: Settings, visits: float, buy_rate: float) -> tuple[Experiment, dict]:
    """Create the experiment, run the shoppers against the API, wait for the worker; the experiment and
    the shoppers' summary (the experiment is ended on return)."""
    name = f"e2e-{datetime.now(UTC):%Y%m%d%H%M%S}"
    experiment = Experiment(
        name, uuid.uuid4().hex, parse_variants("hybrid:0.5,popularity:0.5"), "hybrid", "conversion", datetime.now(UTC)
    )
    with psycopg.connect(s.warehouse_url) as conn:
        create_experiment(conn, experiment)
    processes = _start(s)
    try:
        with httpx.Client(base_url=s.api_url, timeout=10) as client:
            # the API reads the running experiment before it answers (its first poll runs at start-up)
            _wait(lambda: client.get("/readyz").status_code == 200, 120, "the API")
        began = time.monotonic()
        shoppers = simulate_shoppers(s, visits=visits, buy_rate=buy_rate)
        seconds = time.monotonic() - began
        _wait(lambda: _exposures(s, name) >= shoppers.visits, 300, "the worker to load every exposure")
    finally:
        with psycopg.connect(s.warehouse_url) as conn:
            stop_experiment(conn, name)
        for process in processes:
            process.terminate()
            process.wait(timeout=60)
    return experiment, {**shoppers.as_dict(), "seconds": round(seconds, 1), "exposures": _exposures(s, name)}


def analyse_experiment(s: Settings, experiment: Experiment) -> dict:
    """dbt build of the exposure marts, the per-user frame, and the report's analysis of it."""
    from recomart.experiments.analysis import analyse

    dbt_build(s.dbt_project_dir, tool_env(s), select="+fct_experiment_users", log=lambda _: None)
    with psycopg.connect(s.warehouse_url) as conn:
        frame = users_frame(conn, experiment)
    result = analyse(frame, control=experiment.control, shares=experiment.shares).as_dict()
    by_variant = frame.groupby("variant")["converted"].agg(["size", "mean"]).round(4).to_dict("index")
    return {"frame_users": len(frame), "conversion_by_variant": by_variant, "analysis": result}


def headline(result: dict) -> dict:
    """The issue's keys from the analysis (``ExperimentResult.as_dict()``): ``winner`` (the variant with the
    higher conversion once the sequential test decided, else None), ``relative_lift`` (the hybrid's
    conversion over popularity's, minus 1), ``srm_p`` and CUPED's ``variance_reduction``."""
    conversion = {v["variant"]: v["conversion"]["estimate"] for v in result["variants"]}
    comparison = result["comparisons"][0]
    leader = max(conversion, key=conversion.__getitem__)
    return {
        "winner": leader if comparison["sequential"]["significant"] else None,
        "relative_lift": round(conversion["hybrid"] / conversion["popularity"] - 1, 4),
        "srm_p": result["srm"]["p_value"],
        "cuped_variance_reduction": result["cuped"]["variance_reduction"],
        "decision": comparison["decision"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=float, default=3.0, help="mean visits per user (default 3)")
    parser.add_argument("--buy-rate", type=float, default=0.005, help="buy probability per unit affinity")
    parser.add_argument("--out", type=Path, help="result file: its end_to_end key is replaced")
    args = parser.parse_args(argv)
    s = load_settings()
    services.ensure_services(s)
    experiment, shoppers = run_experiment(s, args.visits, args.buy_rate)
    analysed = analyse_experiment(s, experiment)
    section = {
        **headline(analysed["analysis"]), "experiment": experiment.name, "shoppers": shoppers, **analysed,
        **run_metadata(),
    }  # fmt: skip
    if args.out:
        existing = json.loads(args.out.read_text()) if args.out.exists() else {}
        args.out.write_text(json.dumps({**existing, "end_to_end": section}, indent=2, default=str) + "\n")
    print(json.dumps(section, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
