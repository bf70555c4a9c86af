"""The in-process product search: a lexical and a dense retriever fused by reciprocal rank.

With the search extra and stored vectors: BM25 + all-MiniLM-L6-v2 embeddings (index
``bm25+minilm``).  Without the extra, or before any vector of the installed model is stored:
TF-IDF + LSA (index ``tfidf+lsa``), with ``Searcher.index_reason`` saying why.  Build one with
:meth:`Searcher.from_warehouse` when the API starts and again after each publish; it holds
everything in memory and answers :meth:`Searcher.search` without touching the database.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from recomart import marts
from recomart.search import store
from recomart.search.batching import QueryBatcher
from recomart.search.fusion import FusionParams, reciprocal_rank_fusion
from recomart.search.minilm import SearchExtraMissing
from recomart.search.retrievers import (
    BM25Retriever,
    DenseRetriever,
    LsaRetriever,
    QueryEncoder,
    Retriever,
    TfidfRetriever,
)
from recomart.search.text import product_texts

# Chosen by MRR on the development queries of benchmarks/search.py (docs/search.md), per index.
DEFAULT_FUSION = FusionParams(k=10.0, weights={"embeddings": 3.0}, depth=100)
FALLBACK_FUSION = FusionParams(k=5.0, weights={"lsa": 0.5}, depth=100)
EMBEDDINGS_INDEX = "bm25+minilm"
FALLBACK_INDEX = "tfidf+lsa"


@dataclass(frozen=True)
class SearchHit:
    """One result: ``score`` is the fused reciprocal-rank score; ``retrievers`` names the retrievers
    that returned the item, with its 1-based rank in each (``ranks``)."""

    item_id: str
    title: str | None
    score: float
    retrievers: tuple[str, ...]
    ranks: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Searcher:
    """Hybrid search over a fixed catalogue (``item_ids[i]`` has ``titles[i]``)."""

    def __init__(
        self,
        item_ids: np.ndarray,
        titles: np.ndarray,
        retrievers: list[Retriever],
        *,
        index: str,
        index_reason: str = "",
        model: str | None = None,
        fusion: FusionParams = DEFAULT_FUSION,
    ) -> None:
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.titles = np.asarray(titles, dtype=object)
        self.retrievers = retrievers
        self.index = index
        self.index_reason = index_reason
        self.model = model
        self.fusion = fusion

    def search(self, query: str, k: int = 10) -> list[SearchHit]:
        """The ``k`` best items for ``query``, best first (an empty or unmatched query gives [])."""
        if k <= 0:
            return []
        results = {r.name: r.top(query, self.fusion.depth)[0] for r in self.retrievers}
        fused = reciprocal_rank_fusion(results, self.fusion, k)
        hits = []
        for i, row in enumerate(fused.rows):
            ranks = {name: int(rank[i]) for name, rank in fused.ranks.items() if rank[i] > 0}
            hits.append(
                SearchHit(
                    item_id=str(self.item_ids[row]),
                    title=None if pd.isna(self.titles[row]) else str(self.titles[row]),
                    score=round(float(fused.scores[i]), 6),
                    retrievers=tuple(ranks),
                    ranks=ranks,
                )
            )
        return hits

    def describe(self) -> dict[str, Any]:
        """``index``, why it was chosen, the model (if any), item count, the retrievers and the fusion."""
        return {
            "index": self.index,
            "index_reason": self.index_reason,
            "model": self.model,
            "items": len(self.item_ids),
            "retrievers": [r.name for r in self.retrievers],
            "vector_search": next(
                (getattr(r, "method", None) for r in self.retrievers if r.name == "embeddings"), None
            ),
            "fusion": {"k": self.fusion.k, "weights": dict(self.fusion.weights), "depth": self.fusion.depth},
        }

    @classmethod
    def from_frames(
        cls,
        products: pd.DataFrame,
        vectors: marts.StoredVectors | None,
        encoder: QueryEncoder | None,
        *,
        fusion: FusionParams | None = None,
        reason: str = "",
    ) -> Searcher:
        """Build from products (``marts.dim_products`` columns) and, when given with an encoder, their
        stored vectors; otherwise the TF-IDF + LSA fallback.  ``fusion`` defaults to the index's own
        (:data:`DEFAULT_FUSION` or :data:`FALLBACK_FUSION`)."""
        products = products.reset_index(drop=True)
        texts = product_texts(products).tolist()
        ids, titles = products["item_id"].to_numpy(dtype=object), products["title"].to_numpy(dtype=object)
        if vectors is not None and encoder is not None and len(vectors.item_ids):
            position = pd.Index(ids).get_indexer(vectors.item_ids)
            known = position >= 0
            dense = DenseRetriever(vectors.vectors[known], position[known], encoder)
            retrievers: list[Retriever] = [BM25Retriever(texts), dense]
            params = fusion or DEFAULT_FUSION
            return cls(ids, titles, retrievers, index=EMBEDDINGS_INDEX, model=vectors.model, fusion=params)
        tfidf = TfidfRetriever(texts)
        retrievers = [tfidf, LsaRetriever(tfidf)]
        params = fusion or FALLBACK_FUSION
        return cls(ids, titles, retrievers, index=FALLBACK_INDEX, index_reason=reason, fusion=params)

    @classmethod
    def from_warehouse(cls, dsn: str, *, fusion: FusionParams | None = None, fallback: bool = False) -> Searcher:
        """Read ``marts.dim_products`` and the stored vectors of the installed model, and build.

        ``fallback=True`` forces the TF-IDF + LSA index (for comparison).
        """
        encoder, reason = (None, "fallback requested") if fallback else _encoder_or_reason()
        with psycopg.connect(dsn) as conn:
            products = store.read_products(conn)
            vectors = None
            if encoder is not None:
                has_table = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (store.TABLE,)).fetchone()[0]
                vectors = marts.load_item_vectors(conn, encoder.name) if has_table else None
                if vectors is None or not len(vectors.item_ids):
                    reason = f"no vectors of {encoder.name} in {store.TABLE} yet (run the embedding refresh)"
        return cls.from_frames(products, vectors, encoder, fusion=fusion, reason=reason)


@cache
def _shared_encoder() -> Any:
    """One encoder per process (its weights are read-only), kept across rebuilds of the index; queries
    that arrive together (the API's threads) are encoded in one batch (:class:`QueryBatcher`)."""
    from recomart.search.minilm import MiniLMEncoder

    return QueryBatcher(MiniLMEncoder())


def _encoder_or_reason() -> tuple[Any, str]:
    try:
        return _shared_encoder(), ""
    except SearchExtraMissing as exc:
        return None, f"semantic search extra not installed ({exc})"
