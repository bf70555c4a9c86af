"""Content-based scoring: TF-IDF item vectors, recency-weighted user profiles, blockwise user×item scores.

With an ``embedding_share`` s (and item vectors, e.g. the products' sentence embeddings) the score is
``(1 - s) · TF-IDF + s · embedding`` similarity, the embedding half computed the same way from dense
vectors (:mod:`recomart.ranking.embedding`); s = 1 uses the embeddings alone.

Item vectors are L2-normalised sparse rows, fitted once on the catalogue's text (title, description,
category, brand, price band); a user profile is the recency-weighted mean of the vectors of the items
in the user's history at ranking time, so new items (no interactions yet) surface here.  Scores are
computed per user block as ``profiles[block] @ items.T`` (sparse·sparseᵀ) and densified only for that
block, so no dense items×items (or users×vocabulary) matrix is ever built.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from recomart.ranking.base import RankedItems, Recommender, TrainingSet, top_neighbours
from recomart.ranking.embedding import ItemVectors, dense_profiles
from recomart.ranking.gemm import row_stable_matmul
from recomart.ranking.history import HISTORY_HALF_LIFE_DAYS, UserHistory

_NON_WORD = re.compile(r"[^0-9a-z]+")


def _token(prefix: str, values: pd.Series) -> np.ndarray:
    """One whole-word token per value (``cat_home_garden``), empty for missing values (object array)."""
    cleaned = values.fillna("").astype(str).str.lower().str.replace(_NON_WORD, "_", regex=True).str.strip("_")
    return np.where(cleaned.eq(""), "", prefix + "_" + cleaned)


def price_bands(price: pd.Series, n_bands: int = 5) -> pd.Series:
    """Quantile price band labels (``q1`` … ``qN``); empty string for a missing price."""
    numeric = pd.to_numeric(price, errors="coerce")
    valid = numeric.dropna()
    if valid.empty:
        return pd.Series("", index=price.index)
    ranks = numeric.rank(method="average", pct=True)
    band = pd.Series(np.ceil(ranks.to_numpy() * n_bands), index=price.index).clip(1, n_bands)
    return band.map(lambda b: "" if pd.isna(b) else f"q{int(b)}")


def item_documents(products: pd.DataFrame) -> pd.Series:
    """One text document per item: title, description, and category / brand / price-band tokens.

    ``products`` has ``title, description, category, brand`` and either ``price_band`` or ``price``.
    """

    def text(col: str) -> pd.Series:
        return products[col].fillna("").astype(str) if col in products else pd.Series("", index=products.index)

    if "price_band" in products and products["price_band"].notna().any():
        band = products["price_band"]
    elif "price" in products:
        band = price_bands(products["price"])
    else:
        band = pd.Series("", index=products.index)
    tokens = [
        _token("cat", text("category")),
        _token("brand", text("brand")),
        _token("priceband", band),
    ]
    parts = [
        text("title"),
        text("description"),
        text("category"),
        *(pd.Series(t, index=products.index) for t in tokens),
    ]
    doc = parts[0]
    for part in parts[1:]:
        doc = doc + " " + part
    return doc.str.strip()


def item_vectors(documents: pd.Series, *, max_features: int | None = 50_000) -> sparse.csr_matrix:
    """TF-IDF rows (float32, L2-normalised) for ``documents``; all-empty input gives a zero matrix."""
    n = len(documents)
    if n == 0 or not documents.str.strip().astype(bool).any():
        return sparse.csr_matrix((n, 1), dtype=np.float32)
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        lowercase=True,
        stop_words="english",
        sublinear_tf=True,
        norm="l2",
        max_features=max_features,
        dtype=np.float32,
    )
    try:
        matrix = vectorizer.fit_transform(documents.tolist())
    except ValueError:  # only stop words: no vocabulary
        return sparse.csr_matrix((n, 1), dtype=np.float32)
    return sparse.csr_matrix(matrix, dtype=np.float32)


def user_profiles(
    user_rows: np.ndarray,
    item_cols: np.ndarray,
    weights: np.ndarray,
    n_users: int,
    items: sparse.csr_matrix,
) -> sparse.csr_matrix:
    """Weighted mean of item vectors per user: ``normalise_rows(W) @ items`` (no history: zeros)."""
    w = sparse.csr_matrix(
        (weights.astype(np.float32), (user_rows, item_cols)),
        shape=(n_users, items.shape[0]),
        dtype=np.float32,
    )
    totals = np.asarray(w.sum(axis=1)).ravel()
    inv = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0).astype(np.float32)
    w = sparse.diags(inv) @ w
    return sparse.csr_matrix(w @ items, dtype=np.float32)


def content_scores(
    profiles: sparse.csr_matrix,
    items: sparse.spmatrix,
    rows: np.ndarray,
    *,
    max_dense_cells: int = 1 << 25,
) -> np.ndarray:
    """Dense float32 ``[len(rows), n_items]`` block of ``profiles[rows] @ items.T``.

    ``items`` (n_items × vocabulary) is best passed as CSC, converted once by the caller.  The
    product is evaluated as sparse items × dense profile slice restricted to the vocabulary terms
    the block uses, which scipy does far faster than sparse × sparse with a dense result; the dense
    slice is bounded by ``max_dense_cells`` (sub-blocks otherwise).  Nothing items × items (or
    users × vocabulary) is ever materialised.
    """
    block = profiles[rows]
    n_items = items.shape[0]
    out = np.zeros((len(rows), n_items), dtype=np.float32)
    if block.nnz == 0 or n_items == 0:
        return out
    used = np.flatnonzero(np.bincount(block.indices, minlength=block.shape[1]))
    items_used = sparse.csc_matrix(items)[:, used]  # n_items x |used|
    step = max(1, max_dense_cells // len(used))
    for start in range(0, len(rows), step):
        dense = block[start : start + step][:, used].toarray()  # b x |used|
        out[start : start + step] = (items_used @ dense.T).T
    return out


class Content(Recommender):
    """TF-IDF similarity of each catalogue item to the user's recency-weighted profile, optionally
    blended with the same similarity over dense item vectors.

    ``fit`` vectorises the catalogue's text (and aligns ``item_vectors`` on the catalogue when
    ``embedding_share`` is set; without vectors the share is ignored); ``score`` builds the profiles of
    the ranked users from their history (weights with a :data:`HISTORY_HALF_LIFE_DAYS` half-life).
    ``similar_items`` is the cosine similarity of the TF-IDF vectors.
    """

    def __init__(
        self,
        *,
        max_features: int | None = 50_000,
        embedding_share: float | None = None,
        item_vectors: ItemVectors | None = None,
    ) -> None:
        self.max_features = max_features
        self.embedding_share = embedding_share
        self.item_vectors = item_vectors
        self.item_ids = np.zeros(0, dtype=object)
        self.vectors = sparse.csr_matrix((0, 1), dtype=np.float32)
        self.embeddings: np.ndarray | None = None  # n_items x dim, rows aligned on item_ids
        self._columns: sparse.csc_matrix | None = None

    def fit(self, training: TrainingSet) -> Content:
        self.item_ids = training.item_ids
        self.vectors = item_vectors(item_documents(training.products), max_features=self.max_features)
        vectors = self.item_vectors if self.embedding_share else None
        self.embeddings = vectors.aligned(self.item_ids) if vectors is not None else None
        self._columns = None
        return self

    @property
    def share(self) -> float:
        """The weight of the embedding similarity in the score (0 without embeddings)."""
        return float(self.embedding_share or 0.0) if self.embeddings is not None else 0.0

    @property
    def columns(self) -> sparse.csc_matrix:
        """The item vectors as CSC (converted once)."""
        if self._columns is None:
            self._columns = self.vectors.tocsc()
        return self._columns

    def profiles(self, history: UserHistory) -> sparse.csr_matrix:
        """Users × vocabulary profiles of ``history`` (cached on the history)."""
        weights = history.recency(HISTORY_HALF_LIFE_DAYS)
        return history.cached(
            ("content_profiles", id(self)),
            lambda: user_profiles(history.rows, history.cols, weights, history.n_users, self.vectors),
        )

    def embedding_profiles(self, history: UserHistory) -> np.ndarray:
        """Users × dim profiles of ``history`` over the item embeddings (cached on the history)."""
        assert self.embeddings is not None
        weights = history.recency(HISTORY_HALF_LIFE_DAYS)
        embeddings = self.embeddings
        return history.cached(
            ("embedding_profiles", id(self)),
            lambda: dense_profiles(history.rows, history.cols, weights, history.n_users, embeddings),
        )

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        share = self.share
        if share == 0.0:
            return content_scores(self.profiles(history), self.columns, rows)
        assert self.embeddings is not None
        scores = row_stable_matmul(self.embedding_profiles(history)[rows], self.embeddings.T)
        scores *= np.float32(share)
        if share < 1.0:
            scores += np.float32(1.0 - share) * content_scores(self.profiles(history), self.columns, rows)
        return scores

    def similar_items(self, item_ids: Sequence[str] | np.ndarray, k: int = 10) -> RankedItems:
        columns, values = top_neighbours(lambda rows: self.vectors[rows] @ self.vectors.T, self.item_rows(item_ids), k)
        return RankedItems.from_columns(self.item_ids, columns, values)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        vectors = self.vectors
        arrays = {"data": vectors.data, "indices": vectors.indices, "indptr": vectors.indptr}
        arrays["shape"] = np.asarray(vectors.shape, dtype=np.int64)
        settings: dict[str, Any] = {"max_features": self.max_features}
        if self.share > 0:
            assert self.embeddings is not None
            arrays["embeddings"] = self.embeddings
            settings["embedding_share"] = self.embedding_share
        return arrays, settings

    @classmethod
    def from_state(cls, item_ids: np.ndarray, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> Content:
        component = cls(max_features=settings.get("max_features"), embedding_share=settings.get("embedding_share"))
        component.item_ids = item_ids
        shape = tuple(int(n) for n in arrays["shape"])
        component.vectors = sparse.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        if "embeddings" in arrays:
            component.embeddings = np.asarray(arrays["embeddings"], dtype=np.float32)
        return component
