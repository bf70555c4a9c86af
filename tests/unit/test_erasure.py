"""Unit tests of the erasure list's matching: canonical user ids, record parsing, leaving records out."""

from __future__ import annotations

import pytest

from recomart.ingest.erasure import (
    KEY_FILE,
    Suppression,
    canonical_user_id,
    leave_out_erased,
    new_erasure_key,
    read_erasure_key,
    record_user_id,
    user_id_forms,
    user_key,
)
from recomart.ingest.feeds import GENERATED_EVENTS, UCI_ORDERS
from recomart.ingest.parse import parse_feed_bytes

KEY = bytes(range(32))
HEADER = "event_id,event_time,user_id,item_id,event_type,quantity,unit_price\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("17850.0", "17850"), (" 17850 ", "17850"), ("1.785E4", "17850"), ("17850.5", "17851"), ("-2.5", "-3")]
    + [("", None), ("   ", None), ("abc", None), ("NaN", None), ("1e30", None), (None, None)],
)
def test_decimal_user_ids_follow_dbt_staging_cast(raw, expected) -> None:
    """``nullif(trim(v), '')::numeric::bigint::text``: rounded half away from zero, uncastable -> None."""
    assert canonical_user_id(UCI_ORDERS, raw) == expected


def test_text_user_ids_are_taken_as_written_and_forms_cover_every_feed() -> None:
    assert canonical_user_id(GENERATED_EVENTS, " C00080") == " C00080"
    assert user_id_forms("17850.0") == {"17850.0", "17850"}
    assert user_id_forms("C00080") == {"C00080"}


def test_a_record_is_attributed_by_its_user_field_never_by_substring() -> None:
    columns = tuple(GENERATED_EVENTS.column_names)
    assert record_user_id(GENERATED_EVENTS, columns, "e1,2026-01-01 00:00:00,C00080,P1,teleport,1,2") == "C00080"
    assert record_user_id(GENERATED_EVENTS, columns, "e1,2026-01-01 00:00:00,C000809,P1,view,1,2") == "C000809"
    assert record_user_id(GENERATED_EVENTS, columns, 'e1,"C00080') is None  # no user field at all
    swapped = ("user_id", *[c for c in columns if c != "user_id"])  # a file whose header starts with user_id
    assert record_user_id(GENERATED_EVENTS, swapped, "C00081,e1,2026-01-01 00:00:00,C00080,view,1,2") == "C00081"


def test_leave_out_erased_drops_good_and_rejected_records_and_counts_them() -> None:
    lines = [
        "e1,2026-01-01 00:00:00,C00080,P1,view,1,2.0",
        "e2,2026-01-01 00:00:01,C000809,P1,view,1,2.0",
        "e3,2026-01-01 00:00:02,C00080,P2,teleport,1,2.0",  # rejected, of the erased user
        "e4,2026-01-01 00:00:03,C00081,P2,teleport,1,2.0",  # rejected, of another user
        "e5,2026-01-01 00:00:04,C00080,P3,purchase,1,2.0",
    ]
    parsed = parse_feed_bytes((HEADER + "\n".join(lines) + "\n").encode(), GENERATED_EVENTS)
    suppression = Suppression(KEY, frozenset({user_key(KEY, "C00080")}))
    kept = leave_out_erased(parsed, GENERATED_EVENTS, suppression)
    assert (kept.records_read, kept.records_loaded, kept.records_rejected, kept.records_erased) == (5, 1, 1, 3)
    assert kept.good.column("user_id").to_pylist() == ["C000809"]
    assert [kept.text[a:b].decode() for a, b in kept.good_spans] == [lines[1]]
    assert kept.rejected_raw == [lines[3]]
    assert leave_out_erased(parsed, GENERATED_EVENTS, Suppression()) is parsed


def test_the_erasure_key_is_read_only_once_it_exists(tmp_path) -> None:
    assert read_erasure_key(tmp_path) is None
    (tmp_path / KEY_FILE).write_text(new_erasure_key() + "\n")
    key = read_erasure_key(tmp_path)
    assert key is not None and len(key) == 32
