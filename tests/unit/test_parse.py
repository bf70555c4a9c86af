"""Unit tests of the strict landing-file parser (no services)."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import pickle
import random
import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from recomart.ingest import scan
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
from recomart.ingest.parse import (
    INTEGER_RE,
    NUMERIC_MAX_CHARS,
    NUMERIC_RE,
    FeedSchemaError,
    ParseResult,
    parse_feed_bytes,
)

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


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"user_id,country,segment,signup_date\ru1,DE,vip,2024-01-31\r", "CR only"),
        (b"user_id," + b"x" * 200_000 + b"\n", "not valid CSV"),  # over the csv module's field limit
    ],
)
def test_an_unreadable_header_is_a_schema_error_with_the_reason(content, match):
    with pytest.raises(FeedSchemaError, match=match):
        parse_feed_bytes(content, GENERATED_USERS)


def test_values_longer_than_the_feeds_maximum_are_rejected():
    """The limit counts the value's bytes as loaded: quotes undone, UTF-8 encoded."""
    short = dataclasses.replace(THREE, max_field_bytes=4)
    body = 'abcd,"a""b""",éé\nabcde,x,y\nx,y,ééé\n'.encode()
    result = parse_feed_bytes(b"a,b,c\n" + body, short)
    assert result.good.drop_columns(["_line_number"]).to_pylist() == [{"a": "abcd", "b": 'a"b"', "c": "éé"}]
    assert result.rejected_reasons == [
        "line 3: a is 5 bytes, over the feed's maximum of 4 bytes (max_field_bytes)",
        "line 4: c is 6 bytes, over the feed's maximum of 4 bytes (max_field_bytes)",
    ]
    assert parse_feed_bytes(b"a,b,c\n" + body, THREE).records_loaded == 3  # default: 2048 bytes
    with pytest.raises(ValueError, match="max_field_bytes"):
        dataclasses.replace(THREE, max_field_bytes=0)


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


# --- compiled kernels against their specifications -----------------------------
def _buffers(values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Arrow-style (offsets, data) of ``values``."""
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(v) for v in values])
    return offsets, np.frombuffer(b"".join(values), dtype=np.uint8)


def _number_corpus() -> list[str]:
    rng = random.Random(7)
    alphabet = ["0", "1", "9", "+", "-", ".", "e", "E", " ", "a", "\u0663", "\n", ","]
    corpus = [""] + ["".join(t) for n in (1, 2, 3) for t in itertools.product(alphabet, repeat=n)]
    weighted = list("0123456789" * 3 + "+-.eE x\u0663")
    corpus += ["".join(rng.choices(weighted, k=rng.randrange(13))) for _ in range(20000)]
    for sign, whole, frac, exp in itertools.product(
        ["", "+", "-", "--"],
        ["", "0", "7", "123", "1" * 18, "9" * 19],
        ["", ".", ".5", ".123", "..5"],
        ["", "e", "E5", "e+12", "e-123", "e1234", "e+", "ee1"],
    ):
        corpus.append(sign + whole + frac + exp)
    corpus += ["1" * 999 + ".", "1" * 1000, "1" * 1001, "1" * 996 + "e-12", "1" * 997 + "e12", "\u0663" * 5]
    return corpus


def test_integer_and_number_checks_accept_exactly_what_the_patterns_accept():
    corpus = _number_corpus()
    offsets, data = _buffers([s.encode() for s in corpus])
    integers, numbers = scan.integers_ok(offsets, data), scan.numbers_ok(offsets, data, NUMERIC_MAX_CHARS)
    for s, is_integer, is_number in zip(corpus, integers, numbers, strict=True):
        assert is_integer == (re.fullmatch(INTEGER_RE, s) is not None), s
        assert is_number == (re.fullmatch(NUMERIC_RE, s) is not None and len(s) <= NUMERIC_MAX_CHARS), s


def _utf8_corpus() -> list[bytes]:
    rng = random.Random(3)
    plain = [b for b in range(256) if b not in b'\n\r\x00",']  # bytes that are not structural
    edges = [0x00 + 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xF4, 0xFF]
    corpus = [bytes((a, b)) for a in plain for b in plain]
    corpus += [bytes((a, b, c)) for a in range(0x80, 0x100) for b in plain for c in edges]
    corpus += [bytes((a, b, c, d)) for a in range(0xF0, 0xF8) for b in edges for c in edges for d in edges]
    for _ in range(20000):  # mutated well-formed text
        text = bytearray(
            "".join(
                chr(
                    rng.choice(
                        [rng.randrange(0x80, 0x800), rng.randrange(0x800, 0xD800), rng.randrange(0xE000, 0x110000)]
                    )
                )
                for _ in range(3)
            ).encode()
        )
        text[rng.randrange(len(text))] = rng.choice(plain)
        corpus.append(bytes(text))
    return corpus


def test_utf8_check_accepts_exactly_what_python_decodes():
    corpus = _utf8_corpus()
    lines = [b"x" + seq for seq in corpus]
    problems = scan.scan_lines(np.frombuffer(b"\n".join(lines), dtype=np.uint8), 1)[2]
    assert len(problems) == len(lines)

    def decodes(line: bytes) -> bool:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    expected = [scan.OK if decodes(line) else scan.BAD_UTF8 for line in lines]
    assert problems.tolist() == expected


THREE = Feed("three", "t", "t.csv", "t", "snapshot", (Column("a"), Column("b"), Column("c")))
QUOTE_REASON = "unbalanced or misplaced double quote (a quoted field may not span lines)"


def _reference_problem(line: bytes) -> str | None:
    """The structural rules of the parser, written plainly (``line`` without its line break)."""
    if not line:
        return "empty record"
    if b"\x00" in line:
        return "NUL byte in record"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    if b"\r" in line:
        return "carriage return inside record"
    quotes, fields = 0, 1
    for k, c in enumerate(line):
        if c == ord('"'):
            if quotes % 2 == 0 and not (k == 0 or line[k - 1] in b',"'):
                return QUOTE_REASON
            if quotes % 2 == 1 and not (k == len(line) - 1 or line[k + 1] in b',"'):
                return QUOTE_REASON
            quotes += 1
        elif c == ord(",") and quotes % 2 == 0:
            fields += 1
    if quotes % 2:
        return QUOTE_REASON
    return None if fields == 3 else f"field count {fields}, expected 3"


@pytest.mark.parametrize("seed", range(4))
def test_structure_and_values_match_a_plain_reference_on_random_files(seed):
    rng = random.Random(seed)
    tokens = [b"a", b"bc", b"a,", b",", b'"', b'""', b'"x,y"', b"\r", b"\x00", b"\xc3\xa9", b"\xff", b"\xe2\x82", b" "]
    weights = [20, 20, 10, 30, 4, 2, 6, 1, 1, 3, 1, 1, 3]
    lines = [b"".join(rng.choices(tokens, weights, k=rng.randrange(9))) for _ in range(3000)]
    breaks = [rng.choice([b"\n", b"\n", b"\r\n"]) for _ in lines]
    data = b"a,b,c\n" + b"".join(line + br for line, br in zip(lines, breaks, strict=True))
    lines = [(line + br)[:-1].removesuffix(b"\r") for line, br in zip(lines, breaks, strict=True)]  # contents
    result = parse_feed_bytes(data, THREE)

    expected = {n: _reference_problem(line) for n, line in enumerate(lines, start=2)}
    bad = {n: reason for n, reason in expected.items() if reason}
    assert result.rejected_line_numbers == sorted(bad)
    assert result.rejected_reasons == [f"line {n}: {bad[n]}" for n in sorted(bad)]
    good = [n for n, reason in expected.items() if not reason]
    assert result.good.column("_line_number").to_pylist() == good
    rows = [next(csv.reader([lines[n - 2].decode()])) for n in good]
    assert result.good.drop_columns(["_line_number"]).to_pylist() == [
        {k: v or None for k, v in zip("abc", row, strict=True)} for row in rows
    ]
    assert [result.text[s:e] for s, e in result.good_spans] == [lines[n - 2] for n in good]


def test_dates_and_timestamps_are_valid_exactly_when_pandas_parses_them():
    rng = random.Random(11)
    odd = ["now", "today", "NaT", "nan", "2024-1-5", " 2024-01-05", "2024-01-05 ", "\u0662\u0660\u0662\u0664-01-05"]
    values = odd + [
        f"{rng.choice([1677, 1678, 1900, 2000, 2024, 2261, 2262, rng.randrange(10000)]):04d}"
        f"-{rng.randrange(14):02d}-{rng.randrange(33):02d}"
        for _ in range(3000)
    ]
    body = b"".join(b"u%d,DE,vip,%s\n" % (i, v.encode()) for i, v in enumerate(values))
    result = parse(b"user_id,country,segment,signup_date\n" + body, GENERATED_USERS)
    parsed = pd.to_datetime(pd.Series(values, dtype=object), format="%Y-%m-%d", errors="coerce")
    assert result.rejected_line_numbers == [i + 2 for i in np.flatnonzero(parsed.isna().to_numpy())]
    assert 0 < result.records_rejected < len(values)
    assert set(result.good.column("signup_date").to_pylist()) >= {"now", "2024-1-5"}


def test_fixed_width_datetime_check_is_a_subset_of_what_pandas_parses():
    rng = random.Random(5)
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y%m%d", "%d/%m/%Y %H:%M", "%m-%d", "%H:%M:%S"]:
        values = [
            fmt.replace("%Y", f"{rng.choice([1677, 1678, 1900, 2000, 2261, 2262, rng.randrange(10000)]):04d}")
            .replace("%m", f"{rng.randrange(14):02d}")
            .replace("%d", f"{rng.randrange(33):02d}")
            .replace("%H", f"{rng.randrange(26):02d}")
            .replace("%M", f"{rng.randrange(62):02d}")
            .replace("%S", f"{rng.randrange(62):02d}")
            for _ in range(3000)
        ]
        offsets, data = _buffers([v.encode() for v in values])
        fast = scan.datetimes_ok(offsets, data, scan.datetime_pattern(fmt))
        parsed = pd.to_datetime(pd.Series(values, dtype=object), format=fmt, errors="coerce").notna().to_numpy()
        assert fast.any() and not (fast & ~parsed).any(), fmt
    assert scan.datetime_pattern("%Y-%j") is None and scan.datetime_pattern("%Y %Y") is None


def test_good_values_are_the_bytes_loaded_even_with_a_byte_order_mark_on_the_first_record():
    body = b"user_id,country,segment,signup_date\n\xef\xbb\xbfu1,DE,vip,2024-01-31\nu2,FR,new,\n"
    result = parse(body, GENERATED_USERS)
    assert result.good.column("user_id").to_pylist() == ["\ufeffu1", "u2"]
    assert [result.text[s:e] for s, e in result.good_spans] == body.splitlines()[1:]


def test_records_straddling_scan_blocks():
    line = b'e1,2024-03-01 10:00:00,u1,\xc3\xa9t\xc3\xa9 "q",view,1,1\n'
    body = (
        (GOOD * 1000)
        + b"\n".join([b'e2,2024-03-01 10:00:00,u1,"\xe2\x82\xac,""x""",view,1,1'] * 500 + [line.strip()])
        + b"\n"
    )
    result = parse(body)
    assert result.records_read == 1501
    assert result.rejected_line_numbers == [1502]  # quote inside an unquoted field
    assert set(result.good.column("item_id").to_pylist()) == {"i1", '\u20ac,"x"'}
