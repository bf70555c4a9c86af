"""Compiled kernels of the strict CSV parser (:mod:`recomart.ingest.parse`), each one pass, GIL released.

* :func:`scan_lines` finds every physical line, its fields and its first structural problem;
* :func:`split_fields` copies the fields of the good lines into Arrow string buffers;
* :func:`integers_ok`, :func:`numbers_ok` and :func:`datetimes_ok` check the values in such buffers.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import numba
import numpy as np

LF, CR, QUOTE, COMMA, NUL = 0x0A, 0x0D, 0x22, 0x2C, 0x00
PLUS, MINUS, ZERO = 0x2B, 0x2D, 0x30

# Line problems in priority order (a line gets the first that applies).
OK, EMPTY, NUL_BYTE, BAD_UTF8, STRAY_CR, BAD_QUOTE, FIELD_COUNT = range(7)

BLOCK: Final = 1 << 14  # bytes whose events are gathered at once
_EVENT = np.zeros(256, np.int64)  # the bytes scan_lines looks at: all the others are plain content
_EVENT[[LF, CR, QUOTE, COMMA, NUL]] = 1
_EVENT[0x80:] = 1


def _numeric_automaton() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(byte class, transitions, accepting states) of ``[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]{1,3})?``.

    Classes: 0 digit, 1 sign, 2 dot, 3 exponent mark, 4 anything else.  State 11 is dead.
    """
    byte_class = np.full(256, 4, np.int64)
    byte_class[ZERO : ZERO + 10] = 0
    byte_class[[PLUS, MINUS]] = 1
    byte_class[ord(".")] = 2
    byte_class[[ord("e"), ord("E")]] = 3
    edges = {  # state: {class: next state}
        0: {0: 2, 1: 1, 2: 4},  # start
        1: {0: 2, 2: 4},  # sign
        2: {0: 2, 2: 3, 3: 6},  # integer digits
        3: {0: 5, 3: 6},  # "1."
        4: {0: 5},  # "." without integer digits
        5: {0: 5, 3: 6},  # fraction digits
        6: {0: 8, 1: 7},  # "e"
        7: {0: 8},  # "e+"
        8: {0: 9},  # exponent digits
        9: {0: 10},
    }
    transitions = np.full((12, 5), 11, np.int64)
    for state, out in edges.items():
        for cls, target in out.items():
            transitions[state, cls] = target
    accepting = np.zeros(12, np.bool_)
    accepting[[2, 3, 5, 8, 9, 10]] = True
    return byte_class, transitions, accepting


_NUMBER_CLASS, _NUMBER_NEXT, _NUMBER_ACCEPTS = _numeric_automaton()

# Date/time fields of a format pattern (see :func:`datetime_pattern`) and their value when absent.
_DIRECTIVES: Final = {"Y": (0, 4), "m": (1, 2), "d": (2, 2), "H": (3, 2), "M": (4, 2), "S": (5, 2)}
_ABSENT = np.array((1900, 1, 1, 0, 0, 0), np.int64)  # what strptime assumes
_SAFE_YEARS: Final = (1678, 2261)  # within pandas' nanosecond range whatever the day
_MONTH_DAYS = np.array((31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31), np.int64)


@numba.njit(inline="always")
def _utf8_length(buf, p):  # pragma: no cover - jit
    """Length of the well-formed UTF-8 sequence at ``buf[p]`` (a byte >= 0x80), else 0.

    Exactly Python's strict decoder: no overlong forms, no surrogates, nothing above U+10FFFF.
    """
    b = buf[p]
    if 0xC2 <= b <= 0xDF:
        n, lo, hi = 2, 0x80, 0xBF
    elif b == 0xE0:
        n, lo, hi = 3, 0xA0, 0xBF
    elif b == 0xED:
        n, lo, hi = 3, 0x80, 0x9F
    elif 0xE1 <= b <= 0xEF:
        n, lo, hi = 3, 0x80, 0xBF
    elif b == 0xF0:
        n, lo, hi = 4, 0x90, 0xBF
    elif 0xF1 <= b <= 0xF3:
        n, lo, hi = 4, 0x80, 0xBF
    elif b == 0xF4:
        n, lo, hi = 4, 0x80, 0x8F
    else:
        return 0
    if p + n > len(buf) or not lo <= buf[p + 1] <= hi:
        return 0
    for k in range(2, n):
        if not 0x80 <= buf[p + k] <= 0xBF:
            return 0
    return n


@numba.njit(inline="always")
def _quote_placed(buf, p, opening):  # pragma: no cover - jit
    """RFC 4180: a quote opens a field (or follows a quote), or closes one (or precedes a quote)."""
    if opening:
        return p == 0 or buf[p - 1] == LF or buf[p - 1] == COMMA or buf[p - 1] == QUOTE
    if p + 1 == len(buf):
        return True
    if buf[p + 1] == CR:  # ends the line only right before its LF (or the end of the file)
        return p + 2 == len(buf) or buf[p + 2] == LF
    return buf[p + 1] == LF or buf[p + 1] == COMMA or buf[p + 1] == QUOTE


@numba.njit(inline="always")
def _gather_events(buf, block, events):  # pragma: no cover - jit
    """Write the positions of the events in ``buf[block:block + BLOCK]`` to ``events``; their number.

    The end of a file without a final LF counts as its LF.
    """
    count = 0
    for p in range(block, min(block + BLOCK, len(buf))):
        events[count] = p
        count += _EVENT[buf[p]]
    if block + BLOCK > len(buf) and len(buf) > 0 and buf[-1] != LF:
        events[count] = len(buf)
        count += 1
    return count


@numba.njit(inline="always")
def _with_room(a, rows):  # pragma: no cover - jit
    """``a``, or a copy with room for at least ``rows`` rows if it has fewer."""
    if a.shape[0] >= rows:
        return a
    b = np.empty((max(rows, 2 * a.shape[0]),) + a.shape[1:], a.dtype)
    b[: a.shape[0]] = a
    return b


@numba.njit(cache=True, nogil=True)
def scan_lines(buf, n_fields):  # pragma: no cover - jit
    """Index and check the lines of ``buf`` (split at LF; a CR right before it is no content).

    Returns ``starts`` and ``ends`` (content, end exclusive), ``problems`` (codes above; ``FIELD_COUNT``
    when a line has no other problem but not ``n_fields`` fields), ``fields`` (count per line) and
    ``bounds`` (``bounds[i, j]:bounds[i, j + 1] - 1`` is field ``j`` of line ``i``; set on good lines).

    Only the bytes that matter (separators, quotes, line breaks, NUL, non-ASCII) are visited one by one:
    each block of bytes is first reduced to the positions of those events, without branching.
    """
    rows = len(buf) // 64 + 1  # room for lines, grown as needed
    starts, ends = np.empty(rows, np.int64), np.empty(rows, np.int64)
    problems, fields = np.empty(rows, np.int8), np.empty(rows, np.int64)
    bounds = np.empty((rows, n_fields + 1), np.int64)
    events = np.empty(BLOCK + 1, np.int64)
    line = start = quotes = commas = 0
    nul = utf8 = cr = quote = False
    skip_to = 0  # end of the last multi-byte character
    for block in range(0, len(buf) + 1, BLOCK):
        count = _gather_events(buf, block, events)
        room = line + count  # each line of the block ends with an event
        starts, ends, problems = _with_room(starts, room), _with_room(ends, room), _with_room(problems, room)
        fields, bounds = _with_room(fields, room), _with_room(bounds, room)
        for k in range(count):
            p = events[k]
            b = buf[p] if p < len(buf) else LF
            if p < skip_to:
                continue
            if b == COMMA:
                if quotes % 2 == 0:
                    commas += 1
                    if commas <= n_fields:
                        bounds[line, commas] = p + 1
            elif b == QUOTE:
                quote |= not _quote_placed(buf, p, quotes % 2 == 0)
                quotes += 1
            elif b == LF:
                end = p - 1 if p > start and buf[p - 1] == CR else p
                if end == start:
                    problem = EMPTY
                elif nul:
                    problem = NUL_BYTE
                elif utf8:
                    problem = BAD_UTF8
                elif cr:
                    problem = STRAY_CR
                elif quote or quotes % 2 == 1:
                    problem = BAD_QUOTE
                elif commas + 1 != n_fields:
                    problem = FIELD_COUNT
                else:
                    problem = OK
                    bounds[line, 0], bounds[line, n_fields] = start, end + 1
                starts[line], ends[line], problems[line], fields[line] = start, end, problem, commas + 1
                line, start, quotes, commas = line + 1, p + 1, 0, 0
                nul = utf8 = cr = quote = False
            elif b == CR:
                cr |= p + 1 < len(buf) and buf[p + 1] != LF
            elif b == NUL:
                nul = True
            else:
                n = _utf8_length(buf, p)
                utf8 |= n == 0
                skip_to = p + n
    return starts[:line], ends[:line], problems[:line], fields[:line], bounds[:line]


@numba.njit(cache=True, nogil=True)
def split_fields(buf, bounds, rows):  # pragma: no cover - jit
    """The fields of the (good) lines ``rows``, unquoted, as one data buffer and Arrow offsets.

    Column ``j`` is ``data[bases[j]:bases[j + 1]]``; its value ``r`` is ``offsets[j, r]:offsets[j, r + 1]``
    within it (doubled quotes take one byte, so a column may end in unused bytes); ``present[j, r]``
    tells whether that value is not empty.
    """
    n_fields = bounds.shape[1] - 1
    bases = np.zeros(n_fields + 1, np.int64)
    for r in rows:
        for j in range(n_fields):
            bases[j + 1] += bounds[r, j + 1] - bounds[r, j] - 1
    if bases.max() > np.iinfo(np.int32).max:
        raise ValueError("a column holds more than 2 GiB in one file (Arrow string offsets are int32)")
    bases = np.cumsum(bases)
    data = np.empty(bases[-1], np.uint8)
    offsets = np.zeros((n_fields, len(rows) + 1), np.int32)
    present = np.empty((n_fields, len(rows)), np.bool_)
    cursor = bases[:-1].copy()
    for k in range(len(rows)):
        for j in range(n_fields):
            p, end = bounds[rows[k], j], bounds[rows[k], j + 1] - 1
            q = cursor[j]
            if p < end and buf[p] == QUOTE:  # quoted: inner quotes come in pairs that stand for one
                p, end = p + 1, end - 1
                while p < end:
                    data[q] = buf[p]
                    p += 2 if buf[p] == QUOTE else 1
                    q += 1
            else:
                while p < end:
                    data[q] = buf[p]
                    p += 1
                    q += 1
            present[j, k] = q > cursor[j]
            offsets[j, k + 1] = q - bases[j]
            cursor[j] = q
    return data, bases, offsets, present


@numba.njit(cache=True, nogil=True)
def integers_ok(offsets, data):  # pragma: no cover - jit
    """Which values fully match ``[+-]?[0-9]{1,18}`` (fits a bigint)."""
    ok = np.zeros(len(offsets) - 1, np.bool_)
    for i in range(len(ok)):
        start, end = offsets[i], offsets[i + 1]
        if start < end and (data[start] == PLUS or data[start] == MINUS):
            start += 1
        good = 1 <= end - start <= 18
        for p in range(start, end):
            good &= ZERO <= data[p] <= ZERO + 9
        ok[i] = good
    return ok


@numba.njit(cache=True, nogil=True)
def numbers_ok(offsets, data, max_chars):  # pragma: no cover - jit
    """Which values of at most ``max_chars`` bytes fully match the numeric pattern of ``_numeric_automaton``."""
    ok = np.zeros(len(offsets) - 1, np.bool_)
    for i in range(len(ok)):
        state = 0
        for p in range(offsets[i], offsets[i + 1]):
            state = _NUMBER_NEXT[state, _NUMBER_CLASS[data[p]]]
        ok[i] = _NUMBER_ACCEPTS[state] and offsets[i + 1] - offsets[i] <= max_chars
    return ok


@cache
def datetime_pattern(fmt: str) -> np.ndarray | None:
    """``fmt`` as a fixed-width pattern for :func:`datetimes_ok` (read-only), or None if it is not that simple.

    Each byte of a value is a literal (its code, >= 0) or a digit of field ``-1 - code``; only
    ``%Y %m %d %H %M %S`` (each at most once) and ASCII literals qualify.
    """
    parts = fmt.split("%")
    codes = list(parts[0].encode())
    seen = set()
    for part in parts[1:]:
        if part[:1] not in _DIRECTIVES or part[0] in seen:
            return None
        seen.add(part[0])
        field, width = _DIRECTIVES[part[0]]
        codes += [-1 - field] * width + list(part[1:].encode())
    if not fmt.isascii():
        return None
    pattern = np.array(codes, np.int64)
    pattern.flags.writeable = False
    return pattern


@numba.njit(cache=True, nogil=True)
def datetimes_ok(offsets, data, pattern):  # pragma: no cover - jit
    """Which values certainly parse: exactly ``pattern`` (zero-padded), a real date, a safe year."""
    ok = np.zeros(len(offsets) - 1, np.bool_)
    absent = _ABSENT.copy()
    for code in pattern:
        if code < 0:
            absent[-1 - code] = 0
    v = np.empty(6, np.int64)
    for i in range(len(ok)):
        start = offsets[i]
        if offsets[i + 1] - start != len(pattern):
            continue
        v[:] = absent
        good = True
        for k in range(len(pattern)):
            b, code = np.int64(data[start + k]), pattern[k]
            if code >= 0:
                good &= b == code
            else:
                good &= ZERO <= b <= ZERO + 9
                v[-1 - code] = v[-1 - code] * 10 + b - ZERO
        year, month, day = v[0], v[1], v[2]
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        good &= _SAFE_YEARS[0] <= year <= _SAFE_YEARS[1] and 1 <= month <= 12 and day >= 1
        ok[i] = good and day <= _MONTH_DAYS[month - 1] + (month == 2 and leap) and v[3] < 24 and v[4] < 60 and v[5] < 60
    return ok
