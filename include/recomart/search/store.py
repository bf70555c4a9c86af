"""``reco.item_embeddings``: one vector per product, with the model and the hash of the embedded text.

Vectors are stored as ``bytea`` holding the float32 values little-endian (``dim`` x 4 bytes, checked
by a constraint) rather than ``real[]``: the bytes round-trip exactly, load into numpy with one
``frombuffer`` of a server-side ``string_agg`` (no per-element parsing of 384 numbers per row), and
take no array header.  The server has no pgvector, so no SQL operator would use a ``real[]`` either.
The warehouse migrations (:mod:`recomart.warehouse`, 0006) create the table; the vectors are read back
by :func:`recomart.marts.load_item_vectors` (the searcher, and the nightly job's "looks like" neighbours).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg

from recomart import marts

TABLE = "reco.item_embeddings"


def read_products(conn: psycopg.Connection) -> pd.DataFrame:
    """``item_id, title, description, category, brand, price`` of ``marts.dim_products`` (text; missing:
    NaN), sorted by item id."""
    return marts.read_frame(conn, marts.PRODUCTS_SQL).sort_values("item_id", ignore_index=True)


def read_state(conn: psycopg.Connection) -> pd.DataFrame:
    """``item_id, model, text_hash`` of every stored vector (what the incremental refresh compares)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT item_id, model, text_hash FROM {TABLE}")
        rows = cur.fetchall()
    return pd.DataFrame(rows, columns=["item_id", "model", "text_hash"], dtype=object)


def write_vectors(
    conn: psycopg.Connection, item_ids: list[str], hashes: list[str], vectors: np.ndarray, model: str
) -> None:
    """Upsert the vectors (rows of ``vectors``, float32) through a binary COPY into a temporary table.

    Runs inside the caller's transaction; ``embedded_at`` is the transaction's time.
    """
    dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    payload = np.ascontiguousarray(vectors, dtype="<f4")
    conn.execute("CREATE TEMP TABLE item_embeddings_new (item_id text, text_hash text, vector bytea) ON COMMIT DROP")
    with conn.cursor() as cur:
        with cur.copy("COPY item_embeddings_new (item_id, text_hash, vector) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "bytea"])
            for item_id, text_hash, row in zip(item_ids, hashes, payload, strict=True):
                copy.write_row((item_id, text_hash, row.tobytes()))
        cur.execute(
            f"""
            INSERT INTO {TABLE} AS e (item_id, model, text_hash, dim, vector, embedded_at)
            SELECT item_id, %(model)s, text_hash, %(dim)s, vector, now() FROM item_embeddings_new
            ON CONFLICT (item_id) DO UPDATE
            SET model = excluded.model, text_hash = excluded.text_hash, dim = excluded.dim,
                vector = excluded.vector, embedded_at = excluded.embedded_at
            """,
            {"model": model, "dim": dim},
        )


def delete_items(conn: psycopg.Connection, item_ids: list[str]) -> int:
    """Remove the vectors of ``item_ids`` (products gone from ``marts.dim_products``); returns the count."""
    if not item_ids:
        return 0
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {TABLE} WHERE item_id = ANY(%s)", (item_ids,))
        return cur.rowcount
