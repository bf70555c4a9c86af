"""The raw COPY payload: each good record's own bytes, its line number and the per-load constants."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from recomart.ingest.payload import csv_fields, records_with_metadata


def test_records_keep_their_bytes_and_get_line_numbers_and_constants():
    text = b'h1,h2\r\na,"b, ""c"""\r\n\r\n"",x\r\nlast,1'
    spans = np.array([[7, 19], [23, 27], [29, 35]])  # the three records without their line breaks
    tail = csv_fields(["2031-01-01", 'run,"7"', "feed/2031-01-01.csv"])

    out = bytes(records_with_metadata(text, spans, np.array([2, 4, 1234567890]), tail))

    rows = list(csv.reader(io.StringIO(out.decode())))
    assert rows == [
        ["a", 'b, "c"', "2", "2031-01-01", 'run,"7"', "feed/2031-01-01.csv"],
        ["", "x", "4", "2031-01-01", 'run,"7"', "feed/2031-01-01.csv"],
        ["last", "1", "1234567890", "2031-01-01", 'run,"7"', "feed/2031-01-01.csv"],
    ]
    assert out.count(b"\n") == 3 and b"\r" not in out


def test_no_records_give_an_empty_payload():
    assert bytes(records_with_metadata(b"", np.zeros((0, 2), dtype=np.int64), np.zeros(0), b",x\n")) == b""


def test_spans_and_line_numbers_are_checked_before_writing():
    spans = np.array([[0, 1]])
    for bad in ([[0, 2]], [[1, 0]], [[-1, 1]]):
        with pytest.raises(ValueError, match="within the text"):
            records_with_metadata(b"a", np.array(bad), np.array([1]), b"\n")
    with pytest.raises(ValueError, match="1 records but 2 line numbers"):
        records_with_metadata(b"a", spans, np.array([1, 2]), b"\n")
    with pytest.raises(ValueError, match="int32"):
        records_with_metadata(b"a", spans, np.array([-1]), b"\n")


def test_csv_fields_quotes_only_what_needs_quoting():
    assert csv_fields(["2031-01-01", "abc"]) == b",2031-01-01,abc\n"
    assert csv_fields(["a,b", 'q"']) == b',"a,b","q"""\n'
