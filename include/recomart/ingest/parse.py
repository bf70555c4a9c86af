"""Strict, vectorised parsing of a landing CSV file into good rows and quarantined records.

Postgres 15's ``COPY`` aborts a whole file on its first bad row, so every record is
checked here before it reaches Postgres:

1. *Structure* (numpy over the raw bytes): every physical line after the header is one
   record.  A record is rejected when it is empty, holds a NUL byte, is not valid UTF-8,
   holds a carriage return before its line end, has an unbalanced or misplaced double quote
   (RFC 4180: a quote opens a field, closes it, or is doubled inside a quoted field), or
   has the wrong number of fields.  Because a quoted field may never span a line break,
   a stray quote cannot swallow the following lines.
2. *Values* (pyarrow/pandas over the structurally good lines): required values present,
   integers, numbers, dates and timestamps parseable, enumerations respected.

Only the rejected records are handled one by one (to build their reasons).  The invariant
``records_read == records_loaded + records_rejected`` always holds.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recomart.ingest.feeds import Column, Feed

UTF8_BOM: Final = b"\xef\xbb\xbf"
LF, CR, QUOTE, COMMA, NUL = 0x0A, 0x0D, 0x22, 0x2C, 0x00

INTEGER_RE: Final = r"^[+-]?[0-9]{1,18}$"  # fits bigint
# Unbounded repeats: pyarrow recompiles a pattern with large counted repeats ({1,1000}) on every call,
# which made numeric checks ~4x slower; the length bound is checked separately (NUMERIC_MAX_CHARS).
NUMERIC_RE: Final = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$"
NUMERIC_MAX_CHARS: Final = 1000  # far below Postgres numeric limits, so COPY never fails on a long number
LINE_NUMBER: Final = "_line_number"


class FeedSchemaError(ValueError):
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

    def without_rows(self) -> ParseResult:
        """The same counts and rejected records without the good rows (cheap to send to another process)."""
        return replace(self, good=self.good.schema.empty_table())

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
    """Byte offsets of the physical lines of a file (line ``i`` is file line ``i + 1``)."""

    buf: np.ndarray  # uint8 view of the file
    newlines: np.ndarray  # positions of every LF
    starts: np.ndarray  # first byte of each line
    content_ends: np.ndarray  # end of each line without its LF / CRLF (exclusive)
    spans: np.ndarray  # bytes of each line including its line break

    @property
    def count(self) -> int:
        return len(self.starts)

    def line_of(self, positions: np.ndarray) -> np.ndarray:
        """Index of the line holding each byte position (an LF belongs to the line it ends)."""
        return np.searchsorted(self.newlines, positions, side="left")

    def per_line(self, positions: np.ndarray, line_ids: np.ndarray | None = None) -> np.ndarray:
        """How many of ``positions`` fall on each line (pass ``line_ids`` if already known)."""
        ids = self.line_of(positions) if line_ids is None else line_ids
        return np.bincount(ids, minlength=self.count + 1)[: self.count]

    def raw(self, data: bytes, i: int) -> str:
        text = data[self.starts[i] : self.content_ends[i]].decode("utf-8", errors="backslashreplace")
        return text.replace("\x00", "\\x00")  # Postgres text cannot hold NUL


def _index_lines(data: bytes) -> _Lines:
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == LF)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buf)]))
    if ends[-1] == starts[-1]:  # nothing after the last LF (or an empty file): not a record
        starts, ends = starts[:-1], ends[:-1]
    spans = np.concatenate((starts[1:], [len(buf)])) - starts
    has_cr = np.zeros(len(ends), dtype=bool)
    nonempty = ends > starts
    has_cr[nonempty] = buf[ends[nonempty] - 1] == CR
    return _Lines(buf, newlines, starts, ends - has_cr, spans)


def _bad_utf8_lines(data: bytes, lines: _Lines) -> np.ndarray:
    """Indices of lines that are not valid UTF-8 (one decode pass; a retry per bad line only)."""
    view, pos, bad = memoryview(data), 0, []
    while pos < len(data):
        try:
            str(view[pos:], "utf-8")
            break
        except UnicodeDecodeError as exc:
            line = int(lines.line_of(np.array([pos + exc.start]))[0])
            bad.append(line)
            pos = int(lines.newlines[line]) + 1 if line < len(lines.newlines) else len(data)
    return np.array(bad, dtype=np.int64)


def _structure_problems(data: bytes, lines: _Lines, n_fields: int) -> tuple[np.ndarray, dict[int, str]]:
    """Field count per line and the first structural problem of each bad line."""
    buf, n = lines.buf, lines.count
    empty = lines.content_ends == lines.starts
    nul = lines.per_line(np.flatnonzero(buf == NUL)) > 0
    bad_utf8 = np.zeros(n, dtype=bool)
    bad_utf8[_bad_utf8_lines(data, lines)] = True

    cr_pos = np.flatnonzero(buf == CR)
    cr_line = lines.line_of(cr_pos)
    inner = cr_pos < lines.content_ends[np.minimum(cr_line, max(n - 1, 0))] if n else cr_pos < 0
    stray_cr = lines.per_line(cr_pos[inner], cr_line[inner]) > 0

    # Quotes: qpos[i] has i quotes before it; quotes before a line start come from searchsorted.
    qpos = np.flatnonzero(buf == QUOTE)
    q_line = lines.line_of(qpos)
    q_before_line = np.searchsorted(qpos, lines.starts)  # quotes before each line start
    quotes_per_line = np.diff(np.concatenate((q_before_line, [len(qpos)])))
    # quotes after a line's content (impossible: LF/CR are not quotes) need no correction
    k = np.arange(len(qpos)) - q_before_line[q_line]  # ordinal of each quote within its line
    opening = k % 2 == 0
    at_start = qpos == lines.starts[q_line]
    at_end = qpos + 1 == lines.content_ends[q_line]
    prev_byte = buf[np.maximum(qpos - 1, 0)]
    next_byte = buf[np.minimum(qpos + 1, len(buf) - 1)]
    prev_ok = at_start | (prev_byte == COMMA) | (prev_byte == QUOTE)
    next_ok = at_end | (next_byte == COMMA) | (next_byte == QUOTE)
    misplaced = np.where(opening, ~prev_ok, ~next_ok)
    bad_quote = (lines.per_line(qpos[misplaced], q_line[misplaced]) > 0) | (quotes_per_line % 2 == 1)

    # Separators: commas with an even number of quotes before them on their line.
    cpos = np.flatnonzero(buf == COMMA)
    c_line = lines.line_of(cpos)
    inside = (np.searchsorted(qpos, cpos) - q_before_line[c_line]) % 2 == 1
    fields = lines.per_line(cpos[~inside], c_line[~inside]) + 1

    checks: list[tuple[np.ndarray, str]] = [
        (empty, "empty record"),
        (nul, "NUL byte in record"),
        (bad_utf8, "invalid UTF-8"),
        (stray_cr, "carriage return inside record"),
        (bad_quote, "unbalanced or misplaced double quote (a quoted field may not span lines)"),
    ]
    problems: dict[int, str] = {}
    structural = np.zeros(n, dtype=bool)
    for mask, reason in checks:
        for i in np.flatnonzero(mask & ~structural):
            problems[int(i)] = reason
        structural |= mask
    for i in np.flatnonzero((fields != n_fields) & ~structural):
        problems[int(i)] = f"field count {int(fields[i])}, expected {n_fields}"
    return fields, problems


def _read_header(data: bytes, lines: _Lines, feed: Feed) -> list[str]:
    if lines.count == 0:
        raise FeedSchemaError(f"feed {feed.name}: file is empty (no header line)")
    raw = data[lines.starts[0] : lines.content_ends[0]]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeedSchemaError(f"feed {feed.name}: header line is not valid UTF-8") from exc
    header = [h.strip() for h in next(csv.reader([text]), [])]
    missing = [h for h in feed.headers if h not in header]
    extra = [h for h in header if h not in feed.headers]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if missing or extra or duplicated:
        raise FeedSchemaError(
            f"feed {feed.name}: header {header} does not match the expected columns {feed.headers}"
            f" (missing {missing}, unexpected {extra}, duplicated {duplicated})"
        )
    return header


def _good_lines_table(data: bytes, lines: _Lines, keep: np.ndarray, header: list[str]) -> pa.Table:
    """Parse the structurally good lines with pyarrow, every column as a nullable string."""
    n_keep = int(keep.sum())
    if n_keep == 0:
        return pa.table({h: pa.array([], pa.string()) for h in header})
    if n_keep == lines.count - 1 and not keep[0]:  # every record is good: no copy of the bytes
        good = memoryview(data)[int(lines.starts[1]) :]
    else:
        good = lines.buf[np.repeat(keep, lines.spans)].tobytes()
    table = pacsv.read_csv(
        pa.py_buffer(good),
        read_options=pacsv.ReadOptions(column_names=header, block_size=16 << 20),
        parse_options=pacsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    if table.num_rows != n_keep:  # the structural checks and pyarrow disagree: never load silently
        raise RuntimeError(f"parser mismatch: {n_keep} good lines but pyarrow read {table.num_rows} rows")
    return table


# --- values ----------------------------------------------------------------
def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _invalid_values(col: Column, values: pa.ChunkedArray, feed: Feed) -> tuple[np.ndarray, str] | None:
    """Mask of present-but-invalid values of ``col`` and the phrase describing them."""
    present = pc.is_valid(values)
    if col.type == "integer":
        ok, what = pc.match_substring_regex(values, INTEGER_RE), "is not an integer"
    elif col.type == "numeric":
        short = pc.less_equal(pc.utf8_length(values), NUMERIC_MAX_CHARS)
        ok, what = pc.and_(pc.match_substring_regex(values, NUMERIC_RE), short), "is not a number"
    elif col.type in ("date", "timestamp"):
        fmt = feed.date_format if col.type == "date" else feed.timestamp_format
        # Each distinct value is parsed once (a day's file repeats its timestamps a lot), then mapped back.
        encoded = pc.dictionary_encode(values.combine_chunks())
        parsed = pd.to_datetime(encoded.dictionary.to_pandas(), format=fmt, errors="coerce")
        ok = pc.take(pa.array(parsed.notna().to_numpy()), encoded.indices)
        what = f"is not a valid {col.type} ({fmt})"
    elif col.choices:
        ok = pc.is_in(values, value_set=pa.array(col.choices, pa.string()))
        what = f"is not one of {', '.join(col.choices)}"
    else:
        return None
    bad = pc.and_(present, pc.invert(pc.fill_null(ok, False)))
    return np.asarray(bad.to_numpy(zero_copy_only=False), dtype=bool), what


def parse_feed_bytes(data: bytes, feed: Feed) -> ParseResult:
    """Split ``data`` (a whole landing file) into validated rows and rejected records."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    lines = _index_lines(data)
    header = _read_header(data, lines, feed)
    _, problems = _structure_problems(data, lines, len(header))
    problems.pop(0, None)  # the header was checked above
    keep = np.ones(lines.count, dtype=bool)
    keep[0] = False
    keep[list(problems)] = False
    table = _good_lines_table(data, lines, keep, header)
    good_lines = np.flatnonzero(keep)

    rename = {c.header: c.name for c in feed.columns}
    table = table.select(feed.headers).rename_columns([rename[h] for h in feed.headers])

    bad_rows = np.zeros(table.num_rows, dtype=bool)
    value_checks: list[tuple[str, np.ndarray, str]] = []
    for col in feed.columns:
        values = table.column(col.name)
        if col.required:
            missing = np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=bool)
            value_checks.append((col.name, missing, "required"))
            bad_rows |= missing
        invalid = _invalid_values(col, values, feed)
        if invalid is not None:
            value_checks.append((col.name, invalid[0], invalid[1]))
            bad_rows |= invalid[0]

    for row in np.flatnonzero(bad_rows):  # rejected rows only
        reasons = []
        for name, mask, what in value_checks:
            if mask[row]:
                if what == "required":
                    reasons.append(f"{name} is required but empty")
                else:
                    reasons.append(f"{name} {_show(table.column(name)[int(row)].as_py())} {what}")
        problems[int(good_lines[row])] = "; ".join(reasons)

    good = table.filter(pa.array(~bad_rows)).append_column(LINE_NUMBER, pa.array(good_lines[~bad_rows] + 1, pa.int32()))
    order = sorted(problems)
    return ParseResult(
        records_read=lines.count - 1,
        records_loaded=good.num_rows,
        good=good,
        rejected_line_numbers=[i + 1 for i in order],
        rejected_raw=[lines.raw(data, i) for i in order],
        rejected_reasons=[f"line {i + 1}: {problems[i]}" for i in order],
    )
