"""Incremental refresh of ``reco.item_embeddings`` from ``marts.dim_products``.

Only new products, products whose text changed (another sha256 of :func:`product_texts`) and
products embedded by another model are embedded; vectors of products gone from the mart are
deleted.  Work is committed in chunks, so an interrupted run keeps what it finished and the next run
continues from there.  Call :func:`embed_products` after dbt has built the marts (the ``transform``
task body, or the start of ``recommend``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import psycopg

from recomart.search import store
from recomart.search.minilm import SearchExtraMissing
from recomart.search.text import product_texts, text_hashes
from recomart.warehouse.migrate import migrate_connection

log = logging.getLogger(__name__)


class Encoder(Protocol):
    """What the refresh needs of an embedding model."""

    name: str
    inference: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class RefreshPlan:
    """What one refresh does: ``todo`` (item_id, text, text_hash) to embed, ``removed`` item ids."""

    todo: pd.DataFrame
    removed: list[str]
    new: int
    changed: int
    other_model: int
    unchanged: int


def plan_refresh(current: pd.DataFrame, stored: pd.DataFrame, model: str) -> RefreshPlan:
    """Compare the products' texts (``current``: item_id, text, text_hash) with the stored vectors
    (``stored``: item_id, model, text_hash) of ``model``."""
    merged = current.merge(stored, on="item_id", how="left", suffixes=("", "_stored"))
    new = merged["model"].isna()
    other_model = ~new & merged["model"].ne(model)
    changed = ~new & ~other_model & merged["text_hash"].ne(merged["text_hash_stored"])
    todo = new | other_model | changed
    removed = sorted(set(stored["item_id"]) - set(current["item_id"]))
    return RefreshPlan(
        todo=merged.loc[todo, ["item_id", "text", "text_hash"]].reset_index(drop=True),
        removed=removed,
        new=int(new.sum()),
        changed=int(changed.sum()),
        other_model=int(other_model.sum()),
        unchanged=int((~todo).sum()),
    )


def current_texts(products: pd.DataFrame) -> pd.DataFrame:
    """``item_id, text, text_hash`` for the products (columns of ``marts.dim_products``)."""
    texts = product_texts(products)
    return pd.DataFrame({"item_id": products["item_id"], "text": texts, "text_hash": text_hashes(texts)})


def _embed_chunk(conn: psycopg.Connection, chunk: pd.DataFrame, encoder: Encoder) -> int:
    """Embed the distinct texts of ``chunk`` once each and upsert every row; returns the distinct count."""
    codes, uniques = pd.factorize(chunk["text"])
    vectors = encoder.encode(list(uniques))[codes]
    with conn.transaction():
        store.write_vectors(conn, chunk["item_id"].tolist(), chunk["text_hash"].tolist(), vectors, encoder.name)
    return len(uniques)


def embed_products(dsn: str, *, encoder: Encoder | None = None, chunk_size: int = 2048) -> dict[str, Any]:
    """Bring ``reco.item_embeddings`` up to date with ``marts.dim_products``; returns a summary dict.

    ``encoder`` defaults to the torch-free all-MiniLM-L6-v2 (:class:`~recomart.search.minilm.MiniLMEncoder`).
    Without the search extra installed the summary says ``status: skipped`` and why (nothing fails, so a
    deployment without the extra keeps its pipeline green).  Summary keys: ``status, model, inference,
    products, embedded, new, changed, other_model, unchanged, removed, distinct_texts, embed_s,
    embed_cpu_s (CPU seconds of this process's threads while embedding: on a shared machine, what the
    wall time would shrink to with the cores to itself, times their count), items_per_s, seconds``.
    """
    started = time.perf_counter()
    if encoder is None:
        try:
            from recomart.search.minilm import MiniLMEncoder

            encoder = MiniLMEncoder()
        except SearchExtraMissing as exc:
            log.warning("item embeddings skipped: %s", exc)
            return {"status": "skipped", "reason": str(exc), "seconds": round(time.perf_counter() - started, 3)}
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate_connection(conn)  # creates reco.item_embeddings
        plan = plan_refresh(current_texts(store.read_products(conn)), store.read_state(conn), encoder.name)
        embed_started, cpu_started = time.perf_counter(), time.process_time()
        distinct = 0
        for start in range(0, len(plan.todo), chunk_size):
            distinct += _embed_chunk(conn, plan.todo.iloc[start : start + chunk_size], encoder)
        embed_s, embed_cpu_s = time.perf_counter() - embed_started, time.process_time() - cpu_started
        with conn.transaction():
            removed = store.delete_items(conn, plan.removed)
            if len(plan.todo) or removed:
                conn.execute(f"ANALYZE {store.TABLE}")
    summary = {
        "status": "ok",
        "model": encoder.name,
        "inference": encoder.inference,
        "products": len(plan.todo) + plan.unchanged,
        "embedded": len(plan.todo),
        "new": plan.new,
        "changed": plan.changed,
        "other_model": plan.other_model,
        "unchanged": plan.unchanged,
        "removed": removed,
        "distinct_texts": distinct,
        "embed_s": round(embed_s, 3),
        "embed_cpu_s": round(embed_cpu_s, 3),
        "items_per_s": round(len(plan.todo) / embed_s, 1) if len(plan.todo) and embed_s > 0 else None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    log.info("item embeddings refreshed: %s", summary)
    return summary
