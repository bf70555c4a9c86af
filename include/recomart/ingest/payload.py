"""The COPY payload of a file's good records: their original bytes plus the load metadata.

The strict parser has already proven each good record to be one well-formed CSV line with the
feed's fields (:mod:`recomart.ingest.parse`), so the loader does not re-encode values: it sends each
record's own bytes, followed by ``,<line number>`` and the per-load constants, and lets ``COPY ...
(format csv)`` parse them exactly as ``psql \\copy`` would parse the file.  A compiled kernel writes
the payload in one pass.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numba
import numpy as np

MAX_LINE_NUMBER_DIGITS = 10  # int32 line numbers


def csv_fields(values: Sequence[str]) -> bytes:
    """``values`` as the tail of a CSV record: ``,v1,v2…\\n``, each quoted when it needs to be."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["", *values])
    return out.getvalue().encode("utf-8")


@numba.njit(cache=True, nogil=True)
def _write(out, text, spans, line_numbers, suffix):  # pragma: no cover - compiled
    """Write ``text[start:end] + "," + line_number + suffix`` for each record; return the bytes written."""
    p = 0
    digits = np.empty(MAX_LINE_NUMBER_DIGITS, dtype=np.uint8)
    for r in range(spans.shape[0]):
        start, end = spans[r, 0], spans[r, 1]
        out[p : p + end - start] = text[start:end]
        p += end - start
        out[p] = 0x2C  # ","
        p += 1
        v, k = line_numbers[r], 0
        while True:
            digits[k] = 0x30 + v % 10
            v //= 10
            k += 1
            if v == 0:
                break
        for j in range(k):
            out[p + j] = digits[k - 1 - j]
        p += k
        out[p : p + len(suffix)] = suffix
        p += len(suffix)
    return p


def records_with_metadata(text: bytes, spans: np.ndarray, line_numbers: np.ndarray, tail: bytes) -> memoryview:
    """The records ``text[start:end]`` of ``spans``, each followed by ``,<line number>`` and ``tail``.

    ``tail`` comes from :func:`csv_fields` (starts with a comma, ends with the line break).
    """
    n = len(spans)
    if len(line_numbers) != n:
        raise ValueError(f"{n} records but {len(line_numbers)} line numbers")
    if n and not ((spans[:, 0] >= 0) & (spans[:, 0] <= spans[:, 1]) & (spans[:, 1] <= len(text))).all():
        raise ValueError("record spans must lie within the text, start <= end")
    if n and (int(line_numbers.min()) < 0 or int(line_numbers.max()) >= 10**MAX_LINE_NUMBER_DIGITS):
        raise ValueError("line numbers must be non-negative int32 values")
    body = int((spans[:, 1] - spans[:, 0]).sum()) if n else 0
    out = np.empty(body + n * (1 + MAX_LINE_NUMBER_DIGITS + len(tail)), dtype=np.uint8)
    written = _write(
        out,
        np.frombuffer(text, dtype=np.uint8),
        np.ascontiguousarray(spans, dtype=np.int64),
        np.ascontiguousarray(line_numbers, dtype=np.int64),
        np.frombuffer(tail, dtype=np.uint8),
    )
    return memoryview(out)[:written]
