"""The benchmark catalogues' item vectors: all-MiniLM-L6-v2 embeddings of each product's text, the very
text and encoder the pipeline stores in ``reco.item_embeddings`` (:mod:`recomart.search`).

Embedding MovieLens' ~9.7k films and UCI's ~4k products takes minutes on the reference machine, so the
vectors are kept in ``~/.cache/recomart/benchmark-vectors/<dataset>-<digest>.npz``, the digest being that
of the model id and every (item id, text) pair: another model or text is another file.  Needs the search
extra; without it :func:`catalogue_vectors` returns ``None`` and the embedding rows are left out.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recomart.ranking.embedding import ItemVectors

log = logging.getLogger("benchmarks.catalogue_vectors")

CACHE = Path.home() / ".cache" / "recomart" / "benchmark-vectors"


def catalogue_vectors(dataset: str, products: pd.DataFrame, *, cache: Path = CACHE) -> ItemVectors | None:
    """Unit vectors of ``products`` (``item_id, title, description, category, brand``), or None without
    the search extra."""
    from recomart.search.minilm import MiniLMEncoder, SearchExtraMissing
    from recomart.search.text import product_texts

    try:
        encoder = MiniLMEncoder()
    except SearchExtraMissing as exc:
        log.warning("no item vectors for %s: %s", dataset, exc)
        return None
    ids = products["item_id"].astype(str).to_numpy(dtype=object)
    texts = product_texts(products).tolist()
    digest = hashlib.sha256("\n".join([encoder.name, *(f"{i}\t{t}" for i, t in zip(ids, texts, strict=True))]).encode())
    path = cache / f"{dataset}-{digest.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return ItemVectors(ids, stored["vectors"])
    started = time.perf_counter()
    vectors = np.asarray(encoder.encode(texts), dtype=np.float32)
    log.info("embedded %d %s items in %.0fs", len(ids), dataset, time.perf_counter() - started)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=vectors)
    return ItemVectors(ids, vectors)
