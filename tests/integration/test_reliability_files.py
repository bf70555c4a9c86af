"""Reliability of the file ingest under hostile input (issue 12, points 3 and 6), on the real Postgres.

* a rejected replacement file keeps the ledger of the live load and its quarantine trail;
* a warehouse whose ledger has the old one-row-per-date shape upgrades in place, rows kept;
* bad input fails loudly or is quarantined with a reason, never misread: a ``start_day`` that is not a
  plain date, a landing symlink leaving the landing folder, a CR-only file, an over-long field, and a
  header-only file (recorded ``empty`` and reported by the Great Expectations raw suite).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from landing_files import EVENT_HEADER, write_events
from psycopg.rows import dict_row

from recomart.ingest.feeds import GENERATED_EVENTS, GENERATED_USERS, UCI_ORDERS
from recomart.ingest.load import RejectedShareExceeded, ensure_tables, load_feed_date, load_feed_dates
from recomart.ingest.parse import FeedSchemaError
from recomart.quality import validate_raw
from recomart.tasks.ingest_events import days_in_window

pytestmark = pytest.mark.integration

BASE = date(2032, 3, 1)  # far from other modules' dates


def event_rows(day: date, n: int, tag: str = "a") -> list[list[str]]:
    return [
        [f"{tag}{day:%Y%m%d}-{i}", f"{day} 10:{i % 60:02d}:00", f"u{i % 7}", f"i{i % 11}", "view", "1", "2.50"]
        for i in range(n)
    ]


def rows(dsn: str, query: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def attempts(dsn: str, feed: str, day: date) -> list[dict]:
    """The ledger rows of ``feed`` and ``day``, oldest first."""
    return rows(
        dsn, "select * from ops.loaded_files where feed = %s and logical_date = %s order by finished_at", (feed, day)
    )


def quarantined_by_load(dsn: str, day: date) -> dict[str, int]:
    found = rows(
        dsn, "select load_id, count(*) as n from quarantine.events where _logical_date = %s group by load_id", (day,)
    )
    return {r["load_id"]: r["n"] for r in found}


def raw_load_ids(dsn: str, day: date) -> dict[str, int]:
    found = rows(
        dsn, "select _load_id, count(*) as n from raw.events where _logical_date = %s group by _load_id", (day,)
    )
    return {r["_load_id"]: r["n"] for r in found}


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


# --- point 3: one ledger row per attempt, the live load stays answerable ---------------------------------------
def test_rejected_replacement_keeps_the_live_load_its_ledger_row_and_its_quarantine(warehouse_dsn, landing):
    day = BASE
    write_events(landing, day, event_rows(day, 99), ("broken",))  # 1 % rejected: accepted
    live = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert (live.status, live.records_loaded, live.records_rejected) == ("loaded", 99, 1)

    write_events(landing, day, event_rows(day, 95, tag="r"), ("broken",) * 5)  # 5 %: rejected replacement
    with pytest.raises(RejectedShareExceeded):
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)

    ledger = attempts(warehouse_dsn, GENERATED_EVENTS.name, day)
    assert [(r["status"], r["load_id"], r["records_rejected"]) for r in ledger][0] == ("loaded", live.load_id, 1)
    assert [r["status"] for r in ledger] == ["loaded", "failed"]
    assert [r["is_live"] for r in ledger] == [True, False]
    rejected_id = ledger[1]["load_id"]
    assert raw_load_ids(warehouse_dsn, day) == {live.load_id: 99}
    assert quarantined_by_load(warehouse_dsn, day) == {live.load_id: 1, rejected_id: 5}
    # the raw suite still finds the ledger entry of the live rows
    summary = validate_raw(warehouse_dsn, "generated", logical_date=day, tables=["events"])
    assert summary.outcome("raw.events", "row_count_matches_ledger").success

    # a good replacement commits: its rows, its quarantine and its ledger row become the live ones
    write_events(landing, day, event_rows(day, 50, tag="g"))
    fixed = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    ledger = attempts(warehouse_dsn, GENERATED_EVENTS.name, day)
    assert [(r["status"], r["is_live"]) for r in ledger] == [("loaded", False), ("failed", False), ("loaded", True)]
    assert ledger[2]["load_id"] == fixed.load_id
    assert raw_load_ids(warehouse_dsn, day) == {fixed.load_id: 50}
    assert quarantined_by_load(warehouse_dsn, day) == {}

    # the same file again is a no-op: no new ledger row
    assert load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day).status == "unchanged"
    assert len(attempts(warehouse_dsn, GENERATED_EVENTS.name, day)) == 3


def test_a_failed_attempt_never_overwrites_the_live_ledger_row(warehouse_dsn, landing):
    day = BASE + timedelta(days=1)
    write_events(landing, day, event_rows(day, 20))
    live = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    path = GENERATED_EVENTS.path_for(landing, day)
    path.write_text("event_id,when\ne1,x\n")  # a wrong header: the file fails as a whole
    with pytest.raises(FeedSchemaError):
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    path.unlink()  # then the file disappears: the live rows are kept, nothing is recorded
    assert load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day).status == "unchanged"

    ledger = attempts(warehouse_dsn, GENERATED_EVENTS.name, day)
    assert [(r["status"], r["load_id"]) for r in ledger] == [("loaded", live.load_id), ("failed", ledger[1]["load_id"])]
    live_rows = rows(
        warehouse_dsn,
        "select load_id from ops.loaded_files where feed = %s and logical_date = %s and is_live",
        (GENERATED_EVENTS.name, day),
    )
    assert live_rows == [{"load_id": live.load_id}]


def test_missing_days_are_recorded_once_and_snapshots_have_one_live_load(warehouse_dsn, landing):
    saturday = BASE + timedelta(days=5)
    for _ in range(2):
        assert load_feed_date(warehouse_dsn, UCI_ORDERS, landing, saturday).status == "skipped_missing"
    assert [r["status"] for r in attempts(warehouse_dsn, UCI_ORDERS.name, saturday)] == ["skipped_missing"]

    users = GENERATED_USERS.path_for(landing, BASE)
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_text("user_id,country,segment,signup_date\nu1,DE,vip,2030-01-01\n")
    load_feed_dates(warehouse_dsn, GENERATED_USERS, landing, [BASE])
    users.write_text("user_id,country,segment,signup_date\nu1,DE,vip,2030-01-01\nu2,FR,new,2030-01-02\n")
    second = load_feed_date(warehouse_dsn, GENERATED_USERS, landing, BASE + timedelta(days=1))
    live = rows(
        warehouse_dsn,
        "select load_id, records_loaded from ops.loaded_files where feed = %s and is_live",
        (GENERATED_USERS.name,),
    )
    assert live == [{"load_id": second.load_id, "records_loaded": 2}]


OLD_LEDGER_DDL = """
create schema if not exists ops;
create table ops.loaded_files (
    feed text not null, logical_date date not null, source_file text not null, sha256 text,
    records_read integer, records_loaded integer, records_rejected integer,
    status text not null check (status in ('loaded', 'skipped_missing', 'failed')),
    started_at timestamptz not null, finished_at timestamptz, load_id text not null, error text,
    primary key (feed, logical_date)
)
"""  # the ledger as created up to commit e7a846a: one row per (feed, logical date)


def test_a_ledger_of_the_previous_shape_upgrades_in_place(test_settings, tmp_path):
    """A fresh warehouse with the old ledger and rows in it: the migrations (run by the loader) upgrade it,
    nothing lost."""
    admin, database = test_settings.pg_url("postgres"), f"{test_settings.db_prefix}_ledger_upgrade"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"drop database if exists {database} with (force)")
        conn.execute(f"create database {database}")
    old_dsn = test_settings.pg_url(database)
    try:
        now = datetime.now(UTC)
        old_rows = [
            ("generated_events", BASE, "generated/events/a.csv", "loaded", "l1", now),
            ("generated_events", BASE + timedelta(days=1), "generated/events/b.csv", "failed", "l2", now),
            ("uci_orders", BASE, "uci/by-day/x.csv", "skipped_missing", "l3", now),
            ("generated_users", BASE, "generated/users.csv", "loaded", "l4", now - timedelta(hours=1)),
            ("generated_users", BASE + timedelta(days=1), "generated/users.csv", "loaded", "l5", now),
        ]
        with psycopg.connect(old_dsn, autocommit=True) as conn:
            conn.execute(OLD_LEDGER_DDL)
            for feed, day, source, status, load_id, finished in old_rows:
                conn.execute(
                    "insert into ops.loaded_files (feed, logical_date, source_file, status, started_at, finished_at,"
                    " load_id, records_loaded) values (%s, %s, %s, %s, %s, %s, %s, 3)",
                    (feed, day, source, status, finished, finished, load_id),
                )
            ensure_tables(conn, GENERATED_EVENTS)
            ensure_tables(conn, GENERATED_USERS)  # a second call finds it upgraded
        upgraded = rows(old_dsn, "select load_id, status, is_live from ops.loaded_files order by load_id")
        assert [(r["load_id"], r["status"]) for r in upgraded] == [(r[4], r[3]) for r in old_rows]
        assert {r["load_id"] for r in upgraded if r["is_live"]} == {"l1", "l5"}

        # and the upgraded ledger takes new attempts: a replacement of the first day
        landing = tmp_path / "landing"
        write_events(landing, BASE, event_rows(BASE, 4))
        result = load_feed_date(old_dsn, GENERATED_EVENTS, landing, BASE)
        ledger = attempts(old_dsn, GENERATED_EVENTS.name, BASE)
        assert [(r["load_id"], r["is_live"]) for r in ledger] == [("l1", False), (result.load_id, True)]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"drop database if exists {database} with (force)")


# --- point 6: bad input is named, refused or quarantined, never misread -----------------------------------------
@pytest.mark.parametrize("value", ["2011-12-05/../../etc", "2011-12-05T00:00:00", "2011-12-5", " 2011-12-05", "x"])
def test_a_start_day_that_is_not_a_plain_date_is_refused(value):
    with pytest.raises(ValueError, match=r"start_day .* YYYY-MM-DD"):
        days_in_window(value, None, None, None)
    with pytest.raises(ValueError, match=r"end_day .* YYYY-MM-DD"):
        days_in_window("2011-12-05", value, None, None)
    assert days_in_window("2011-12-05", "2011-12-06", None, None) == [date(2011, 12, 5), date(2011, 12, 6)]


def test_a_landing_symlink_leaving_the_landing_folder_is_refused(warehouse_dsn, landing, tmp_path):
    day, inside_day, trusted_day = BASE + timedelta(days=10), BASE + timedelta(days=11), BASE + timedelta(days=12)
    outside = write_events(tmp_path / "elsewhere", day, event_rows(day, 3, tag="secret"))
    link = GENERATED_EVENTS.path_for(landing, day)
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)

    with pytest.raises(ValueError, match="outside the landing folder") as caught:
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert str(link) in str(caught.value) and str(outside) in str(caught.value)
    assert raw_load_ids(warehouse_dsn, day) == {}
    (failed,) = attempts(warehouse_dsn, GENERATED_EVENTS.name, day)
    assert failed["status"] == "failed" and "outside the landing folder" in failed["error"]

    # a link that stays inside the landing folder, or points into a trusted folder, is read as usual
    real = write_events(landing / "deliveries", inside_day, event_rows(inside_day, 2))
    GENERATED_EVENTS.path_for(landing, inside_day).symlink_to(real)
    assert load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, inside_day).records_loaded == 2
    trusted = write_events(tmp_path / "source", trusted_day, event_rows(trusted_day, 4))
    GENERATED_EVENTS.path_for(landing, trusted_day).symlink_to(trusted)
    loaded = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, trusted_day, link_roots=(tmp_path / "source",))
    assert loaded.records_loaded == 4

    # the links inside a trusted folder are the operator's: a chain through it is followed, one that only
    # passes through the landing folder is not
    chained_day, inner_day = BASE + timedelta(days=14), BASE + timedelta(days=15)
    store = write_events(tmp_path / "store", chained_day, event_rows(chained_day, 5))
    operator_link = tmp_path / "source" / "chained.csv"
    operator_link.symlink_to(store)
    GENERATED_EVENTS.path_for(landing, chained_day).symlink_to(operator_link)
    chained = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, chained_day, link_roots=(tmp_path / "source",))
    assert chained.records_loaded == 5
    hop = landing / "hop.csv"
    hop.symlink_to(outside)
    GENERATED_EVENTS.path_for(landing, inner_day).symlink_to(hop)
    with pytest.raises(ValueError, match="outside the landing folder"):
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, inner_day, link_roots=(tmp_path / "source",))


def test_a_landing_path_that_is_not_a_regular_file_is_refused_without_reading_it(warehouse_dsn, landing):
    day = BASE + timedelta(days=13)
    fifo = GENERATED_EVENTS.path_for(landing, day)
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(ValueError, match="not a regular file"):
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert [r["status"] for r in attempts(warehouse_dsn, GENERATED_EVENTS.name, day)] == ["failed"]


def test_a_cr_only_file_fails_with_its_name_and_the_reason(warehouse_dsn, landing):
    day = BASE + timedelta(days=20)
    path = GENERATED_EVENTS.path_for(landing, day)
    path.parent.mkdir(parents=True)
    lines = [",".join(EVENT_HEADER)] + [",".join(r) for r in event_rows(day, 3)]
    path.write_bytes("\r".join(lines).encode() + b"\r")
    with pytest.raises(FeedSchemaError, match="carriage return") as caught:
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert str(path) in str(caught.value)
    assert [r["status"] for r in attempts(warehouse_dsn, GENERATED_EVENTS.name, day)] == ["failed"]


def test_a_field_over_the_feeds_maximum_is_quarantined_with_the_reason(warehouse_dsn, landing):
    day = BASE + timedelta(days=21)
    huge = event_rows(day, 1, tag="huge")[0]
    huge[3] = "i" * 10_000_000  # a 10 MB item_id
    write_events(landing, day, event_rows(day, 200) + [huge])
    result = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert (result.status, result.records_loaded, result.records_rejected) == ("loaded", 200, 1)
    (row,) = rows(
        warehouse_dsn, "select reason, length(raw_record) as n from quarantine.events where _logical_date = %s", (day,)
    )
    max_bytes = GENERATED_EVENTS.max_field_bytes
    assert f"item_id is 10000000 bytes, over the feed's maximum of {max_bytes}" in row["reason"]
    assert row["n"] > 10_000_000  # the whole record is kept

    strict = dataclasses.replace(GENERATED_EVENTS, max_field_bytes=8, max_rejected_share=1.0)
    write_events(landing, day + timedelta(days=1), [["e1", f"{day} 10:00:00", "u1", "123456789", "view", "1", "1"]])
    short = load_feed_date(warehouse_dsn, strict, landing, day + timedelta(days=1))
    assert (short.records_loaded, short.records_rejected) == (0, 1)


def test_a_header_only_file_is_recorded_empty_and_reported_by_the_raw_suite(warehouse_dsn, landing):
    day = BASE + timedelta(days=30)
    write_events(landing, day, [])
    result = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert (result.status, result.records_read) == ("empty", 0)
    assert "no records" in result.message
    (entry,) = attempts(warehouse_dsn, GENERATED_EVENTS.name, day)
    assert (entry["status"], entry["records_read"], entry["is_live"]) == ("empty", 0, True)

    summary = validate_raw(warehouse_dsn, "generated", logical_date=day, tables=["events"])
    assert summary.success  # a warning, not a failure
    outcome = summary.outcome("raw.events", "no_empty_files")
    assert not outcome.success and outcome.severity == "warning"
    assert day.isoformat() in str(outcome.sample)
