"""COPY of a parsed file into ``raw.<table>`` (the records' own bytes) and ``quarantine.<table>``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from recomart.ingest.feeds import Feed
from recomart.ingest.parse import LINE_NUMBER, ParseResult
from recomart.ingest.payload import csv_fields, records_with_metadata

RAW_PAYLOAD_META_COLUMNS = ("_line_number", "_logical_date", "_load_id", "_source_file")  # see raw_payload
COPY_BATCH_ROWS = 200_000


def _constant(value: str, n: int) -> pa.Array:
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int32)))


def _encode_csv(data: pa.Table) -> list[pa.Buffer]:
    """``data`` as COPY CSV (no header) in batches of ``COPY_BATCH_ROWS`` rows."""
    options = pacsv.WriteOptions(include_header=False)
    chunks = []
    for batch in data.to_batches(max_chunksize=COPY_BATCH_ROWS):
        sink = pa.BufferOutputStream()
        pacsv.write_csv(batch, sink, write_options=options)
        chunks.append(sink.getvalue())
    return chunks


def _copy_table(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    columns: Sequence[str],
    chunks: Sequence[memoryview | pa.Buffer],
    force_null: Sequence[str] = (),
) -> None:
    """COPY CSV ``chunks`` of ``columns`` into ``schema.table``; quoted empty values of ``force_null`` are NULL."""
    options = sql.SQL("format csv")
    if force_null:
        names = sql.SQL(", ").join(map(sql.Identifier, force_null))
        options = sql.SQL("format csv, force_null ({})").format(names)
    stmt = sql.SQL("copy {}.{} ({}) from stdin ({})").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)), options
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for chunk in chunks:
            copy.write(memoryview(chunk))


def raw_payload(parsed: ParseResult, logical_date: date, load_id: str, source: str) -> memoryview:
    """The COPY CSV payload of the good records: their own bytes, ``_line_number`` and the per-load constants."""
    lines = parsed.good.column(LINE_NUMBER).to_numpy()
    tail = csv_fields([logical_date.isoformat(), load_id, source])
    return records_with_metadata(parsed.text, parsed.good_spans, lines, tail)


def _quarantine_rows(parsed: ParseResult, logical_date: date, load_id: str, source: str) -> pa.Table:
    """The rejected records of ``parsed`` as rows of ``quarantine.<table>``."""
    rejected = parsed.rejected_table()
    n = rejected.num_rows
    return pa.table(
        {
            "load_id": _constant(load_id, n),
            "source_file": _constant(source, n),
            "line_number": rejected.column("line_number"),
            "raw_record": rejected.column("raw_record"),
            "reason": rejected.column("reason"),
            "_logical_date": _constant(logical_date.isoformat(), n),
        }
    )


def copy_raw(conn: psycopg.Connection, feed: Feed, parsed: ParseResult, payload: memoryview) -> None:
    """COPY ``payload`` (from :func:`raw_payload`: the good records of ``parsed``) into ``raw.<table>``."""
    columns = [*parsed.columns, *RAW_PAYLOAD_META_COLUMNS]
    _copy_table(conn, "raw", feed.table, columns, [payload], force_null=parsed.columns)


def copy_quarantine(
    conn: psycopg.Connection, feed: Feed, parsed: ParseResult, logical_date: date, load_id: str, source: str
) -> None:
    """COPY the rejected records of ``parsed`` (with their reasons) into ``quarantine.<table>``."""
    rejected = _quarantine_rows(parsed, logical_date, load_id, source)
    _copy_table(conn, "quarantine", feed.table, rejected.column_names, _encode_csv(rejected))
