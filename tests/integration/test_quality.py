"""Great Expectations suites on real Postgres: valid tables pass; each planted bad row fails the right
expectation by name and severity; warnings do not raise; Data Docs are built."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from recomart.ingest import ledger
from recomart.ingest.feeds import GENERATED_EVENTS, GENERATED_USERS, UCI_ORDERS
from recomart.ingest.load import ensure_tables
from recomart.quality import DataQualityError, ValidationSummary, validate_marts, validate_raw

pytestmark = pytest.mark.integration

D1, D2, UCI_DAY = date(2024, 3, 1), date(2024, 3, 2), date(2011, 12, 9)

RAW_ROWS = """
insert into raw.events (event_id, event_time, user_id, item_id, event_type, quantity, unit_price,
                        _logical_date, _load_id, _source_file, _line_number) values
  ('e1', '2024-03-01 10:00:00+00', 'u1', 'i1', 'view', 1, 9.99, '2024-03-01', 'l1', 'ev/03-01.csv', 2),
  ('e2', '2024-03-01 23:59:59+00', 'u2', 'i2', 'purchase', 2, 19.99, '2024-03-01', 'l1', 'ev/03-01.csv', 3),
  ('e3', '2024-03-02 00:00:00+00', 'u1', 'i2', 'add_to_cart', 1, 19.99, '2024-03-02', 'l2', 'ev/03-02.csv', 2);
insert into raw.users (user_id, country, segment, signup_date,
                       _logical_date, _load_id, _source_file, _line_number) values
  ('u1', 'United Kingdom', 'consumer', '2023-01-01', '2024-03-02', 'l3', 'generated/users.csv', 2),
  ('u2', 'France', 'business', '2023-06-01', '2024-03-02', 'l3', 'generated/users.csv', 3);
insert into raw.products (item_id, title, description, category, brand, price, updated_at, payload,
                          _load_id, _loaded_at) values
       ('i1', 'Tea', 'green tea', 'grocery', 'Leafy', 9.99, '2024-02-01 00:00:00+00', '{}', 'c1', now()),
       ('i2', 'Mug', 'a mug', 'kitchen', 'Potter', 19.99, '2024-02-01 00:00:00+00', '{}', 'c1', now());
insert into raw.uci_orders (invoice_no, stock_code, description, quantity, invoice_date, unit_price,
                            customer_id, country,
                            _logical_date, _load_id, _source_file, _line_number) values
  ('581475', '22596', 'STAR T-LIGHT', 36, '2011-12-09 09:15:00+00', 0.39, '13069.0', 'United Kingdom',
   '2011-12-09', 'l4', 'uci/by-day/2011-12-09.csv', 2),
  ('C581490', '23144', 'BOWL', -11, '2011-12-09 23:30:00+00', 0.83, '14397.0', 'United Kingdom',
   '2011-12-09', 'l4', 'uci/by-day/2011-12-09.csv', 3);
"""

MART_DDL = """
create schema if not exists marts;
create table marts.user_item_ratings (user_id text, item_id text, rating float8, score float8, interactions integer,
    purchases integer, last_interaction_at timestamptz, event_timestamp timestamptz);
create table marts.user_features (user_id text, event_timestamp timestamptz, recency_days float8, frequency integer,
    monetary float8, distinct_items integer, favourite_category text, country text, segment text,
    days_since_first_seen float8, last_interaction_at timestamptz);
create table marts.item_features (item_id text, event_timestamp timestamptz, pop_7d integer, pop_30d integer,
    pop_90d integer, distinct_buyers integer, revenue float8, price float8, price_band text, category text,
    brand text, content_text text, first_seen_at timestamptz);
create table marts.dim_products (item_id text, title text, description text, category text, brand text,
    price numeric(12, 4), in_catalog boolean, updated_at timestamptz, event_timestamp timestamptz);
insert into marts.user_item_ratings values
  ('u1', 'i1', 1.7251, 1.0, 1, 0, '2024-03-01 10:00+00', '2024-03-02 00:00+00'),
  ('u1', 'i2', 2.8048, 3.0, 1, 0, '2024-03-02 00:00+00', '2024-03-02 00:00+00'),
  ('u2', 'i2', 4.1, 7.2, 1, 1, '2024-03-01 23:59+00', '2024-03-02 00:00+00');
insert into marts.user_features values
  ('u1', '2024-03-02 00:00+00', 0.0, 0, 0.0, 2, 'kitchen', 'United Kingdom', 'consumer', 426.0, '2024-03-02 00:00+00'),
  ('u2', '2024-03-02 00:00+00', 0.0, 1, 39.98, 1, 'kitchen', 'France', 'business', 275.0, '2024-03-01 23:59+00');
insert into marts.item_features values
  ('i1', '2024-03-02 00:00+00', 1, 1, 1, 0, 0.0, 9.99, 'budget', 'grocery', 'Leafy', 'tea green tea',
   '2024-03-01 10:00+00'),
  ('i2', '2024-03-02 00:00+00', 2, 2, 2, 1, 39.98, 19.99, 'mid', 'kitchen', 'Potter', 'mug a mug',
   '2024-03-01 23:59+00');
insert into marts.dim_products values
  ('i1', 'Tea', 'green tea', 'grocery', 'Leafy', 9.99, true, '2024-02-01 00:00+00', '2024-03-02 00:00+00'),
  ('i2', 'Mug', 'a mug', 'kitchen', 'Potter', 19.99, true, '2024-02-01 00:00+00', '2024-03-02 00:00+00');
"""


def _ledger_row(conn: psycopg.Connection, feed: str, day: date, source: str, loaded: int) -> None:
    attempt = ledger.Attempt(
        feed=feed,
        logical_date=day,
        source_file=source,
        status="loaded",
        started_at=datetime.now(UTC),
        load_id=f"{feed}-{day}",
        sha256="x" * 64,
        records_read=loaded,
        records_loaded=loaded,
        records_rejected=0,
    )
    ledger.append_attempt(conn, attempt)


@pytest.fixture(scope="module")
def warehouse(warehouse_dsn: str) -> str:
    """Raw tables (the migrations), the ledger and hand-made marts (dbt column types), all valid."""
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        for feed in (GENERATED_EVENTS, GENERATED_USERS, UCI_ORDERS):
            ensure_tables(conn, feed)  # migrates: the catalogue's tables too
        conn.execute(RAW_ROWS)
        _ledger_row(conn, "generated_events", D1, "generated/events/2024-03-01.csv", 2)
        _ledger_row(conn, "generated_events", D2, "generated/events/2024-03-02.csv", 1)
        _ledger_row(conn, "generated_users", D2, "generated/users.csv", 2)
        _ledger_row(conn, "uci_orders", UCI_DAY, "uci/by-day/2011-12-09.csv", 2)
        conn.execute(MART_DDL)
    return warehouse_dsn


@contextlib.contextmanager
def planted(dsn: str, do: str, undo: str) -> Iterator[None]:
    """Commit ``do`` (the bad data) for the duration of the block, then ``undo`` it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(do)
    try:
        yield
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(undo)


def _bump_ledger(feed: str, day: date, by: int) -> str:
    return (
        f"update ops.loaded_files set records_loaded = records_loaded + ({by})"
        f" where feed = '{feed}' and logical_date = '{day}';"
    )


def _critical_failure(run) -> ValidationSummary:
    with pytest.raises(DataQualityError) as excinfo:
        run()
    return excinfo.value.summary


# --- valid data passes ------------------------------------------------------------------------
def test_valid_raw_tables_pass_and_build_data_docs(warehouse: str, tmp_path: Path) -> None:
    docs = tmp_path / "gx_docs"
    summary = validate_raw(warehouse, "generated", docs_dir=docs)
    assert summary.success and not summary.warnings, summary.failure_message()
    assert {o.suite for o in summary.outcomes} == {"raw.events", "raw.users", "raw.products"}
    names = {(o.suite, o.name) for o in summary.outcomes}
    for expected in [
        ("raw.events", "event_id_unique"),
        ("raw.events", "row_count_matches_ledger"),
        ("raw.events", "event_time_in_logical_day"),
        ("raw.events", "event_type_accepted_values"),
        ("raw.events", "quantity_type"),
        ("raw.users", "user_id_unique"),
        ("raw.products", "item_id_unique"),
        ("raw.products", "price_positive"),
    ]:
        assert expected in names
    assert all(o.severity in ("critical", "warning") for o in summary.outcomes)
    index = docs / "index.html"
    assert summary.docs_index == str(index.resolve())
    assert index.is_file() and "raw.events" in index.read_text()
    assert list((docs / "validations").rglob("*.html")), "no validation result page"
    assert summary.to_dict()["success"] is True

    # a second run (marts) keeps the raw results in the same Data Docs index
    validate_marts(warehouse, "generated", docs_dir=docs)
    text = index.read_text()
    assert "raw.events" in text and "marts.user_item_ratings" in text


def test_valid_partition_and_uci_pass(warehouse: str) -> None:
    day = validate_raw(warehouse, "generated", logical_date=D1, tables=["events"])
    assert day.success and not day.warnings, day.failure_message()
    assert ("raw.events", "event_id_unique_across_days") in {(o.suite, o.name) for o in day.outcomes}
    assert day.outcome("raw.events", "event_time_type").success  # type check on a one-day (query) batch
    uci = validate_raw(warehouse, "uci")
    assert uci.success and not uci.warnings, uci.failure_message()
    assert validate_raw(warehouse, "uci", logical_date=UCI_DAY).success


def test_valid_marts_pass(warehouse: str) -> None:
    summary = validate_marts(warehouse, "generated")
    assert summary.success and not summary.warnings, summary.failure_message()
    assert {o.suite for o in summary.outcomes} == {
        "marts.user_item_ratings",
        "marts.user_features",
        "marts.item_features",
        "marts.dim_products",
    }


# --- planted bad rows fail the right critical expectation ---------------------------------------
EVENT_COLS = (
    "event_id, event_time, user_id, item_id, event_type, quantity, unit_price, _logical_date, _load_id, "
    "_source_file, _line_number"
)


def _event(values: str, day: date = D1, line: int = 99) -> tuple[str, str]:
    do = f"insert into raw.events ({EVENT_COLS}) values ({values}, '{day}', 'bad', 'bad.csv', {line});" + _bump_ledger(
        "generated_events", day, 1
    )
    undo = "delete from raw.events where _load_id = 'bad';" + _bump_ledger("generated_events", day, -1)
    return do, undo


RAW_CASES = {
    "duplicate event_id": (
        *_event("'e1', '2024-03-01 12:00+00', 'u1', 'i1', 'view', 1, 9.99"),
        "generated",
        ["events"],
        None,
        "raw.events",
        "event_id_unique",
        "e1",
    ),
    "event_id in two days": (
        *_event("'e1', '2024-03-02 12:00+00', 'u1', 'i1', 'view', 1, 9.99", day=D2),
        "generated",
        ["events"],
        D2,
        "raw.events",
        "event_id_unique_across_days",
        "e1",
    ),
    "quantity zero": (
        *_event("'e9', '2024-03-01 12:00+00', 'u1', 'i1', 'purchase', 0, 9.99"),
        "generated",
        ["events"],
        None,
        "raw.events",
        "quantity_min",
        0,
    ),
    "negative price": (
        *_event("'e9', '2024-03-01 12:00+00', 'u1', 'i1', 'purchase', 1, -5"),
        "generated",
        ["events"],
        D1,
        "raw.events",
        "unit_price_positive",
        -5.0,
    ),
    "unknown event type": (
        *_event("'e9', '2024-03-01 12:00+00', 'u1', 'i1', 'click', 1, 9.99"),
        "generated",
        ["events"],
        None,
        "raw.events",
        "event_type_accepted_values",
        "click",
    ),
    "event outside its day": (
        *_event("'e9', '2024-03-02 00:00:01+00', 'u1', 'i1', 'view', 1, 9.99"),
        "generated",
        ["events"],
        D1,
        "raw.events",
        "event_time_in_logical_day",
        "e9",
    ),
    "events ledger mismatch": (
        _bump_ledger("generated_events", D2, 5),
        _bump_ledger("generated_events", D2, -5),
        "generated",
        ["events"],
        None,
        "raw.events",
        "row_count_matches_ledger",
        "2024-03-02",
    ),
    "duplicate user_id": (
        "insert into raw.users (user_id, country, segment, signup_date, _logical_date, _load_id, _source_file,"
        " _line_number) values ('u1', 'France', 'consumer', '2023-01-01', '2024-03-02', 'bad', 'bad.csv', 9);"
        + _bump_ledger("generated_users", D2, 1),
        "delete from raw.users where _load_id = 'bad';" + _bump_ledger("generated_users", D2, -1),
        "generated",
        ["users"],
        None,
        "raw.users",
        "user_id_unique",
        "u1",
    ),
    "users ledger mismatch": (
        _bump_ledger("generated_users", D2, 1),
        _bump_ledger("generated_users", D2, -1),
        "generated",
        ["users"],
        None,
        "raw.users",
        "row_count_matches_ledger",
        3,
    ),
    "users column type": (
        "alter table raw.users alter column signup_date type text",
        "alter table raw.users alter column signup_date type date using signup_date::date",
        "generated",
        ["users"],
        None,
        "raw.users",
        "signup_date_type",
        None,
    ),
    "free product": (
        "update raw.products set price = 0 where item_id = 'i2'",
        "update raw.products set price = 19.99 where item_id = 'i2'",
        "generated",
        ["products"],
        None,
        "raw.products",
        "price_positive",
        0.0,
    ),
    "uci absurd quantity": (
        "update raw.uci_orders set quantity = 5000000 where _line_number = 2",
        "update raw.uci_orders set quantity = 36 where _line_number = 2",
        "uci",
        None,
        UCI_DAY,
        "raw.uci_orders",
        "quantity_range",
        5000000,
    ),
    "uci invoice on the next day": (
        "update raw.uci_orders set invoice_date = '2011-12-10 00:30:00+00' where _line_number = 2",
        "update raw.uci_orders set invoice_date = '2011-12-09 09:15:00+00' where _line_number = 2",
        "uci",
        None,
        None,
        "raw.uci_orders",
        "invoice_date_in_logical_day",
        "581475",
    ),
    "uci ledger mismatch": (
        _bump_ledger("uci_orders", UCI_DAY, -1),
        _bump_ledger("uci_orders", UCI_DAY, 1),
        "uci",
        None,
        UCI_DAY,
        "raw.uci_orders",
        "row_count_matches_ledger",
        1,
    ),
}


def _in_sample(value, sample: list) -> bool:
    flat = []
    for item in sample:
        flat.extend(item.values() if isinstance(item, dict) else [item])
    return value in flat or str(value) in map(str, flat)


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_planted_raw_row_fails_the_right_expectation(warehouse: str, case: str) -> None:
    do, undo, dataset, tables, day, suite, name, bad_value = RAW_CASES[case]
    with planted(warehouse, do, undo):
        summary = _critical_failure(lambda: validate_raw(warehouse, dataset, tables=tables, logical_date=day))
    assert summary.failed("critical") == {(suite, name)}, summary.failure_message()
    outcome = summary.outcome(suite, name)
    assert outcome.severity == "critical" and not outcome.success
    if bad_value is not None:
        assert _in_sample(bad_value, outcome.sample), outcome
    # after the undo the same suite passes again
    assert validate_raw(warehouse, dataset, tables=tables, logical_date=day).success


MART_CASES = {
    "rating above 5": (
        "update marts.user_item_ratings set rating = 6.5 where user_id = 'u2'",
        "update marts.user_item_ratings set rating = 4.1 where user_id = 'u2'",
        "marts.user_item_ratings",
        "rating_range",
        6.5,
    ),
    "more purchases than interactions": (
        "update marts.user_item_ratings set purchases = 3 where user_id = 'u2'",
        "update marts.user_item_ratings set purchases = 1 where user_id = 'u2'",
        "marts.user_item_ratings",
        "purchases_le_interactions",
        None,
    ),
    "duplicate user features": (
        "insert into marts.user_features select * from marts.user_features where user_id = 'u1'",
        "delete from marts.user_features where ctid in (select max(ctid) from marts.user_features"
        " where user_id = 'u1')",
        "marts.user_features",
        "user_id_unique",
        "u1",
    ),
    "negative frequency": (
        "update marts.user_features set frequency = -1 where user_id = 'u1'",
        "update marts.user_features set frequency = 0 where user_id = 'u1'",
        "marts.user_features",
        "frequency_non_negative",
        -1,
    ),
    "negative popularity": (
        "update marts.item_features set pop_7d = -2 where item_id = 'i1'",
        "update marts.item_features set pop_7d = 1 where item_id = 'i1'",
        "marts.item_features",
        "pop_7d_non_negative",
        -2,
    ),
    "unknown price band": (
        "update marts.item_features set price_band = 'luxury' where item_id = 'i1'",
        "update marts.item_features set price_band = 'budget' where item_id = 'i1'",
        "marts.item_features",
        "price_band_accepted_values",
        "luxury",
    ),
    "zero price": (
        "update marts.dim_products set price = 0 where item_id = 'i1'",
        "update marts.dim_products set price = 9.99 where item_id = 'i1'",
        "marts.dim_products",
        "price_positive",
        0.0,
    ),
    "duplicate product": (
        "insert into marts.dim_products select * from marts.dim_products where item_id = 'i2'",
        "delete from marts.dim_products where ctid in (select max(ctid) from marts.dim_products where item_id = 'i2')",
        "marts.dim_products",
        "item_id_unique",
        "i2",
    ),
}


@pytest.mark.parametrize("case", list(MART_CASES))
def test_planted_mart_row_fails_the_right_expectation(warehouse: str, case: str) -> None:
    do, undo, suite, name, bad_value = MART_CASES[case]
    table = suite.split(".")[1]
    with planted(warehouse, do, undo):
        summary = _critical_failure(lambda: validate_marts(warehouse, "generated", tables=[table]))
    assert summary.failed("critical") == {(suite, name)}, summary.failure_message()
    outcome = summary.outcome(suite, name)
    assert outcome.severity == "critical"
    if bad_value is not None:
        assert _in_sample(bad_value, outcome.sample), outcome


# --- error message, warnings, missing tables ------------------------------------------------------
def test_error_message_names_suite_expectation_and_sample(warehouse: str) -> None:
    do, undo = _event("'e9', '2024-03-01 12:00+00', 'u1', 'i1', 'teleport', 1, 9.99")
    with planted(warehouse, do, undo), pytest.raises(DataQualityError) as excinfo:
        validate_raw(warehouse, "generated", tables=["events"])
    message = str(excinfo.value)
    assert "raw.events" in message and "event_type_accepted_values" in message and "teleport" in message


def test_warning_failures_are_returned_not_raised(warehouse: str, caplog: pytest.LogCaptureFixture) -> None:
    unknown_item = _event("'e9', '2024-03-01 12:00+00', 'u1', 'i404', 'view', 1, 9.99")
    with planted(warehouse, *unknown_item), caplog.at_level("WARNING", logger="recomart.quality.validate"):
        summary = validate_raw(warehouse, "generated", tables=["events"])
    assert summary.success
    assert summary.failed() == {("raw.events", "item_id_in_products")}
    warning = summary.outcome("raw.events", "item_id_in_products")
    assert warning.severity == "warning" and _in_sample("i404", warning.sample)
    assert "item_id_in_products" in caplog.text

    with planted(
        warehouse,
        "update raw.uci_orders set quantity = 20000 where _line_number = 2",
        "update raw.uci_orders set quantity = 36 where _line_number = 2",
    ):
        uci = validate_raw(warehouse, "uci")
    assert uci.success and uci.failed("warning") == {("raw.uci_orders", "quantity_plausible")}

    with planted(
        warehouse,
        "update marts.user_item_ratings set score = -1 where user_id = 'u1' and item_id = 'i1'",
        "update marts.user_item_ratings set score = 1 where user_id = 'u1' and item_id = 'i1'",
    ):
        marts = validate_marts(warehouse, "generated", tables=["user_item_ratings"])
    assert marts.success and marts.failed() == {("marts.user_item_ratings", "score_non_negative")}


RATINGS = "marts.user_item_ratings"


def _ratings_mark(dsn: str) -> datetime | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select loaded_until from ops.gx_validated_until where suite = %s", (RATINGS,)).fetchone()
    return row[0] if row else None


def test_a_daily_run_reads_the_ratings_loaded_since_its_last_pass(private_database) -> None:
    """The ratings' suite reads the pairs loaded after its last pass; a failing run keeps that mark, so
    the next run reads the bad pair again; a run over every row (after a full refresh) reads all."""
    dsn = private_database("new_pairs")
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_tables(conn, GENERATED_EVENTS)  # migrates: ops.gx_validated_until
        conn.execute(MART_DDL)
        conn.execute(f"alter table {RATINGS} add column loaded_at timestamptz default '2024-03-02 01:00+00'")

    def daily() -> ValidationSummary:
        return validate_marts(dsn, "generated", tables=["user_item_ratings"])

    assert _ratings_mark(dsn) is None
    assert daily().success
    first_mark = datetime(2024, 3, 2, 1, tzinfo=UTC)
    assert _ratings_mark(dsn) == first_mark

    old_pair = f"update {RATINGS} set rating = {{}} where user_id = 'u2'"
    with planted(dsn, old_pair.format(6.5), old_pair.format(4.1)):
        assert daily().success  # loaded before the mark: not read again
        everything = _critical_failure(
            lambda: validate_marts(dsn, "generated", tables=["user_item_ratings"], every_row=True)
        )
        assert everything.failed("critical") == {(RATINGS, "rating_range")}
    assert _ratings_mark(dsn) == first_mark

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"insert into {RATINGS} values ('u2', 'i1', 6.0, 2.0, 1, 2, '2024-03-03 09:00+00',"
            " '2024-03-04 00:00+00', '2024-03-03 10:00+00')"
        )
    failed = _critical_failure(daily)
    assert failed.failed("critical") == {(RATINGS, "rating_range"), (RATINGS, "purchases_le_interactions")}
    assert _ratings_mark(dsn) == first_mark
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"update {RATINGS} set rating = 3.0, purchases = 1 where user_id = 'u2' and item_id = 'i1'")
    assert daily().success
    assert _ratings_mark(dsn) == datetime(2024, 3, 3, 10, tzinfo=UTC)


def test_missing_table_is_a_critical_failure(warehouse: str) -> None:
    with planted(
        warehouse,
        "alter table marts.dim_products rename to dim_products_moved",
        "alter table marts.dim_products_moved rename to dim_products",
    ):
        summary = _critical_failure(lambda: validate_marts(warehouse, "generated", tables=["dim_products"]))
    assert summary.failed("critical") == {("marts.dim_products", "table_exists")}
