"""The binary COPY encoder, checked byte for byte against a hand-written encoding."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd

from recomart.recommend import pgbinary


def _reference(frame: pd.DataFrame, types: list[str]) -> bytes:
    fmt = {"smallint": ">h", "integer": ">i", "bigint": ">q", "real": ">f", "double precision": ">d"}
    out = bytearray(pgbinary.HEADER)
    for row in frame.itertuples(index=False):
        out += struct.pack(">h", len(types))
        for value, typ in zip(row, types, strict=True):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                out += struct.pack(">i", -1)
            elif typ == "text":
                data = str(value).encode()
                out += struct.pack(">i", len(data)) + data
            else:
                data = struct.pack(fmt[typ], value)
                out += struct.pack(">i", len(data)) + data
    return bytes(out + pgbinary.TRAILER)


def test_encoding_matches_the_format_byte_for_byte() -> None:
    frame = pd.DataFrame(
        {
            "g": [7, 7, 7],
            "u": ["u1", "ü-ß", None],
            "r": np.array([1, 2, 3], dtype=np.int16),
            "s": np.array([0.5, np.nan, -1.25], dtype=np.float32),
            "d": [1e300, 2.0, np.nan],
            "e": ["", "x", "hybrid"],
        }
    )
    types = ["bigint", "text", "smallint", "real", "double precision", "text"]
    got = bytes(pgbinary.encode(frame, types, header=True, trailer=True))
    assert got == _reference(frame, types)
    # chunks concatenate to the whole
    a = bytes(pgbinary.encode(frame.iloc[:2], types, header=True, trailer=False))
    b = bytes(pgbinary.encode(frame.iloc[2:], types, header=False, trailer=True))
    assert a + b == got


def test_base_types() -> None:
    assert pgbinary.base_type("real NOT NULL") == "real"
    assert pgbinary.base_type("double precision") == "double precision"
    assert pgbinary.base_type("text NOT NULL") == "text"
    assert pgbinary.base_type("timestamptz") is None
    assert not pgbinary.supports([pgbinary.base_type("jsonb"), "text"])


def test_text_columns_of_other_objects_and_arrow_strings() -> None:
    frame = pd.DataFrame(
        {
            "mixed": pd.Series([12, "a", None, 3.5], dtype=object),  # non-str objects go through str()
            "arrow": pd.Series(["x", None, "ÿz", ""], dtype="string[pyarrow]"),
            "n": pd.array([1, None, 3, 4], dtype="Int64"),
        }
    )
    types = ["text", "text", "integer"]
    expected = pd.DataFrame(
        {"mixed": ["12", "a", None, "3.5"], "arrow": ["x", None, "ÿz", ""], "n": [1, None, 3, 4]}, dtype=object
    )
    assert bytes(pgbinary.encode(frame, types, header=True, trailer=True)) == _reference(expected, types)
