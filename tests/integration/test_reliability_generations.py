"""A generation left ``building`` by a crashed run is marked ``failed`` by the next run; a concurrent
run that is still building is never touched.

The crashed run is a real process: it begins a generation (``recomart.recommend.tables.begin_generation``,
as the nightly job does) and is killed with SIGKILL, so Postgres ends its session and releases its lock.
The live builder is a second session of this process that holds its generation's lock throughout.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
from test_reco_writer import _hand_made_marts  # tests/integration is on sys.path (rootdir import mode)

from recomart.config import Settings
from recomart.recommend.run import generate_recommendations
from recomart.recommend.tables import GENERATION_LOCK_CLASS, begin_generation, mark_live

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def marts_dsn(private_database) -> str:
    dsn = private_database("generations")
    _hand_made_marts(dsn)
    return dsn


def _status(dsn: str, generation_id: int) -> tuple[str, bool, dict]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select status, is_live, coalesce(details, '{}'::jsonb) from reco.generations where generation_id = %s",
            (generation_id,),
        ).fetchone()
    assert row is not None, generation_id
    return row[0], row[1], row[2]


def _lock_held(dsn: str, generation_id: int) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select exists (select from pg_locks where locktype = 'advisory' and granted"
            " and classid = %s::oid and objid::bigint = %s and objsubid = 2)",
            (GENERATION_LOCK_CLASS, generation_id),
        ).fetchone()[0]


def _crashed_build(dsn: str) -> int:
    """A process that begins a generation, reports its id and is then killed with SIGKILL mid-build."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from recomart.recommend.tables import begin_generation
        generation = begin_generation({dsn!r})
        print(generation.generation_id, flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        generation_id = int(process.stdout.readline())
        assert _lock_held(dsn, generation_id)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    deadline = time.monotonic() + 30  # the server ends the session once it sees the socket closed
    while _lock_held(dsn, generation_id):
        assert time.monotonic() < deadline, "the killed run's session still holds its lock"
        time.sleep(0.1)
    return generation_id


def test_next_run_fails_the_crashed_generation_and_leaves_a_live_builder(marts_dsn: str, test_settings: Settings):
    with begin_generation(marts_dsn) as concurrent:  # another run, still building, on its own session
        crashed = _crashed_build(marts_dsn)
        assert _status(marts_dsn, crashed)[:2] == ("building", False)
        logs: list[str] = []
        result = generate_recommendations(
            marts_dsn,
            tracking_uri=test_settings.mlflow_tracking_uri,
            model_name=test_settings.model_name,
            log=logs.append,
        )
        status, is_live, details = _status(marts_dsn, crashed)
        assert (status, is_live) == ("failed", False)
        assert details["error"].startswith("orphaned")
        assert f"marked orphaned generations failed: [{crashed}]" in logs
        assert _status(marts_dsn, concurrent.generation_id)[:2] == ("building", False)
        assert _status(marts_dsn, result.generation_id)[:2] == ("live", True)
        assert _lock_held(marts_dsn, concurrent.generation_id)
    assert not _lock_held(marts_dsn, result.generation_id), "a finished run releases its generation's lock"


def test_a_generation_marked_failed_never_goes_live(marts_dsn: str) -> None:
    """A build whose row was marked failed (e.g. orphaned after its session was lost) cannot swap in."""
    with begin_generation(marts_dsn) as generation, psycopg.connect(marts_dsn) as conn:
        conn.execute(
            "update reco.generations set status = 'failed' where generation_id = %s", (generation.generation_id,)
        )
        with pytest.raises(RuntimeError, match="no longer building"), conn.cursor() as cur:
            mark_live(
                cur, generation.generation_id, strategy_summary={}, row_count=0, user_count=0, popular_item_count=0
            )
        conn.rollback()
    with psycopg.connect(marts_dsn) as conn:
        assert conn.execute("select count(*) from reco.generations where is_live").fetchone()[0] == 1
