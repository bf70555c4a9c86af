"""dbt build time of the demo-size generated shop, before and after the as-of feature histories.

Run: ``.venv/bin/python -m benchmarks.feature_history`` (writes ``benchmarks/results/feature_history.json``).

A scratch deployment (own databases, dropped again) gets the generated shop at the demo's size (the
settings' ``RECOMART_USERS``, ``RECOMART_ITEMS``, ``RECOMART_DAYS``: 2,000 users, 500 products, 60 days
by default) through the feeds, and its catalogue from ``products.csv`` straight into ``raw.products``
(as the catalog API would; no API is started). Then, alternating for ``--rounds`` rounds:

- ``before``: ``dbt_project/`` of ``--base-ref`` (``git archive``), one snapshot per build;
- ``after``: this checkout's ``dbt_project/``, the as-of histories.

Each side starts without the two history tables and runs ``dbt build`` (the whole project: models,
snapshot, unit and data tests, as the ``transform`` DAG does) twice on the same data: ``first`` (the
history's first fill: for ``after`` every day from raw) and ``daily`` (the next day's build: for
``after`` the incremental lookback). Reported per side: each build's elapsed seconds, the history
models' and the snapshot marts' (``user_features``, ``item_features``: the same-run reference) own
execution seconds (``run_results.json``), the history row counts, and the medians; and the ratios
after / before of the medians (the floor is the ``before`` build of the same run).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import psycopg

from benchmarks.feast_lookup import drop_scratch, load_generated, scratch_settings
from benchmarks.results_file import ROOT, run_metadata, write_result
from recomart import services
from recomart.config import Settings, settings
from recomart.tools import tool_env
from recomart.transform import dbt_build

RESULTS = ROOT / "benchmarks" / "results" / "feature_history.json"
HISTORIES = ("user_features_history", "item_features_history")
# the current-snapshot marts of the same build: the same-run reference for the history models' seconds
SNAPSHOTS = ("user_features", "item_features")
PRODUCT_COLUMNS = ("item_id", "title", "description", "category", "brand", "price", "updated_at")


def _log(message: str) -> None:
    print(f"[feature_history] {message}", file=sys.stderr, flush=True)


def load_catalogue(s: Settings) -> int:
    """``products.csv`` of the generated landing folder into ``raw.products``; returns the row count."""
    products = pd.read_csv(s.landing_dir / "generated" / "products.csv", dtype=str)
    rows = list(products[list(PRODUCT_COLUMNS)].itertuples(index=False, name=None))
    with psycopg.connect(s.warehouse_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "insert into raw.products (item_id, title, description, category, brand, price, updated_at, payload,"
            " _load_id, _loaded_at) values (%s, %s, %s, %s, %s, %s, %s, '{}'::jsonb, 'bench', now())"
            " on conflict (item_id) do nothing",
            rows,
        )
    return len(rows)


def base_project(ref: str, work: Path) -> Path:
    """``dbt_project/`` of git ``ref``, extracted under ``work``."""
    archive = subprocess.run(["git", "archive", ref, "dbt_project"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work, filter="data")
    return work / "dbt_project"


def _model_seconds(target: Path) -> dict[str, float]:
    """Execution seconds of the feature models (histories and snapshots) in the last run's results."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {
        r["unique_id"].rsplit(".", 1)[-1]: round(r["execution_time"], 2)
        for r in results
        if r["unique_id"].rsplit(".", 1)[-1] in HISTORIES + SNAPSHOTS and r["unique_id"].startswith("model.")
    }


def _history_rows(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(f"select count(*) from marts.{name}").fetchone()[0] for name in HISTORIES}


def measure_side(s: Settings, project: Path, work: Path) -> dict:
    """Drop the histories, then two ``dbt build``s of ``project``: ``first`` and ``daily``."""
    with psycopg.connect(s.warehouse_url, autocommit=True) as conn:
        conn.execute("drop table if exists marts.user_features_history, marts.item_features_history")
    figures: dict = {}
    for build in ("first", "daily"):
        started = time.perf_counter()
        dbt_build(
            project,
            tool_env(s),
            vars={"dataset": "generated"},
            log=lambda _line: None,
            target_path=work / "target",
            log_path=work / "logs",
        )
        figures[build] = {
            "build_s": round(time.perf_counter() - started, 2),
            "model_s": _model_seconds(work / "target"),
        }
    figures["history_rows"] = _history_rows(s.warehouse_url)
    return figures


def _median(rounds: list[dict], build: str) -> float:
    return round(statistics.median(r[build]["build_s"] for r in rounds), 2)


def _median_models(rounds: list[dict], build: str) -> dict[str, float]:
    names = rounds[0][build]["model_s"]
    return {name: round(statistics.median(r[build]["model_s"][name] for r in rounds), 2) for name in names}


def run(s: Settings, base_ref: str, rounds: int, work: Path) -> dict:
    """Load the shop, then measure ``before`` and ``after`` alternately ``rounds`` times."""
    _log(f"generating and loading the shop ({s.generator_users:,} users, {s.generator_days} days)")
    loaded = load_generated(s)
    products = load_catalogue(s)
    sides = {"before": base_project(base_ref, work / "before"), "after": s.dbt_project_dir}
    measured: dict[str, list[dict]] = {"before": [], "after": []}
    for round_no in range(rounds):
        for side, project in sides.items():
            _log(f"round {round_no + 1}: {side}")
            measured[side].append(measure_side(s, project, work / f"{side}_target"))
    with psycopg.connect(s.warehouse_url) as conn:
        events = conn.execute("select count(*) from intermediate.int_interactions").fetchone()[0]
    medians = {side: {b: _median(measured[side], b) for b in ("first", "daily")} for side in measured}
    return {
        "data_set": {
            "name": "generated",
            "users": s.generator_users,
            "items": s.generator_items,
            "days": s.generator_days,
            "interactions": events,
            "products": products,
            "load": loaded.get("prepared"),
        },
        "base_ref": base_ref,
        "rounds": measured,
        "median_build_s": medians,
        "median_model_s": {
            side: {b: _median_models(measured[side], b) for b in ("first", "daily")} for side in measured
        },
        "ratio_after_over_before": {
            b: round(medians["after"][b] / medians["before"][b], 3) for b in ("first", "daily")
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-ref", default="main", help="git ref of the 'before' dbt project")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="recomart_bench_"))
    base = settings()
    s = scratch_settings(base, work / "landing", "generated", base.generator_users)
    _log(f"scratch deployment {s.db_prefix}, work dir {work}")
    services.ensure_services(s)
    try:
        figures = run(s, args.base_ref, args.rounds, work)
    finally:
        drop_scratch(s)
        shutil.rmtree(work, ignore_errors=True)
    write_result({**figures, **run_metadata()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
