"""Postgres killed mid-load (issue 12): a crash loses nothing committed and commits nothing half done.

The module runs its own embedded Postgres (:mod:`recomart.local_postgres`: SCRAM, generated password) in a
private state folder on a free port, so it can SIGKILL that server's postmaster without touching any other.

The load is the ``ingest_events`` task body (:func:`recomart.tasks.ingest_events.ingest_landing_files`) on
generated landing files.  To kill it at a known point, the test holds ``SHARE UPDATE EXCLUSIVE`` on
``raw.events``: it lets the loads delete their dates and COPY their raw and quarantine rows (``ROW
EXCLUSIVE``), then stops each one at the BRIN summary of its new pages, the last statement before its
ledger rows and its commit.  Once ``pg_stat_activity`` shows every worker waiting there (and the server
has flushed the WAL written so far, as it does by itself within ``3 * wal_writer_delay``), the postmaster
is killed with SIGKILL: each date's transaction is in flight with all its rows written.

After the restart the first delivery must be intact, the ledger must show the killed attempts (``running``
rows, marked ``failed`` by the next load), and re-running the same load must leave each day with exactly
the good lines of its file in ``raw``, its bad lines in ``quarantine``, no duplicates, and one live ledger
row.  A loader that committed a date in more than one transaction fails the first check.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import pytest

from recomart import local_postgres, services
from recomart.config import Settings, load_settings
from recomart.datasets.generator import generate
from recomart.ingest import ledger
from recomart.ingest.feeds import GENERATED_EVENTS
from recomart.ingest.load import DEFAULT_WORKERS, ensure_tables, load_feed_date
from recomart.tasks.ingest_events import ingest_landing_files

pytestmark = pytest.mark.integration

END = date(2031, 5, 5)
DAYS = [END - timedelta(days=n) for n in range(4, -1, -1)]  # five days; the loader's workers take three at once
BAD_LINES = ("broken line without enough fields", "ev-x,not-a-time,u1,i1,view,1,1.00")  # quarantined, < 1 %
WAIT_S = 120.0


@pytest.fixture(scope="module")
def private_pg(free_port: Callable[[], int]) -> Iterator[Settings]:
    """An embedded Postgres of this module only (its own state folder and port), stopped afterwards."""
    # outside pytest's folder: when we are root the server runs as another user, which must reach it
    folder = Path(tempfile.mkdtemp(prefix="recomart-pg-kill-"))
    s = load_settings(
        {
            **os.environ,
            "RECOMART_STATE_DIR": str(folder),
            "RECOMART_PG_URL": "",
            "RECOMART_EMBEDDED_PG_PORT": str(free_port()),
            "RECOMART_DB_PREFIX": "pgkill",
            "RECOMART_DATASET": "generated",
            "RECOMART_LANDING_DIR": str(folder / "landing"),
        }
    )
    try:
        local_postgres.start(s)
        services.ensure_databases(s, (s.warehouse_db,))
        yield s
    finally:
        with contextlib.suppress(Exception):
            local_postgres.stop(s)
        shutil.rmtree(folder, ignore_errors=True)


def deliver(s: Settings, seed: int) -> dict[date, tuple[int, int]]:
    """Write the generated shop's files of ``DAYS`` (``seed`` picks their content) with ``BAD_LINES``
    appended to each events file; return ``{day: (good lines, bad lines)}`` counted from the files."""
    folder = s.landing_dir / GENERATED_EVENTS.subfolder
    generate(folder, users=3000, items=300, days=len(DAYS), end_date=END, seed=seed)
    counts = {}
    for day in DAYS:
        path = GENERATED_EVENTS.path_for(s.landing_dir, day)
        with path.open("a", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in BAD_LINES)
        lines = path.read_text(encoding="utf-8").splitlines()
        counts[day] = (len(lines) - 1 - len(BAD_LINES), len(BAD_LINES))
    return counts


def one_row(dsn: str, query: str, params: tuple = ()) -> tuple:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


def per_day(dsn: str, query: str) -> dict[date, tuple]:
    """``{_logical_date: rest of the row}`` of ``query`` (its first column is the date)."""
    with psycopg.connect(dsn) as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(query).fetchall()}


def table_state(dsn: str) -> dict[str, dict[date, tuple]]:
    """Per day: raw rows and their load ids, duplicate checks, quarantined rows and theirs, the live ledger row."""
    return {
        "raw": per_day(
            dsn,
            "select _logical_date, count(*), count(distinct event_id), count(distinct _line_number),"
            " array_agg(distinct _load_id) from raw.events group by 1",
        ),
        "quarantine": per_day(
            dsn, "select _logical_date, count(*), array_agg(distinct load_id) from quarantine.events group by 1"
        ),
        "live": per_day(
            dsn,
            "select logical_date, load_id, records_loaded, records_rejected from ops.loaded_files"
            f" where feed = '{GENERATED_EVENTS.name}' and is_live",
        ),
    }


def attempts(dsn: str) -> dict[date, list[tuple[str, bool]]]:
    """``{day: [(status, is_live), ...]}`` of the events feed's ledger, oldest attempt first."""
    out: dict[date, list[tuple[str, bool]]] = {}
    with psycopg.connect(dsn) as conn:
        for day, status, live in conn.execute(
            "select logical_date, status, is_live from ops.loaded_files where feed = %s order by attempt_id",
            (GENERATED_EVENTS.name,),
        ):
            out.setdefault(day, []).append((status, live))
    return out


def assert_live_load_is(dsn: str, expected: dict[date, tuple[int, int]]) -> dict[date, str]:
    """Each day holds exactly one load's rows: ``expected[day]`` = (good lines, bad lines) of its file, no
    duplicates, raw and quarantine rows of the live ledger row's load id.  Returns the live load ids."""
    state = table_state(dsn)
    live_ids = {}
    for day, (good, bad) in expected.items():
        load_id, loaded, rejected = state["live"][day]
        assert (loaded, rejected) == (good, bad), day
        assert state["raw"][day] == (good, good, good, [load_id]), day  # rows, distinct ids, distinct lines
        assert state["quarantine"][day] == (bad, [load_id]), day
        live_ids[day] = load_id
    assert set(state["raw"]) == set(expected) and set(state["quarantine"]) == set(expected)
    return live_ids


def wait_until_loads_are_blocked(dsn: str, n: int) -> list[int]:
    """The pids of ``n`` backends waiting for a lock in the BRIN summary of a load (after its COPYs)."""
    deadline = time.monotonic() + WAIT_S
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            pids = [
                r[0]
                for r in conn.execute(
                    "select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"
                    " and query ilike '%brin_summarize_range%'"
                )
            ]
            if len(pids) == n:
                return pids
            time.sleep(0.05)
    raise AssertionError(f"{n} loads never reached their BRIN summary within {WAIT_S} s")


def wait_for_wal_flush(dsn: str) -> None:
    """Wait until the server has flushed the WAL written so far.  A batch commits its attempts' ``running``
    rows without waiting for the flush (as its loads); the server flushes them within 3 * wal_writer_delay."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        written = conn.execute("select pg_current_wal_insert_lsn()").fetchone()[0]
        deadline = time.monotonic() + WAIT_S
        while conn.execute("select pg_current_wal_flush_lsn() < %s::pg_lsn", (written,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the server never flushed its WAL"
            time.sleep(0.05)


def kill_postmaster(s: Settings) -> None:
    """SIGKILL the private server's postmaster, then wait until its backends have noticed and exited."""
    pid = int((local_postgres.pgdata(s) / "postmaster.pid").read_text().splitlines()[0])
    postmaster = psutil.Process(pid)
    children = postmaster.children(recursive=True)
    os.kill(pid, signal.SIGKILL)
    postmaster.wait(timeout=30)
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, f"backends outlived their postmaster: {alive}"


def attempt_lock_held(dsn: str, attempt_id: int) -> bool:
    return one_row(
        dsn,
        "select exists (select from pg_locks where locktype = 'advisory' and granted and objsubid = 2"
        " and database = (select oid from pg_database where datname = current_database())"
        " and classid = %s::oid and objid::bigint = %s)",
        (ledger.ATTEMPT_LOCK_CLASS, attempt_id),
    )[0]


def run_load(s: Settings) -> dict:
    return ingest_landing_files(s.warehouse_url, s, DAYS)


def test_postgres_killed_mid_load_then_rerun_loads_each_day_exactly_once(private_pg: Settings) -> None:
    s, dsn = private_pg, private_pg.warehouse_url

    # 1. a first delivery, loaded completely: it is what must survive the crash
    first = deliver(s, seed=1)
    summary = run_load(s)
    assert (summary["loaded"], summary["records_rejected"]) == (len(DAYS) + 1, 2 * len(DAYS))  # + users
    first_ids = assert_live_load_is(dsn, first)

    # 2. every file re-delivered with new content; the load is stopped after its COPYs, then Postgres is killed
    second = deliver(s, seed=2)
    assert second != first
    blocker = psycopg.connect(dsn)
    blocker.execute("lock table raw.events in share update exclusive mode")
    outcome: dict[str, BaseException | dict] = {}

    def load_in_background() -> None:
        try:
            outcome["result"] = run_load(s)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            outcome["error"] = exc

    loader = threading.Thread(target=load_in_background)
    loader.start()
    in_flight = DAYS[:DEFAULT_WORKERS]  # the workers take the days in order
    try:
        wait_until_loads_are_blocked(dsn, len(in_flight))
        wait_for_wal_flush(dsn)
        kill_postmaster(s)
    finally:
        loader.join(WAIT_S)
        with contextlib.suppress(psycopg.Error):
            blocker.close()
    assert not loader.is_alive()
    assert isinstance(outcome.get("error"), psycopg.OperationalError), outcome

    # 3. restarted (crash recovery): the first delivery is intact, nothing the killed loads wrote is visible;
    #    the ledger shows which attempts were in flight (``running``, committed before their transactions)
    local_postgres.start(s)
    assert assert_live_load_is(dsn, first) == first_ids
    history = attempts(dsn)
    for day in DAYS:
        killed = [("running", False)] if day in in_flight else []
        assert history[day] == [("loaded", True), *killed], (day, history[day])

    # 4. the same load again: every day holds exactly the second delivery, once
    summary = run_load(s)
    assert summary["loaded"] == len(DAYS) + 1, summary
    second_ids = assert_live_load_is(dsn, second)
    assert not set(second_ids.values()) & set(first_ids.values())
    history = attempts(dsn)
    for day in DAYS:
        killed = [("failed", False)] if day in in_flight else []
        assert history[day] == [("loaded", False), *killed, ("loaded", True)], (day, history[day])
    with psycopg.connect(dsn) as conn:
        errors = conn.execute(
            "select distinct error from ops.loaded_files where status = 'failed' and feed = %s",
            (GENERATED_EVENTS.name,),
        ).fetchall()
    assert errors == [(ledger.ORPHANED,)]

    # 5. and once more: nothing changes, nothing is appended
    summary = run_load(s)
    assert (summary["loaded"], summary["unchanged"]) == (0, len(DAYS) + 1), summary
    assert attempts(dsn) == history


def test_only_attempts_whose_session_is_gone_are_marked_failed(warehouse_dsn: str, tmp_path: Path) -> None:
    """A load of the feed marks an attempt left ``running`` by a lost session failed, never one in progress."""
    day = END + timedelta(days=30)
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        ensure_tables(conn, GENERATED_EVENTS)

    def start(conn: psycopg.Connection, load_id: str) -> int:
        attempt = ledger.Attempt(GENERATED_EVENTS.name, day, "x.csv", "running", datetime.now(UTC), load_id)
        return ledger.start_attempt(conn, attempt)

    with psycopg.connect(warehouse_dsn, autocommit=True) as lost:
        crashed = start(lost, "lost-session")
    deadline = time.monotonic() + 30  # the server ends the closed session, and releases its lock, shortly after
    while attempt_lock_held(warehouse_dsn, crashed):
        assert time.monotonic() < deadline, "the closed session still holds its attempt's lock"
        time.sleep(0.05)
    with psycopg.connect(warehouse_dsn, autocommit=True) as in_progress:
        running = start(in_progress, "in-progress")
        landing = tmp_path / "landing"
        generate(landing / GENERATED_EVENTS.subfolder, users=50, items=20, days=1, end_date=day, seed=3)
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
        with psycopg.connect(warehouse_dsn) as conn:
            statuses = dict(
                conn.execute(
                    "select load_id, status from ops.loaded_files where attempt_id = any(%s)", ([crashed, running],)
                ).fetchall()
            )
        assert statuses == {"lost-session": "failed", "in-progress": "running"}
        assert attempt_lock_held(warehouse_dsn, running)
        ledger.discard_attempt(in_progress, running)
        ledger.end_attempt(in_progress, running)
