"""Strict parsing of a landing CSV file into good rows and quarantined records.

Postgres 15's ``COPY`` aborts a whole file on its first bad row, so every record is
checked here before it reaches Postgres:

1. *Structure* (one compiled pass over the raw bytes, :func:`recomart.ingest.scan.scan_lines`):
   every physical line after the header is one record.  A record is rejected when it is
   empty, holds a NUL byte, is not valid UTF-8, holds a carriage return before its line end,
   has an unbalanced or misplaced double quote (RFC 4180: a quote opens a field, closes it,
   or is doubled inside a quoted field), or has the wrong number of fields.  Because a quoted
   field may never span a line break, a stray quote cannot swallow the following lines.
2. *Values* (compiled checks over the fields of the structurally good lines, which another
   compiled pass copies into Arrow string buffers): required values present, no value longer
   than the feed's ``max_field_bytes``, integers, numbers, dates and timestamps parseable,
   enumerations respected.  Dates and timestamps a
   strict fixed-width check cannot confirm are left to pandas, so the feed's format decides.

A file fails as a whole (:class:`FeedSchemaError`) when its header is missing, unreadable or
does not match the feed, for instance when its line breaks are CR only.

Only the rejected records are handled one by one (to build their reasons).  The invariant
``records_read == records_loaded + records_rejected + records_erased`` always holds (records of erased
users are left out by the loader, :mod:`recomart.ingest.erasure`; the parser itself erases none).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recomart.errors import BadInputError
from recomart.ingest import scan
from recomart.ingest.feeds import Column, Feed

UTF8_BOM: Final = b"\xef\xbb\xbf"

# What integer and numeric values must match (the compiled checks in ``scan`` accept exactly these).
INTEGER_RE: Final = r"^[+-]?[0-9]{1,18}$"  # fits bigint
NUMERIC_RE: Final = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$"
NUMERIC_MAX_CHARS: Final = 1000  # far below Postgres numeric limits, so COPY never fails on a long number
LINE_NUMBER: Final = "_line_number"

STRUCTURE_REASONS: Final = {
    scan.EMPTY: "empty record",
    scan.NUL_BYTE: "NUL byte in record",
    scan.BAD_UTF8: "invalid UTF-8",
    scan.STRAY_CR: "carriage return inside record",
    scan.BAD_QUOTE: "unbalanced or misplaced double quote (a quoted field may not span lines)",
}


class FeedSchemaError(BadInputError, ValueError):
    """The file as a whole does not match its feed (no header, missing or unexpected columns)."""


@dataclass(frozen=True)
class ParseResult:
    """Good rows (strings, validated; ``None`` for empty values) and rejected records of one file."""

    records_read: int
    records_loaded: int
    good: pa.Table  # the feed's columns (string) + ``_line_number`` (int32); empty after ``without_rows``
    rejected_line_numbers: list[int]
    rejected_raw: list[str]
    rejected_reasons: list[str]
    columns: tuple[str, ...] = ()  # the feed's column names in the file's order
    text: bytes = b""  # the file without its byte-order mark; the good records are slices of it
    good_spans: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    """``[start, end)`` byte offsets in ``text`` of each good record (without its line break), in file order."""
    records_erased: int = 0  # records of erased users left out (neither loaded nor quarantined)

    def without_rows(self) -> ParseResult:
        """The same counts and rejected records without the good rows and text (once their COPY payload is built)."""
        return replace(self, good=self.good.schema.empty_table(), text=b"", good_spans=self.good_spans[:0])

    @property
    def records_rejected(self) -> int:
        return len(self.rejected_line_numbers)

    @property
    def rejected_share(self) -> float:
        return self.records_rejected / self.records_read if self.records_read else 0.0

    def rejected_table(self) -> pa.Table:
        return pa.table(
            {
                "line_number": pa.array(self.rejected_line_numbers, pa.int32()),
                "raw_record": pa.array(self.rejected_raw, pa.string()),
                "reason": pa.array(self.rejected_reasons, pa.string()),
            }
        )


# --- structure -------------------------------------------------------------
@dataclass(frozen=True)
class _Lines:
    """The physical lines of a file (line ``i`` is file line ``i + 1``), as found by ``scan_lines``."""

    starts: np.ndarray  # first byte of each line
    ends: np.ndarray  # end of each line without its LF / CRLF (exclusive)
    problems: np.ndarray  # first structural problem of each line (``scan`` codes, 0: none)
    fields: np.ndarray  # number of fields of each line
    bounds: np.ndarray  # field ``j`` of good line ``i`` is ``bounds[i, j]:bounds[i, j + 1] - 1``

    def raw(self, data: bytes, i: int) -> str:
        text = data[self.starts[i] : self.ends[i]].decode("utf-8", errors="backslashreplace")
        return text.replace("\x00", "\\x00")  # Postgres text cannot hold NUL


def _structure_problems(lines: _Lines, n_fields: int) -> dict[int, str]:
    """The first structural problem of each bad record (the header, line 0, is checked apart)."""
    problems = {}
    for i in np.flatnonzero(lines.problems[1:]) + 1:
        code = int(lines.problems[i])
        if code == scan.FIELD_COUNT:
            problems[int(i)] = f"field count {int(lines.fields[i])}, expected {n_fields}"
        else:
            problems[int(i)] = STRUCTURE_REASONS[code]
    return problems


def _read_header(data: bytes, feed: Feed) -> list[str]:
    if not data:
        raise FeedSchemaError(f"feed {feed.name}: file is empty (no header line)")
    end = data.find(b"\n")
    raw = data if end < 0 else data[:end]
    raw = raw.removesuffix(b"\r")
    if b"\r" in raw:
        raise FeedSchemaError(
            f"feed {feed.name}: the header line holds a carriage return not followed by a line feed;"
            " the file's line breaks look like CR only (classic Mac OS), expected LF or CRLF"
        )
    try:
        header = [h.strip() for h in next(csv.reader([raw.decode("utf-8")]), [])]
    except UnicodeDecodeError as exc:
        raise FeedSchemaError(f"feed {feed.name}: header line is not valid UTF-8") from exc
    except csv.Error as exc:
        raise FeedSchemaError(f"feed {feed.name}: header line is not valid CSV ({exc})") from exc
    expected = feed.headers
    missing = [h for h in expected if h not in header]
    extra = [h for h in header if h not in expected]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if missing or extra or duplicated:
        raise FeedSchemaError(
            f"feed {feed.name}: header {header} does not match the expected columns {expected}"
            f" (missing {missing}, unexpected {extra}, duplicated {duplicated})"
        )
    return header


@dataclass(frozen=True)
class _Strings:
    """One column of the good records as Arrow string buffers; an empty value is null."""

    offsets: np.ndarray  # int32, value ``r`` is ``data[offsets[r]:offsets[r + 1]]``
    data: np.ndarray  # uint8
    present: np.ndarray  # bool, the value is not empty

    @cached_property
    def array(self) -> pa.Array:
        nulls = len(self.present) - int(np.count_nonzero(self.present))
        bitmap = pa.py_buffer(np.packbits(self.present, bitorder="little")) if nulls else None
        return pa.StringArray.from_buffers(
            len(self.present), pa.py_buffer(self.offsets), pa.py_buffer(self.data), bitmap, nulls
        )


def _split(data: bytes, lines: _Lines, rows: np.ndarray) -> list[_Strings]:
    """The columns (in file order) of the good records ``rows``, fields unquoted."""
    buf, bases, offsets, present = scan.split_fields(np.frombuffer(data, np.uint8), lines.bounds, rows)
    return [_Strings(offsets[j], buf[bases[j] : bases[j + 1]], present[j]) for j in range(len(offsets))]


# --- values ----------------------------------------------------------------
def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _datetimes_ok(values: _Strings, fmt: str) -> np.ndarray:
    """Which values parse with the strptime format ``fmt`` (as pandas reads it)."""
    pattern = scan.datetime_pattern(fmt)
    if pattern is None:
        ok = np.zeros(len(values.present), dtype=bool)
    else:
        ok = scan.datetimes_ok(values.offsets, values.data, pattern)
    doubtful = np.flatnonzero(values.present & ~ok)
    if len(doubtful):
        # Each distinct value is parsed once (a file repeats its odd values too), then mapped back.
        encoded = pc.dictionary_encode(values.array.take(doubtful))
        parsed = pd.to_datetime(encoded.dictionary.to_pandas(), format=fmt, errors="coerce")
        ok[doubtful] = parsed.notna().to_numpy()[encoded.indices.to_numpy()]
    return ok


def _invalid_values(col: Column, values: _Strings, feed: Feed) -> tuple[np.ndarray, str] | None:
    """Mask of present-but-invalid values of ``col`` and the phrase describing them."""
    if col.type == "integer":
        ok, what = scan.integers_ok(values.offsets, values.data), "is not an integer"
    elif col.type == "numeric":
        ok, what = scan.numbers_ok(values.offsets, values.data, NUMERIC_MAX_CHARS), "is not a number"
    elif col.type in ("date", "timestamp"):
        fmt = feed.date_format if col.type == "date" else feed.timestamp_format
        ok, what = _datetimes_ok(values, fmt), f"is not a valid {col.type} ({fmt})"
    elif col.choices:
        ok = pc.is_in(values.array, value_set=pa.array(col.choices, pa.string())).to_numpy(zero_copy_only=False)
        what = f"is not one of {', '.join(col.choices)}"
    else:
        return None
    return values.present & ~ok, what


@dataclass(frozen=True)
class _Check:
    """One value check of a column: which good records fail it and how to say why."""

    column: str
    failing: np.ndarray  # bool, one per structurally good record
    kind: Literal["required", "too_long", "invalid"]
    phrase: str = ""  # "invalid": what the value is not; "too_long": the maximum

    def reason(self, value: str | None) -> str:
        if self.kind == "required":
            return f"{self.column} is required but empty"
        if self.kind == "too_long":
            assert value is not None
            return f"{self.column} is {len(value.encode())} bytes, over the feed's maximum of {self.phrase}"
        assert value is not None
        return f"{self.column} {_show(value)} {self.phrase}"


def _value_checks(feed: Feed, columns: list[_Strings]) -> list[_Check]:
    """The checks that apply to each column (``columns`` in the feed's order)."""
    checks = []
    for col, values in zip(feed.columns, columns, strict=True):
        if col.required:
            checks.append(_Check(col.name, ~values.present, "required"))
        too_long = np.diff(values.offsets) > feed.max_field_bytes
        if too_long.any():
            checks.append(_Check(col.name, too_long, "too_long", f"{feed.max_field_bytes} bytes (max_field_bytes)"))
        invalid = _invalid_values(col, values, feed)
        if invalid is not None:
            failing, phrase = invalid
            checks.append(_Check(col.name, failing, "invalid", phrase))
    return checks


def _value_reason(table: pa.Table, checks: list[_Check], row: int) -> str:
    """Why the good record ``row`` of ``table`` fails its value checks (``; ``-separated)."""
    return "; ".join(c.reason(table.column(c.column)[row].as_py()) for c in checks if c.failing[row])


def parse_feed_bytes(data: bytes, feed: Feed) -> ParseResult:
    """Split ``data`` (a whole landing file) into validated rows and rejected records."""
    data = data.removeprefix(UTF8_BOM)
    header = _read_header(data, feed)
    lines = _Lines(*scan.scan_lines(np.frombuffer(data, np.uint8), len(header)))
    problems = _structure_problems(lines, len(header))
    good_lines = np.flatnonzero(lines.problems[1:] == scan.OK) + 1
    by_header = dict(zip(header, _split(data, lines, good_lines), strict=True))
    columns = [by_header[c.header] for c in feed.columns]
    table = pa.Table.from_arrays([c.array for c in columns], names=feed.column_names)

    checks = _value_checks(feed, columns)
    bad_rows = np.zeros(len(good_lines), dtype=bool)
    for check in checks:
        bad_rows |= check.failing
    for row in np.flatnonzero(bad_rows):  # rejected rows only
        problems[int(good_lines[row])] = _value_reason(table, checks, int(row))
    if bad_rows.any():
        table = table.filter(pa.array(~bad_rows))

    loaded_lines = good_lines[~bad_rows]
    order = sorted(problems)
    by_name = {c.header: c.name for c in feed.columns}
    return ParseResult(
        records_read=len(lines.starts) - 1,
        records_loaded=table.num_rows,
        good=table.append_column(LINE_NUMBER, pa.array((loaded_lines + 1).astype(np.int32))),
        rejected_line_numbers=[i + 1 for i in order],
        rejected_raw=[lines.raw(data, i) for i in order],
        rejected_reasons=[f"line {i + 1}: {problems[i]}" for i in order],
        columns=tuple(by_name[h] for h in header),
        text=data,
        good_spans=np.stack((lines.starts[loaded_lines], lines.ends[loaded_lines]), axis=1),
    )
