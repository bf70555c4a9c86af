"""Unit tests of the strict landing-file parser (no services)."""

from __future__ import annotations

import csv
import io
import pickle
from datetime import date

import pytest

from recomart.ingest.feeds import (
    FEEDS,
    GENERATED_EVENTS,
    GENERATED_USERS,
    UCI_ORDERS,
    Column,
    Feed,
    feeds_for_dataset,
    get_feed,
)
from recomart.ingest.parse import FeedSchemaError, ParseResult, parse_feed_bytes

HEADER = b"event_id,event_time,user_id,item_id,event_type,quantity,unit_price\n"
GOOD = b"e1,2024-03-01 10:00:00,u1,i1,purchase,2,9.99\n"


def parse(body: bytes, feed: Feed = GENERATED_EVENTS) -> ParseResult:
    result = parse_feed_bytes(HEADER + body if feed is GENERATED_EVENTS else body, feed)
    assert result.records_read == result.records_loaded + result.records_rejected
    return result


def only_reason(result: ParseResult) -> str:
    assert result.records_rejected == 1, result.rejected_reasons
    return result.rejected_reasons[0]


# --- feeds -------------------------------------------------------------------
def test_feed_registry_and_paths(tmp_path):
    assert [f.name for f in feeds_for_dataset("generated")] == ["generated_events", "generated_users"]
    assert [f.name for f in feeds_for_dataset("uci")] == ["uci_orders"]
    with pytest.raises(KeyError, match="movielens"):
        feeds_for_dataset("movielens")
    assert get_feed("uci_orders") is UCI_ORDERS
    day = date(2011, 1, 4)
    assert UCI_ORDERS.path_for(tmp_path, day) == tmp_path / "uci" / "by-day" / "2011-01-04.csv"
    assert GENERATED_EVENTS.relative_path(day) == "generated/events/2011-01-04.csv"
    assert GENERATED_USERS.path_for(tmp_path, day) == tmp_path / "generated" / "users.csv"
    assert UCI_ORDERS.on_missing == "skip" and GENERATED_EVENTS.on_missing == "fail"
    assert UCI_ORDERS.repeat_purchases_recommendable and not GENERATED_EVENTS.repeat_purchases_recommendable
    assert UCI_ORDERS.column_names == [
        "invoice_no",
        "stock_code",
        "description",
        "quantity",
        "invoice_date",
        "unit_price",
        "customer_id",
        "country",
    ]
    assert all(f.max_rejected_share == 0.01 for f in FEEDS.values())


def test_feed_rejects_bad_declarations():
    with pytest.raises(ValueError, match="mode"):
        Feed("x", "x", "x.csv", "x", "weekly", (Column("a"),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicate"):
        Feed("x", "x", "x.csv", "x", "snapshot", (Column("a"), Column("a")))


# --- good input --------------------------------------------------------------
def test_good_file_with_quoted_commas_crlf_bom_and_empty_optional_values():
    body = (
        b'e1,2024-03-01 10:00:00,u1,"item, with comma",view,,\r\n'
        b'e2,2024-03-01 10:00:01,u1,"say ""hi""",purchase,-3,1e2\r\n'
        b"e3,2024-03-01 10:00:02,u2,\xc3\xa9t\xc3\xa9,add_to_cart,+1,.5"  # no final newline
    )
    result = parse_feed_bytes(b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n") + body, GENERATED_EVENTS)
    assert (result.records_read, result.records_loaded, result.records_rejected) == (3, 3, 0)
    rows = result.good.to_pylist()
    assert [r["item_id"] for r in rows] == ["item, with comma", 'say "hi"', "été"]
    assert rows[0]["quantity"] is None and rows[0]["unit_price"] is None
    assert [r["_line_number"] for r in rows] == [2, 3, 4]
    assert rows[1]["quantity"] == "-3" and rows[1]["unit_price"] == "1e2"


def test_header_only_file_has_no_records():
    result = parse(b"")
    assert (result.records_read, result.records_loaded) == (0, 0)


def test_columns_are_matched_by_header_name_not_position():
    body = b"segment,user_id,signup_date,country\nvip,u1,2024-01-31,DE\n"
    rows = parse(body, GENERATED_USERS).good.to_pylist()
    assert rows == [
        {"user_id": "u1", "country": "DE", "segment": "vip", "signup_date": "2024-01-31", "_line_number": 2}
    ]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"user_id,country,segment\nu1,DE,vip\n", r"missing \['signup_date'\]"),
        (b"user_id,country,segment,signup_date,age\n", r"unexpected \['age'\]"),
        (b"user_id,country,segment,signup_date,user_id\n", "duplicated"),
    ],
)
def test_wrong_header_fails_the_whole_file(content, match):
    with pytest.raises(FeedSchemaError, match=match):
        parse_feed_bytes(content, GENERATED_USERS)


# --- malformed records ------------------------------------------------------------
def test_wrong_field_count():
    result = parse(GOOD + b"e2,2024-03-01 10:00:00,u1,i1,view,1,2.5,extra\n" + b"e3,u1\n")
    assert result.rejected_reasons == [
        "line 3: field count 8, expected 7",
        "line 4: field count 2, expected 7",
    ]
    assert result.rejected_raw[0] == "e2,2024-03-01 10:00:00,u1,i1,view,1,2.5,extra"
    assert result.records_loaded == 1


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("quantity", b"abc", "quantity 'abc' is not an integer"),
        ("quantity", b"1.5", "quantity '1.5' is not an integer"),
        ("quantity", b"99999999999999999999", "is not an integer"),
        ("unit_price", b"9,99", None),  # unquoted comma: a field-count problem
        ("unit_price", b"NaN", "unit_price 'NaN' is not a number"),
        ("unit_price", b"1.2.3", "unit_price '1.2.3' is not a number"),
        ("unit_price", b"1" * 1001, "is not a number"),  # longer than NUMERIC_MAX_CHARS
        ("unit_price", b"1e", "unit_price '1e' is not a number"),
        ("unit_price", b".", "unit_price '.' is not a number"),
        ("event_time", b"2024-02-30 10:00:00", "event_time '2024-02-30 10:00:00' is not a valid timestamp"),
        ("event_time", b"01/03/2024 10:00", "is not a valid timestamp"),
        ("event_time", b"2024-03-01", "is not a valid timestamp"),
        ("event_type", b"click", "event_type 'click' is not one of view, add_to_cart, purchase"),
    ],
)
def test_bad_values_are_rejected_with_column_and_value(field, value, reason):
    values = dict(zip(HEADER.strip().split(b","), GOOD.strip().split(b","), strict=True))
    values[field.encode()] = value
    result = parse(GOOD + b",".join(values.values()) + b"\n")
    got = only_reason(result)
    assert got.startswith("line 3: ")
    assert (reason or "field count 8, expected 7") in got
    assert result.records_loaded == 1


@pytest.mark.parametrize("value", [b"1", b"-2.", b"+.5", b"3.25e-2", b"1E+10", b"0" * 1000])
def test_numbers_postgres_accepts_are_loaded(value):
    values = dict(zip(HEADER.strip().split(b","), GOOD.strip().split(b","), strict=True))
    values[b"unit_price"] = value
    result = parse(b",".join(values.values()) + b"\n")
    assert result.records_rejected == 0, result.rejected_reasons
    assert result.good.column("unit_price").to_pylist() == [value.decode()]


def test_bad_date():
    body = b"user_id,country,segment,signup_date\nu1,DE,vip,2024-13-01\nu2,FR,new,2024-02-29\nu3,FR,new,\n"
    result = parse(body, GENERATED_USERS)
    assert only_reason(result) == "line 2: signup_date '2024-13-01' is not a valid date (%Y-%m-%d)"
    assert [r["user_id"] for r in result.good.to_pylist()] == ["u2", "u3"]


def test_empty_required_value_and_several_problems_in_one_record():
    result = parse(GOOD + b",2024-03-01 10:00:00,u1,,view,x,\n")
    assert only_reason(result) == (
        "line 3: event_id is required but empty; item_id is required but empty; quantity 'x' is not an integer"
    )


def test_whitespace_only_is_not_a_number():
    assert "is not an integer" in only_reason(parse(b"e1,2024-03-01 10:00:00,u1,i1,view, 1,\n"))


def test_bad_utf8_is_rejected_per_line_and_kept_as_escaped_text():
    body = GOOD + b"e2,2024-03-01 10:00:00,u1,caf\xe9,view,1,1\n" + GOOD + b"e4,\xff\xfe,u1,i1,view,1,1\n"
    result = parse(body)
    assert result.rejected_reasons == ["line 3: invalid UTF-8", "line 5: invalid UTF-8"]
    assert result.rejected_raw[0] == "e2,2024-03-01 10:00:00,u1,caf\\xe9,view,1,1"
    assert result.records_loaded == 2


def test_stray_quote_does_not_swallow_the_following_lines():
    body = (
        GOOD
        + b'e2,2024-03-01 10:00:00,u1,"broken,view,1,1\n'  # opens a quote that never closes on its line
        + b"e3,2024-03-01 10:00:00,u1,i3,view,1,1\n"
        + b'e4,2024-03-01 10:00:00,u1,i4",view,1,1\n'  # ... and a closing quote two lines later
        + b"e5,2024-03-01 10:00:00,u1,i5,view,1,1\n"
    )
    result = parse(body)
    assert result.rejected_line_numbers == [3, 5]
    assert all("double quote" in r for r in result.rejected_reasons)
    assert [r["event_id"] for r in result.good.to_pylist()] == ["e1", "e3", "e5"]


@pytest.mark.parametrize(
    "line",
    [
        b'e2,2024-03-01 10:00:00,u1,ab"c"d,view,1,1\n',  # quote inside an unquoted field
        b'e2,2024-03-01 10:00:00,u1,"ab"c,view,1,1\n',  # text after a closing quote
        b'e2,2024-03-01 10:00:00,u1,"a""b,view,1,1\n',  # odd number of quotes
    ],
)
def test_misplaced_quotes(line):
    assert "double quote" in only_reason(parse(GOOD + line))


def test_empty_line_nul_byte_and_bare_carriage_return_are_rejected():
    body = GOOD + b"\n" + b"e3,2024-03-01 10:00:00,u1,i\x001,view,1,1\n" + b"e4,2024-03-01 10:00:00,u1,i\r1,view,1,1\n"
    result = parse(body)
    assert result.rejected_reasons == [
        "line 3: empty record",
        "line 4: NUL byte in record",
        "line 5: carriage return inside record",
    ]
    assert "\x00" not in result.rejected_raw[1]


def test_invariant_on_a_dirty_file_matches_an_independent_line_count():
    bad = [b"e,2024-03-01 10:00:00,u,i,view,abc,1\n", b"x\n", b'"\n', b"\xff\n", b"\n"]
    lines = ([GOOD] * 50 + bad) * 7
    body = b"".join(lines)
    result = parse(body)
    assert result.records_read == body.count(b"\n") == 385
    assert result.records_rejected == 35 and result.records_loaded == 350
    assert result.rejected_share == pytest.approx(35 / 385)
    assert len(set(result.rejected_line_numbers) | set(result.good.column("_line_number").to_pylist())) == 385


def test_good_rows_match_the_csv_module_on_clean_input():
    body = b"".join(
        b'e%d,2024-03-01 10:00:%02d,u%d,"i, %d",view,%d,%d.5\n' % (i, i % 60, i % 7, i, i, i) for i in range(500)
    )
    result = parse(body)
    expected = list(csv.DictReader(io.StringIO((HEADER + body).decode())))
    assert result.records_loaded == len(expected) == 500
    got = result.good.drop_columns(["_line_number"]).to_pylist()
    assert got == expected


def test_without_rows_keeps_counts_and_rejects_and_drops_the_row_buffers():
    body = (GOOD * 2000) + b"x\n"
    result = parse(body)
    slim = result.without_rows()
    assert (slim.records_read, slim.records_loaded, slim.records_rejected) == (2001, 2000, 1)
    assert slim.rejected_table().equals(result.rejected_table())
    assert slim.good.num_rows == 0 and slim.good.schema == result.good.schema
    # what a worker process sends back: not the good rows' buffers (a zero-row slice would still carry them)
    assert len(pickle.dumps(slim)) < len(pickle.dumps(result)) / 10
