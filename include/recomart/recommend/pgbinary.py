"""Vectorised encoder of Postgres' binary COPY format for DataFrames (no per-row Python).

Supported column types: ``smallint``, ``integer``, ``bigint``, ``real``, ``double precision`` and
``text``; NaN / None / NA become NULL.  Text comes from Arrow's string buffers, numbers as their bit
patterns, and a compiled kernel writes the tuples (big-endian) in one pass, so encoding costs about
as much as copying the bytes and the server parses no text numbers.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"

_FIXED = {"smallint": ">i2", "integer": ">i4", "bigint": ">i8", "real": ">f4", "double precision": ">f8"}


def base_type(ddl: str) -> str | None:
    """The supported type a column DDL starts with (``"real NOT NULL"`` → ``"real"``), else None."""
    low = ddl.strip().lower()
    for name in (*_FIXED, "text"):
        if low == name or low.startswith(name + " "):
            return name
    return None


def supports(types: list[str | None]) -> bool:
    return all(t is not None for t in types)


def _fixed(series: pd.Series, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(lengths int64[n] with -1 for NULL, the values' bit patterns as int64[n]) for a fixed-width type."""
    null = series.isna().to_numpy()
    target = np.dtype(dtype).newbyteorder("=")
    if target.kind == "f":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan).astype(target)
    elif null.any():
        values = series.to_numpy(dtype=np.float64, na_value=0).astype(np.int64).astype(target)
    else:
        values = series.to_numpy().astype(target)
    bits = values.view(f"i{target.itemsize}").astype(np.int64)
    lengths = np.where(null, -1, target.itemsize).astype(np.int64)
    return lengths, bits


def _text(series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lengths int64[n] with -1 for NULL, utf-8 data uint8[...], start offset of each value).

    Strings go through Arrow's C++ conversion in one call; a column holding other objects is
    converted with ``str`` first.
    """
    import pyarrow as pa

    try:
        arr = pa.array(series, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = pa.array(series.map(str, na_action="ignore"), type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=len(arr) + 1 + arr.offset)[arr.offset :]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    null = arr.is_null().to_numpy(zero_copy_only=False)
    lengths = np.where(null, -1, np.diff(offsets))
    return lengths.astype(np.int64), data, offsets[:-1].copy()


@numba.njit(cache=True, nogil=True)
def _pack(out, offset, kinds, widths, slots, lengths, words, text_data, text_start):  # pragma: no cover
    """Write the tuples sequentially into ``out`` from ``offset`` (compiled: one pass over the bytes).

    Fixed-width values are written big-endian from their bit patterns (``words[slot]``), text is
    copied from ``text_data`` at ``text_start[slot]``.
    """
    ncols, n = lengths.shape
    p = offset
    for r in range(n):
        out[p] = (ncols >> 8) & 0xFF
        out[p + 1] = ncols & 0xFF
        p += 2
        for c in range(ncols):
            length = lengths[c, r]
            v = length if length >= 0 else 0xFFFFFFFF
            out[p] = (v >> 24) & 0xFF
            out[p + 1] = (v >> 16) & 0xFF
            out[p + 2] = (v >> 8) & 0xFF
            out[p + 3] = v & 0xFF
            p += 4
            if length <= 0:
                continue
            if kinds[c] == 0:
                w = words[slots[c], r]
                for j in range(widths[c]):
                    out[p + j] = (w >> (8 * (widths[c] - 1 - j))) & 0xFF
            else:
                src = text_start[slots[c], r]
                out[p : p + length] = text_data[src : src + length]
            p += length
    return p


def encode(frame: pd.DataFrame, types: list[str], *, header: bool, trailer: bool) -> memoryview:
    """Binary COPY bytes of ``frame`` (columns in order, one type per column)."""
    n, ncols = len(frame), len(types)
    lengths = np.zeros((ncols, n), dtype=np.int64)
    kinds = np.zeros(ncols, dtype=np.int64)
    widths = np.zeros(ncols, dtype=np.int64)
    slots = np.zeros(ncols, dtype=np.int64)
    words, text_parts, text_starts = [], [], []
    text_total = 0
    for c, ((_, series), typ) in enumerate(zip(frame.items(), types, strict=True)):
        if typ == "text":
            lens, data, starts = _text(series)
            kinds[c], slots[c] = 1, len(text_parts)
            text_parts.append(data)
            text_starts.append(starts + text_total)
            text_total += len(data)
        else:
            lens, bits = _fixed(series, _FIXED[typ])
            widths[c], slots[c] = np.dtype(_FIXED[typ]).itemsize, len(words)
            words.append(bits)
        lengths[c] = lens
    word_matrix = np.vstack(words) if words else np.zeros((1, n), dtype=np.int64)
    text_data = np.concatenate(text_parts) if text_parts else np.zeros(1, dtype=np.uint8)
    text_start = np.vstack(text_starts) if text_starts else np.zeros((1, n), dtype=np.int64)
    lead = len(HEADER) if header else 0
    total = lead + 2 * n + 4 * n * ncols + int(np.maximum(lengths, 0).sum()) + (len(TRAILER) if trailer else 0)
    buf = np.empty(total, dtype=np.uint8)
    if header:
        buf[:lead] = np.frombuffer(HEADER, dtype=np.uint8)
    end = _pack(buf, lead, kinds, widths, slots, lengths, word_matrix, text_data, text_start)
    if trailer:
        buf[end:] = np.frombuffer(TRAILER, dtype=np.uint8)
    return memoryview(buf)
