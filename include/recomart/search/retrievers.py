"""Retrievers over a fixed list of product texts: each returns its best rows for a query, best first.

- :class:`BM25Retriever` (``bm25``): BM25 (bm25s, Lucene variant) over Snowball-stemmed words, English
  stop words removed; search extra.
- :class:`DenseRetriever` (``embeddings``): inner product of the query's embedding with the stored item
  vectors (unit length, so cosine): int8 codes pick candidates, their float32 vectors give the exact
  scores; search extra.
- :class:`TfidfRetriever` (``tfidf``) and :class:`LsaRetriever` (``lsa``, TF-IDF reduced by a truncated
  SVD): the fallback pair when the extra is not installed (scikit-learn, in the main lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numba
import numpy as np

from recomart.search.minilm import INSTALL_HINT, SearchExtraMissing


class Retriever(Protocol):
    """``top(query, n)`` returns (row indices, scores), best first, at most ``n``; only rows it matched."""

    name: str

    def top(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]: ...


class QueryEncoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def top_rows(scores: np.ndarray, n: int, *, positive_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n`` largest ``scores`` (ties: lower index first) and their scores, best first."""
    candidates = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    if len(candidates) > n:
        part = np.argpartition(-scores[candidates], n - 1)[:n]
        candidates = candidates[part]
    order = np.lexsort((candidates, -scores[candidates]))
    chosen = candidates[order]
    return chosen, scores[chosen]


class BM25Retriever:
    """BM25 over ``texts``; unknown query words are ignored (a query of only those matches nothing)."""

    name = "bm25"

    def __init__(self, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        try:
            import bm25s
            import Stemmer
        except ImportError as exc:
            raise SearchExtraMissing(f"{exc.name} is not installed: {INSTALL_HINT}") from exc
        self._stemmer = Stemmer.Stemmer("english")
        self._tokenizer = bm25s.tokenization.Tokenizer(stopwords="en", stemmer=self._stemmer)
        corpus = self._tokenizer.tokenize(list(texts), update_vocab=True, return_as="ids", show_progress=False)
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index(corpus, show_progress=False)
        self._vocab = self._tokenizer.get_vocab_dict()
        self._size = len(texts)

    def _query_ids(self, query: str) -> list[int]:
        words = self._tokenizer.tokenize([query], update_vocab="never", return_as="string", show_progress=False)[0]
        return sorted({self._vocab[w] for w in words if w in self._vocab})

    def top(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        ids = self._query_ids(query)
        if not ids or self._size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return top_rows(self._bm25.get_scores_from_ids(ids), n, positive_only=True)


def one_blas_thread() -> None:
    """Make this process's BLAS single-threaded, for good: a query's matrices are tiny, and waking a
    second thread costs more than it saves (on a busy 2-core machine, ten times the single-thread
    time); concurrent queries (API threads and workers) use the cores instead.  Call it once in a
    process that answers queries (the API), not per query: the setting is process-wide, so toggling
    it around each query races between the API's threads and leaves BLAS threads spinning."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@numba.njit(fastmath=True, cache=True, nogil=True)
def _int8_scores(codes: np.ndarray, query: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``codes @ query`` for int8 ``codes`` (n x d) and a float32 ``query`` (d): one pass, no GIL."""
    n, d = codes.shape
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        total = np.float32(0.0)
        for j in range(d):
            total += np.float32(codes[i, j]) * query[j]
        out[i] = total
    return out


class DenseRetriever:
    """Nearest neighbours by inner product over unit vectors (``rows[i]`` is the vector's row), with
    exact float32 scores.

    A query is scored in two steps: every item by int8 codes of its vector (one scale per dimension,
    a quarter of the bytes to read: the full float32 matrix is memory-bound, 30 MB at 20k items), then
    the ``rescore`` x ``n`` best of those by their float32 vectors, which give the order and scores.
    Catalogues of at most ``exact_below`` items are scored in float32 directly.  Processes that answer
    queries call :func:`one_blas_thread` once.
    """

    name = "embeddings"

    def __init__(
        self,
        vectors: np.ndarray,
        rows: np.ndarray,
        encoder: QueryEncoder,
        *,
        rescore: int = 4,
        exact_below: int = 4096,
    ) -> None:
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._rows = np.asarray(rows, dtype=np.int64)
        self._encoder = encoder
        self._rescore = rescore
        self._codes, self._scale = None, None
        self.method = "exact inner product (numpy BLAS)"
        if len(self._vectors) > exact_below:
            self.method = f"int8 codes pick {rescore} x n candidates, exact float32 inner products order them"

            self._scale = np.maximum(np.abs(self._vectors).max(axis=0), 1e-12).astype(np.float32) / np.float32(127)
            self._codes = np.clip(np.rint(self._vectors / self._scale), -127, 127).astype(np.int8)

    def top(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._rows) == 0 or not query.strip():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        chosen, scores = self.nearest(self._encoder.encode([query])[0], n)
        return self._rows[chosen], scores

    def nearest(self, q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions in the vector matrix of the ``n`` best for the unit query vector ``q``, and their
        exact scores, best first."""
        if self._codes is None:
            return top_rows(self._vectors @ q, n, positive_only=False)
        approx = _int8_scores(self._codes, q * self._scale)
        candidates, _ = top_rows(approx, n * self._rescore, positive_only=False)
        exact = self._vectors[candidates] @ q
        best = np.lexsort((candidates, -exact))[:n]  # ties: lower row first, as top_rows orders them
        return candidates[best], exact[best]


class TfidfRetriever:
    """Cosine similarity of TF-IDF vectors (English stop words removed, sublinear term frequency)."""

    name = "tfidf"

    def __init__(self, texts: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, dtype=np.float32)
        try:
            self.matrix = self._vectorizer.fit_transform(list(texts)).tocsr()
        except ValueError:  # empty vocabulary: nothing to match
            self._vectorizer, self.matrix = None, None

    def query_vector(self, query: str):
        return None if self._vectorizer is None else self._vectorizer.transform([query])

    def top(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.query_vector(query)
        if q is None or q.nnz == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = np.asarray((self.matrix @ q.T).todense()).ravel()
        return top_rows(scores, n, positive_only=True)


class LsaRetriever:
    """Latent semantic analysis: the TF-IDF vectors reduced to ``dims`` by a truncated SVD, cosine."""

    name = "lsa"

    def __init__(self, tfidf: TfidfRetriever, *, dims: int = 128, seed: int = 0) -> None:
        from sklearn.decomposition import TruncatedSVD

        self._tfidf = tfidf
        matrix = tfidf.matrix
        self._svd = None
        if matrix is not None and min(matrix.shape) > 2:
            self._svd = TruncatedSVD(n_components=min(dims, min(matrix.shape) - 1), random_state=seed)
            self._vectors = _unit_rows(self._svd.fit_transform(matrix).astype(np.float32))

    def top(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        q = self._tfidf.query_vector(query)
        if self._svd is None or q is None or q.nnz == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        qv = _unit_rows(self._svd.transform(q).astype(np.float32))[0]
        return top_rows(self._vectors @ qv, n, positive_only=True)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
