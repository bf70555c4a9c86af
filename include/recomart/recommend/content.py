"""Content-based scoring: TF-IDF item vectors, recency-weighted user profiles, blockwise user×item scores.

Item vectors are L2-normalised sparse rows; a user profile is the recency-weighted mean of the
vectors of the items the user interacted with.  Scores are computed per user block as
``profiles[block] @ items.T`` (sparse·sparseᵀ) and densified only for that block, so no dense
items×items (or users×vocabulary) matrix is ever built.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

_NON_WORD = re.compile(r"[^0-9a-z]+")


def _token(prefix: str, values: pd.Series) -> pd.Series:
    """One whole-word token per value (``cat_home_garden``), empty for missing values."""
    cleaned = values.fillna("").astype(str).str.lower().str.replace(_NON_WORD, "_", regex=True).str.strip("_")
    return np.where(cleaned.eq(""), "", prefix + "_" + cleaned)


def price_bands(price: pd.Series, n_bands: int = 5) -> pd.Series:
    """Quantile price band labels (``q1`` … ``qN``); empty string for a missing price."""
    numeric = pd.to_numeric(price, errors="coerce")
    valid = numeric.dropna()
    if valid.empty:
        return pd.Series("", index=price.index)
    ranks = numeric.rank(method="average", pct=True)
    band = np.ceil(ranks * n_bands).clip(1, n_bands)
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


def recency_weights(
    last_interaction_at: pd.Series, reference: pd.Timestamp, *, half_life_days: float = 30.0
) -> np.ndarray:
    """``0.5 ** (age_days / half_life)`` with ages measured from ``reference`` (the data's max time)."""
    ts = pd.to_datetime(last_interaction_at, utc=True)
    age_days = ((reference - ts).dt.total_seconds() / 86_400.0).fillna(0.0).clip(lower=0.0)
    return np.power(0.5, age_days.to_numpy(dtype=np.float64) / half_life_days).astype(np.float32)


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
