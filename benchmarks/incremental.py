"""A daily incremental ``dbt build`` against a full rebuild, on a long generated history.

Run: ``.venv/bin/python -m benchmarks.incremental --users 4000 --items 1000 --days 365``
(writes ``benchmarks/results/incremental.json``).

A scratch deployment (own databases, dropped again) gets the generated shop (``--users``, ``--items``,
``--days``) through the feeds, all days but the last, and its catalogue from ``products.csv`` (as
``benchmarks.feature_history`` does). Then, for ``--rounds`` rounds, the whole project as the
``transform`` task runs it (models, snapshot, unit and data tests):

- ``full``: ``dbt build --full-refresh`` (what a backfill asks for: every mart from raw);
- ``daily``: the last day's files are loaded (first round; later rounds re-run the same day, which
  must leave the same rows), then the incremental ``dbt build``.

Reported: each build's wall seconds, every model's own execution seconds (``run_results.json``), the
ratio daily / full of the wall time (the floor is the full build of the same round) and of the
incremental models' own seconds, the events in ``int_interactions``, and the load average.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import psycopg

from benchmarks.feast_lookup import drop_scratch, scratch_settings
from benchmarks.feature_history import load_catalogue
from benchmarks.results_file import ROOT, run_metadata, write_result
from recomart import services
from recomart.config import Settings, settings
from recomart.tools import tool_env
from recomart.transform import dbt_build

RESULTS = ROOT / "benchmarks" / "results" / "incremental.json"
INCREMENTAL_MODELS = (
    "int_interactions",
    "int_user_category_history",
    "user_features_history",
    "item_features_history",
)


def _log(message: str) -> None:
    print(f"[incremental] {message}", file=sys.stderr, flush=True)


def _model_seconds(target: Path) -> dict[str, float]:
    """Every model's execution seconds in the last run's ``run_results.json``."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {
        r["unique_id"].rsplit(".", 1)[-1]: round(r["execution_time"], 2)
        for r in results
        if r["unique_id"].startswith("model.")
    }


def timed_build(s: Settings, work: Path, full_refresh: bool) -> dict:
    """One ``dbt build`` of the whole project: wall seconds, model seconds, their sum over the
    incremental models."""
    started = time.perf_counter()
    dbt_build(
        s.dbt_project_dir,
        tool_env(s),
        vars={"dataset": "generated"},
        log=lambda _line: None,
        target_path=work / "target",
        log_path=work / "logs",
        full_refresh=full_refresh,
    )
    wall = round(time.perf_counter() - started, 2)
    models = _model_seconds(work / "target")
    return {
        "build_s": wall,
        "incremental_models_s": round(sum(models.get(name, 0.0) for name in INCREMENTAL_MODELS), 2),
        "model_s": dict(sorted(models.items(), key=lambda item: -item[1])),
    }


def load_days(s: Settings, days: list) -> dict:
    """Load the generated feeds' files of ``days`` (one transaction per feed and day)."""
    from recomart.tasks.ingest_events import ingest_landing_files

    summary = ingest_landing_files(s.warehouse_url, s, days)
    return {key: value for key, value in summary.items() if isinstance(value, int | float | str | None)}


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            name: conn.execute(f"select count(*) from {schema}.{name}").fetchone()[0]  # noqa: S608 (constants)
            for schema, name in (
                ("intermediate", "int_interactions"),
                ("intermediate", "int_user_category_history"),
                ("marts", "user_features_history"),
                ("marts", "item_features_history"),
            )
        }


def run(s: Settings, rounds: int, work: Path) -> dict:
    """Generate and load all days but the last; then ``rounds`` x (full refresh, daily build)."""
    from recomart.datasets.landing import landing_days, prepare_dataset

    _log(f"generating {s.generator_users:,} users, {s.generator_items:,} items, {s.generator_days} days")
    started = time.perf_counter()
    prepared = prepare_dataset(s)
    days = landing_days(s)
    history = load_days(s, days[:-1])
    products = load_catalogue(s)
    _log(f"generated and loaded in {time.perf_counter() - started:.0f}s: {prepared}")
    measured: list[dict] = []
    for round_no in range(rounds):
        _log(f"round {round_no + 1}: full refresh")
        full = timed_build(s, work, full_refresh=True)
        if round_no == 0:
            load_days(s, days[-1:])
        _log(f"round {round_no + 1}: daily build of {days[-1]}")
        daily = timed_build(s, work, full_refresh=False)
        measured.append({"full": full, "daily": daily, "rows_after_daily": _counts(s.warehouse_url)})
    events = measured[-1]["rows_after_daily"]["int_interactions"]
    return {
        "data_set": {
            "name": "generated",
            "users": s.generator_users,
            "items": s.generator_items,
            "days": s.generator_days,
            "events": events,
            "products": products,
            "generated": prepared,
            "history_load": history,
        },
        "rounds": measured,
        "median_build_s": {
            b: round(statistics.median(r[b]["build_s"] for r in measured), 2) for b in ("full", "daily")
        },
        "daily_over_full": {
            "whole_build": round(statistics.median(r["daily"]["build_s"] / r["full"]["build_s"] for r in measured), 3),
            "incremental_models": round(
                statistics.median(
                    r["daily"]["incremental_models_s"] / r["full"]["incremental_models_s"] for r in measured
                ),
                3,
            ),
        },
        "target": "daily transform <= 10 % of the full build at 10M events",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=4000, help="generated users")
    parser.add_argument("--items", type=int, default=1000, help="generated products")
    parser.add_argument("--days", type=int, default=365, help="days of history (the last one is the daily load)")
    parser.add_argument("--rounds", type=int, default=2, help="full refresh + daily build pairs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="recomart_bench_"))
    base = settings()
    s = replace(
        scratch_settings(base, work / "landing", "generated", args.users),
        generator_items=args.items,
        generator_days=args.days,
    )
    _log(f"scratch deployment {s.db_prefix}, work dir {work}")
    services.ensure_services(s)
    try:
        figures = run(s, args.rounds, work)
    finally:
        drop_scratch(s)
        shutil.rmtree(work, ignore_errors=True)
    write_result({**figures, **run_metadata()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
