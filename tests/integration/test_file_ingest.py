"""File ingestion (landing CSV -> raw.* / quarantine.* / ops.loaded_files) on the real Postgres."""

from __future__ import annotations

import csv
import dataclasses
import shutil
import threading
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from landing_files import write_events
from psycopg import sql

from recomart.ingest.feeds import GENERATED_EVENTS, GENERATED_USERS, UCI_ORDERS, Feed
from recomart.ingest.load import LoadResult, RejectedShareExceeded, load_feed_date, load_feed_dates
from recomart.ingest.parse import FeedSchemaError, parse_feed_bytes

pytestmark = pytest.mark.integration

# Columns left out of the re-run checksum: they differ between two loads by design.
CHECKSUM_EXCLUDED = ("_load_id", "_loaded_at")
# Every test uses its own dates (far from any real data) so tests sharing the database do not interact.
BASE = date(2031, 1, 1)


def event_rows(day: date, n: int, tag: str = "a") -> list[list[str]]:
    types = ["view", "add_to_cart", "purchase"]
    return [
        [
            f"{tag}{day:%Y%m%d}-{i}",
            f"{day} {i % 24:02d}:{i % 60:02d}:00",
            f"u{i % 13}",
            f"item, {i % 17}",
            types[i % 3],
            str(i % 5 + 1),
            f"{i % 50}.{i % 100:02d}",
        ]
        for i in range(n)
    ]


def csv_records(path: Path) -> int:
    """An independent record count: rows after the header, read by the csv module."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def scalar(dsn: str, query: str | sql.Composable, params: tuple = ()):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()[0]


def partition_count(dsn: str, schema: str, feed: Feed, day: date | None = None) -> int:
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(feed.table))
    if day is None:
        return scalar(dsn, sql.SQL("select count(*) from {}").format(target))
    return scalar(dsn, sql.SQL("select count(*) from {} where _logical_date = %s").format(target), (day,))


def business_checksum(dsn: str, feed: Feed, day: date) -> str:
    """md5 over the rows of one date, every raw column except CHECKSUM_EXCLUDED, in file order."""
    with psycopg.connect(dsn) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'raw'"
                " and table_name = %s order by ordinal_position",
                (feed.table,),
            ).fetchall()
        ]
        kept = [c for c in cols if c not in CHECKSUM_EXCLUDED]
        assert set(cols) - set(kept) == set(CHECKSUM_EXCLUDED) and "_source_file" in kept
        query = sql.SQL(
            "select md5(string_agg(({})::text, '|' order by _line_number)) from raw.{} where _logical_date = %s"
        ).format(sql.SQL("row({})").format(sql.SQL(", ").join(map(sql.Identifier, kept))), sql.Identifier(feed.table))
        return conn.execute(query, (day,)).fetchone()[0]


def ledger_row(dsn: str, feed: Feed, day: date) -> dict:
    """The latest ledger attempt of ``feed`` for ``day``."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "select * from ops.loaded_files where feed = %s and logical_date = %s order by attempt_id desc limit 1",
            (feed.name, day),
        ).fetchone()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


def test_counts_types_and_ledger_match_an_independent_count(warehouse_dsn, landing):
    day = BASE
    rows = event_rows(day, 600)
    bad = ["x1,2031-01-01 00:00:00,u1,i1,view,abc,1", "x2,2031-01-01 00:00:00,u1", 'x3,"open,view,1,1']
    path = write_events(landing, day, rows, bad)

    result = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day, load_id="run-1")

    assert isinstance(result, LoadResult) and result.status == "loaded"
    assert result.records_read == csv_records(path) == len(path.read_text().splitlines()) - 1 == 603
    assert (result.records_loaded, result.records_rejected) == (600, 3)
    assert partition_count(warehouse_dsn, "raw", GENERATED_EVENTS, day) == 600
    assert partition_count(warehouse_dsn, "quarantine", GENERATED_EVENTS, day) == 3
    assert scalar(warehouse_dsn, "select sum(quantity) from raw.events where _logical_date = %s", (day,)) == sum(
        int(r[5]) for r in rows
    )
    assert scalar(warehouse_dsn, "select sum(unit_price) from raw.events where _logical_date = %s", (day,)) == sum(
        Decimal(r[6]) for r in rows
    )
    assert (
        scalar(
            warehouse_dsn,
            "select count(*) from raw.events where _logical_date = %s"
            " and item_id like 'item, %%' and _load_id = 'run-1'"
            " and _source_file = 'generated/events/2031-01-01.csv'",
            (day,),
        )
        == 600
    )
    assert (
        scalar(
            warehouse_dsn,
            "select min(event_time at time zone 'UTC')::text from raw.events where _logical_date = %s",
            (day,),
        )
        == "2031-01-01 00:00:00"
    )
    reasons = scalar(
        warehouse_dsn,
        "select string_agg(reason, ' / ' order by line_number) from quarantine.events where _logical_date = %s",
        (day,),
    )
    assert reasons == (
        "line 602: quantity 'abc' is not an integer / line 603: field count 3, expected 7"
        " / line 604: unbalanced or misplaced double quote (a quoted field may not span lines)"
    )
    ledger = ledger_row(warehouse_dsn, GENERATED_EVENTS, day)
    assert ledger["status"] == "loaded" and ledger["sha256"] == result.sha256 and ledger["load_id"] == "run-1"
    assert (ledger["records_read"], ledger["records_loaded"], ledger["records_rejected"]) == (603, 600, 3)
    assert ledger["finished_at"] >= ledger["started_at"]


def test_rerun_is_a_noop_and_reloading_gives_identical_business_columns(warehouse_dsn, landing):
    day = BASE + timedelta(days=1)
    original = event_rows(day, 300)
    write_events(landing, day, original)
    first = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    checksum = business_checksum(warehouse_dsn, GENERATED_EVENTS, day)
    loaded_at = scalar(warehouse_dsn, "select max(_loaded_at) from raw.events where _logical_date = %s", (day,))

    again = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert again.status == "unchanged" and again.load_id == first.load_id and "already loaded" in again.message
    assert (again.records_read, again.records_loaded) == (300, 300)
    assert scalar(warehouse_dsn, "select max(_loaded_at) from raw.events where _logical_date = %s", (day,)) == loaded_at
    assert business_checksum(warehouse_dsn, GENERATED_EVENTS, day) == checksum

    # another file, then the original again: a real reload, with the same business content
    write_events(landing, day, event_rows(day, 10, tag="b"))
    load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert business_checksum(warehouse_dsn, GENERATED_EVENTS, day) != checksum
    write_events(landing, day, original)
    third = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert third.status == "loaded" and third.load_id != first.load_id
    assert business_checksum(warehouse_dsn, GENERATED_EVENTS, day) == checksum


def test_corrected_file_replaces_only_its_date(warehouse_dsn, landing):
    day, neighbour = BASE + timedelta(days=2), BASE + timedelta(days=3)
    write_events(landing, neighbour, event_rows(neighbour, 50))
    load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, neighbour)
    neighbour_sum = business_checksum(warehouse_dsn, GENERATED_EVENTS, neighbour)

    write_events(landing, day, event_rows(day, 200), ["bad,2031-01-03 00:00:00,u,i,view,1,oops"])
    v1 = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert (v1.records_loaded, v1.records_rejected) == (200, 1)

    corrected = event_rows(day, 120, tag="c")
    write_events(landing, day, corrected)
    v2 = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert v2.status == "loaded" and v2.sha256 != v1.sha256
    assert (v2.records_loaded, v2.records_rejected) == (120, 0)
    ids = scalar(
        warehouse_dsn,
        "select array_agg(event_id order by _line_number) from raw.events where _logical_date = %s",
        (day,),
    )
    assert ids == [r[0] for r in corrected]
    assert (
        scalar(warehouse_dsn, "select count(distinct _load_id) from raw.events where _logical_date = %s", (day,)) == 1
    )
    assert partition_count(warehouse_dsn, "quarantine", GENERATED_EVENTS, day) == 0
    assert ledger_row(warehouse_dsn, GENERATED_EVENTS, day)["sha256"] == v2.sha256
    assert business_checksum(warehouse_dsn, GENERATED_EVENTS, neighbour) == neighbour_sum


def test_missing_file_policies(warehouse_dsn, landing):
    saturday = date(2031, 1, 4)
    skipped = load_feed_date(warehouse_dsn, UCI_ORDERS, landing, saturday)
    assert skipped.status == "skipped_missing" and str(UCI_ORDERS.path_for(landing, saturday)) in skipped.message
    assert ledger_row(warehouse_dsn, UCI_ORDERS, saturday)["status"] == "skipped_missing"

    day = BASE + timedelta(days=4)
    expected = GENERATED_EVENTS.path_for(landing, day)
    with pytest.raises(FileNotFoundError, match=str(expected)):
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert ledger_row(warehouse_dsn, GENERATED_EVENTS, day)["status"] == "failed"

    # the file arrives later: the same date loads normally
    write_events(landing, day, event_rows(day, 5))
    assert load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day).status == "loaded"
    assert ledger_row(warehouse_dsn, GENERATED_EVENTS, day)["status"] == "loaded"


def test_rejected_share_above_threshold_fails_after_committing_quarantine(warehouse_dsn, landing):
    day = BASE + timedelta(days=5)
    write_events(landing, day, event_rows(day, 100))
    good = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    checksum = business_checksum(warehouse_dsn, GENERATED_EVENTS, day)

    path = write_events(landing, day, event_rows(day, 97, tag="d"), ["broken"] * 3)  # 3 % rejected
    with pytest.raises(RejectedShareExceeded) as caught:
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    message = str(caught.value)
    assert str(path) in message and "3 of 100 records rejected" in message and "0.0300 > max 0.01" in message

    assert partition_count(warehouse_dsn, "quarantine", GENERATED_EVENTS, day) == 3  # committed
    assert business_checksum(warehouse_dsn, GENERATED_EVENTS, day) == checksum  # last good rows kept
    ledger = ledger_row(warehouse_dsn, GENERATED_EVENTS, day)
    assert ledger["status"] == "failed" and ledger["records_rejected"] == 3 and ledger["sha256"] != good.sha256

    # exactly at the threshold (1 of 100) is accepted
    write_events(landing, day, event_rows(day, 99, tag="e"), ["broken"])
    ok = load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert (ok.status, ok.records_loaded, ok.records_rejected) == ("loaded", 99, 1)
    assert partition_count(warehouse_dsn, "quarantine", GENERATED_EVENTS, day) == 1


def test_wrong_header_fails_and_is_recorded(warehouse_dsn, landing):
    day = BASE + timedelta(days=6)
    path = GENERATED_EVENTS.path_for(landing, day)
    path.parent.mkdir(parents=True)
    path.write_text("event_id,when,user_id\ne1,2031-01-07 00:00:00,u1\n")
    with pytest.raises(FeedSchemaError, match="missing"):
        load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day)
    assert ledger_row(warehouse_dsn, GENERATED_EVENTS, day)["status"] == "failed"
    assert partition_count(warehouse_dsn, "raw", GENERATED_EVENTS, day) == 0


def write_users(landing: Path, users: list[str], extra: str = "") -> None:
    path = GENERATED_USERS.path_for(landing, BASE)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{u},DE,vip,2030-12-{i % 28 + 1:02d}\n" for i, u in enumerate(users))
    path.write_text("user_id,country,segment,signup_date\n" + body + extra)


def test_snapshot_feed_replaces_the_whole_table(warehouse_dsn, landing):
    write_users(landing, [f"u{i}" for i in range(200)], "u200,FR,new,yesterday\n")
    first = load_feed_date(warehouse_dsn, GENERATED_USERS, landing, BASE)
    assert (first.records_read, first.records_loaded, first.records_rejected) == (201, 200, 1)
    assert partition_count(warehouse_dsn, "quarantine", GENERATED_USERS) == 1

    write_users(landing, [f"v{i}" for i in range(150)])
    later = BASE + timedelta(days=1)
    second = load_feed_date(warehouse_dsn, GENERATED_USERS, landing, later)
    assert second.status == "loaded"
    assert partition_count(warehouse_dsn, "raw", GENERATED_USERS) == 150
    assert partition_count(warehouse_dsn, "quarantine", GENERATED_USERS) == 0
    assert (
        scalar(
            warehouse_dsn,
            "select count(*) from raw.users where user_id like 'v%%'"
            " and _logical_date = %s and signup_date is not null",
            (later,),
        )
        == 150
    )


def test_concurrent_loads_of_one_date_leave_one_consistent_file(warehouse_dsn, tmp_path):
    day = BASE + timedelta(days=7)
    landings = [tmp_path / "one", tmp_path / "two"]
    write_events(landings[0], day, event_rows(day, 3000, tag="one"))
    write_events(landings[1], day, event_rows(day, 2000, tag="two"))
    results: list[LoadResult] = []
    errors: list[BaseException] = []

    def run(landing: Path) -> None:
        try:
            results.append(load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, day))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(landing,)) for landing in landings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2
    ledger = ledger_row(warehouse_dsn, GENERATED_EVENTS, day)
    winner = next(r for r in results if r.load_id == ledger["load_id"])
    assert partition_count(warehouse_dsn, "raw", GENERATED_EVENTS, day) == winner.records_loaded
    assert scalar(
        warehouse_dsn, "select array_agg(distinct _load_id) from raw.events where _logical_date = %s", (day,)
    ) == [winner.load_id]


def test_uci_timestamps_are_read_in_shop_time(warehouse_dsn, landing):
    summer = date(2031, 6, 2)
    path = UCI_ORDERS.path_for(landing, summer)
    path.parent.mkdir(parents=True)
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        '536365,85123A,"HEART, WHITE",6,2031-06-02 08:26:00,2.55,17850.0,United Kingdom\n'
        "C536379,D,Discount,-1,2031-06-02 09:41:00,27.50,,United Kingdom\n"
    )
    result = load_feed_date(warehouse_dsn, UCI_ORDERS, landing, summer)
    assert (result.records_loaded, result.records_rejected) == (2, 0)
    with psycopg.connect(warehouse_dsn) as conn:
        rows = conn.execute(
            "select invoice_no, description, quantity, (invoice_date at time zone 'UTC')::text,"
            " unit_price::text, customer_id from raw.uci_orders where _logical_date = %s order by _line_number",
            (summer,),
        ).fetchall()
    assert rows == [
        ("536365", "HEART, WHITE", 6, "2031-06-02 07:26:00", "2.55", "17850.0"),  # BST = UTC+1
        ("C536379", "Discount", -1, "2031-06-02 08:41:00", "27.50", None),
    ]


def test_raw_rows_hold_exactly_what_the_parser_read(warehouse_dsn, landing):
    """The loader COPYs each good record's own bytes: Postgres must read the values the strict parser read.

    Tricky but valid CSV: columns in another order than the feed, a byte-order mark, CRLF line ends, quoted
    separators and doubled quotes, quoted and unquoted empty optional values (both NULL), non-ASCII text,
    spaces kept as they are, a bad record in between, and load constants that need CSV quoting.
    """
    day = BASE + timedelta(days=8)
    path = GENERATED_EVENTS.path_for(landing, day)
    path.parent.mkdir(parents=True)
    lines = [
        "unit_price,event_type,item_id,event_id,user_id,quantity,event_time",
        '1.50,view,"item, ""7""",e1,u1,,2031-01-09 10:00:00',
        '"",purchase,i2,e2,u2,"",2031-01-09 10:00:01',
        "0.10,add_to_cart, ü spaced ,e3,u3,+5,2031-01-09 23:59:59",
        "oops,view,i,e4,u4,1,2031-01-09 10:00:00",
        '"2.00","view","Ω","e5","u5","7","2031-01-09 00:00:00"',
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")

    lenient = dataclasses.replace(GENERATED_EVENTS, max_rejected_share=0.5)
    result = load_feed_date(warehouse_dsn, lenient, landing, day, load_id='run,"8"')

    assert (result.records_loaded, result.records_rejected) == (4, 1)
    parsed = parse_feed_bytes(path.read_bytes(), GENERATED_EVENTS).good.to_pylist()
    with psycopg.connect(warehouse_dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        loaded = cur.execute(
            "select event_id, to_char(event_time at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') as event_time,"
            " user_id, item_id, event_type, quantity, unit_price, _line_number, _load_id, _source_file"
            " from raw.events where _logical_date = %s order by _line_number",
            (day,),
        ).fetchall()
    expected_numbers = [(int(r["quantity"]) if r["quantity"] else None, r["unit_price"]) for r in parsed]
    assert [(r["quantity"], str(r["unit_price"]) if r["unit_price"] is not None else None) for r in loaded] == (
        expected_numbers
    )
    text_columns = ["event_id", "event_time", "user_id", "item_id", "event_type", "_line_number"]
    assert [{c: r[c] for c in text_columns} for r in loaded] == [{c: r[c] for c in text_columns} for r in parsed]
    assert [r["item_id"] for r in loaded] == ['item, "7"', "i2", " ü spaced ", "Ω"]
    assert [(r["quantity"], r["unit_price"]) for r in loaded][1] == (None, None)
    assert {(r["_load_id"], r["_source_file"]) for r in loaded} == {('run,"8"', "generated/events/2031-01-09.csv")}


@pytest.mark.shared_data
def test_real_uci_days(warehouse_dsn, landing, shared_data):
    by_day = shared_data / "uci-online-retail" / "by-day"
    days = [date(2010, 12, 1), date(2011, 5, 17), date(2011, 12, 9)]
    target = landing / "uci" / "by-day"
    target.mkdir(parents=True)
    for day in days:
        shutil.copy(by_day / f"{day}.csv", target)

    for day in days:
        result = load_feed_date(warehouse_dsn, UCI_ORDERS, landing, day)
        expected = csv_records(target / f"{day}.csv")
        assert result.status == "loaded" and result.records_read == expected
        loaded = partition_count(warehouse_dsn, "raw", UCI_ORDERS, day)
        quarantined = partition_count(warehouse_dsn, "quarantine", UCI_ORDERS, day)
        assert loaded + quarantined == expected
        assert (loaded, quarantined) == (result.records_loaded, result.records_rejected)
        assert quarantined == 0  # the real files are clean CSV; their dirt is semantic (left to staging)
        assert (
            scalar(
                warehouse_dsn,
                "select count(*) from raw.uci_orders where _logical_date = %s"
                " and (invoice_date at time zone 'Europe/London')::date <> _logical_date",
                (day,),
            )
            == 0
        )
    assert (
        scalar(
            warehouse_dsn,
            "select count(*) from raw.uci_orders where customer_id = '17850.0' and _logical_date = '2010-12-01'",
        )
        > 0
    )
    saturday = date(2010, 12, 4)
    assert load_feed_date(warehouse_dsn, UCI_ORDERS, landing, saturday).status == "skipped_missing"


def test_batch_load_matches_single_loads_reruns_as_noop_and_stops_at_the_first_failure(warehouse_dsn, landing):
    days = [BASE + timedelta(days=40 + i) for i in range(3)]
    write_events(landing, days[0], event_rows(days[0], 150), ["bad,2031-02-10 00:00:00,u,i,view,1,oops"])
    write_events(landing, days[1], event_rows(days[1], 30))
    original = event_rows(days[2], 20)
    write_events(landing, days[2], original)

    results = load_feed_dates(warehouse_dsn, GENERATED_EVENTS, landing, days)
    assert [(r.logical_date, r.status, r.records_loaded, r.records_rejected) for r in results] == [
        (days[0], "loaded", 150, 1),
        (days[1], "loaded", 30, 0),
        (days[2], "loaded", 20, 0),
    ]
    assert len({r.load_id for r in results}) == 3
    for r in results:
        assert partition_count(warehouse_dsn, "raw", GENERATED_EVENTS, r.logical_date) == r.records_loaded
        assert partition_count(warehouse_dsn, "quarantine", GENERATED_EVENTS, r.logical_date) == r.records_rejected
        ledger = ledger_row(warehouse_dsn, GENERATED_EVENTS, r.logical_date)
        assert (ledger["status"], ledger["sha256"], ledger["load_id"]) == ("loaded", r.sha256, r.load_id)
    assert scalar(warehouse_dsn, "select reltuples from pg_class where oid = 'raw.events'::regclass") > 0  # analysed
    checksum = business_checksum(warehouse_dsn, GENERATED_EVENTS, days[2])

    again = load_feed_dates(warehouse_dsn, GENERATED_EVENTS, landing, days)
    assert [r.status for r in again] == ["unchanged"] * 3
    assert [r.load_id for r in again] == [r.load_id for r in results]

    # the batch writes what a single load writes: reload the last date alone with another file, then the original
    write_events(landing, days[2], event_rows(days[2], 5, tag="x"))
    assert load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, days[2]).status == "loaded"
    write_events(landing, days[2], original)
    assert load_feed_date(warehouse_dsn, GENERATED_EVENTS, landing, days[2]).status == "loaded"
    assert business_checksum(warehouse_dsn, GENERATED_EVENTS, days[2]) == checksum

    # a missing file of a "fail" feed stops the batch there: earlier dates stay loaded, and with one worker
    # the later ones are untouched; with several, no date is started after the failure
    later = [BASE + timedelta(days=50 + i) for i in range(3)]
    write_events(landing, later[0], event_rows(later[0], 10))
    write_events(landing, later[2], event_rows(later[2], 10))
    with pytest.raises(FileNotFoundError, match=str(GENERATED_EVENTS.path_for(landing, later[1]))):
        load_feed_dates(warehouse_dsn, GENERATED_EVENTS, landing, later, workers=1)
    assert ledger_row(warehouse_dsn, GENERATED_EVENTS, later[0])["status"] == "loaded"
    assert partition_count(warehouse_dsn, "raw", GENERATED_EVENTS, later[0]) == 10
    assert ledger_row(warehouse_dsn, GENERATED_EVENTS, later[1])["status"] == "failed"
    assert ledger_row(warehouse_dsn, GENERATED_EVENTS, later[2]) is None
    assert partition_count(warehouse_dsn, "raw", GENERATED_EVENTS, later[2]) == 0

    many = [BASE + timedelta(days=70 + i) for i in range(12)]  # the 2nd date fails, 2 workers
    for day in many[:1] + many[2:]:
        write_events(landing, day, event_rows(day, 10))
    with pytest.raises(FileNotFoundError, match=str(GENERATED_EVENTS.path_for(landing, many[1]))):
        load_feed_dates(warehouse_dsn, GENERATED_EVENTS, landing, many, workers=2)
    statuses = [(ledger_row(warehouse_dsn, GENERATED_EVENTS, d) or {}).get("status") for d in many]
    assert statuses[:2] == ["loaded", "failed"]
    assert set(statuses[2:]) <= {"loaded", None} and statuses[-1] is None  # at most the dates in flight


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_deleting_a_date_reads_only_its_block_ranges(warehouse_dsn, landing):
    """raw's BRIN indexes are summarised by each load: replacing a date never scans the whole table, and
    none of their ranges is left for autovacuum (an unsummarised range matches every condition).

    The feed gets a table of its own: in the shared ``raw.events``, space freed by other tests' replaced
    dates can be reused by any later load, which widens block ranges in a way that depends on autovacuum.
    """
    feed = dataclasses.replace(GENERATED_EVENTS, name="events_brin_check", table="events_brin_check")
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:  # its tables, as a migration would add them
        conn.execute("create table raw.events_brin_check (like raw.events including defaults including constraints)")
        conn.execute("alter table raw.events_brin_check set (autovacuum_enabled = false)")  # the loads summarise
        for column in ("_logical_date", "_loaded_at"):
            conn.execute(
                f"create index events_brin_check_{column}_brin on raw.events_brin_check"
                f" using brin ({column}) with (pages_per_range = 32)"
            )
        conn.execute("create table quarantine.events_brin_check (like quarantine.events including all)")
    days = [BASE + timedelta(days=60 + i) for i in range(6)]
    for day in days:
        write_events(landing, day, event_rows(day, 4000))
    load_feed_dates(warehouse_dsn, feed, landing, days, workers=1)  # one writer: contiguous dates
    write_events(landing, days[4], event_rows(days[4], 4000, tag="b"))  # a corrected file: rows move to the end
    assert load_feed_date(warehouse_dsn, feed, landing, days[4]).status == "loaded"

    target = days[1]
    with psycopg.connect(warehouse_dsn) as conn:
        first, last, pages = conn.execute(
            "select min((ctid::text::point)[0])::int, max((ctid::text::point)[0])::int,"
            " pg_relation_size('raw.events_brin_check') / current_setting('block_size')::int"
            " from raw.events_brin_check where _logical_date = %s",
            (target,),
        ).fetchone()
        conn.execute("set local enable_seqscan = off")  # as the loader does
        plan = conn.execute(
            "explain (analyze, format json) delete from raw.events_brin_check where _logical_date = %s", (target,)
        ).fetchone()[0][0]["Plan"]
        conn.rollback()
    nodes = list(_plan_nodes(plan))
    assert any(n.get("Index Name") == "events_brin_check__logical_date_brin" for n in nodes), plan
    heap = next(n for n in nodes if n["Node Type"] == "Bitmap Heap Scan")
    visited = heap.get("Exact Heap Blocks", 0) + heap.get("Lossy Heap Blocks", 0)
    per_range = 32
    ranges_holding_the_date = (last // per_range - first // per_range + 1) * per_range
    assert 0 < visited <= ranges_holding_the_date < pages
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:  # every BRIN index: no range left
        left = conn.execute(
            "select brin_summarize_new_values('raw.events_brin_check__logical_date_brin'),"
            " brin_summarize_new_values('raw.events_brin_check__loaded_at_brin')"
        ).fetchone()
    assert left == (0, 0)
