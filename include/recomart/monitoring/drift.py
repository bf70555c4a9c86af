"""Population stability index (PSI) of one feature between a reference sample and a current one.

PSI = sum over bins of (c - r) * ln(c / r), with r and c the shares of the reference and current rows
in each bin. Numeric features are cut at the reference's quantiles (deciles by default; repeated edges,
as in a zero-heavy count, merge into one bin); categorical features use their categories, and a
category only the current sample has gets a bin of its own. Missing values are a bin of their own in
both cases. An empty bin would make the logarithm infinite, so every share is floored at
:data:`EPSILON` (1e-4, a common choice: an empty bin against a 10 % one then adds ~0.8, an alert on its
own) before the sum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EPSILON = 1e-4
DEFAULT_BINS = 10


def psi_from_shares(reference: np.ndarray, current: np.ndarray, epsilon: float = EPSILON) -> float:
    """PSI of two aligned share vectors (each sums to 1 over the same bins), shares floored at ``epsilon``."""
    ref = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    cur = np.maximum(np.asarray(current, dtype=np.float64), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def quantile_edges(reference: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Inner bin edges: the reference's quantiles at 1/bins .. (bins-1)/bins, repeated edges dropped."""
    values = np.asarray(reference, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def _numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares per bin (``len(edges) + 1`` bins, then one for missing values) of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=edges.size + 1)
    counts = np.append(counts, missing.sum())
    return counts / max(values.size, 1)


def numeric_psi(reference: np.ndarray, current: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """PSI of a numeric feature, bins at the reference's quantiles (plus one bin for missing values)."""
    edges = quantile_edges(reference, bins)
    return psi_from_shares(_numeric_shares(reference, edges), _numeric_shares(current, edges))


def categorical_psi(reference: pd.Series, current: pd.Series) -> float:
    """PSI of a categorical feature over the categories of both samples (missing values are one category)."""
    ref = reference.astype(object).where(reference.notna(), "<missing>").value_counts(normalize=True)
    cur = current.astype(object).where(current.notna(), "<missing>").value_counts(normalize=True)
    ref, cur = ref.align(cur, fill_value=0.0)
    return psi_from_shares(ref.to_numpy(), cur.to_numpy())


def feature_psi(reference: pd.Series, current: pd.Series, bins: int = DEFAULT_BINS) -> float:
    """PSI of one feature: quantile bins when the reference is numeric (or boolean), categories otherwise."""
    if pd.api.types.is_numeric_dtype(reference) and not pd.api.types.is_bool_dtype(reference):
        return numeric_psi(reference.to_numpy(dtype=np.float64), current.to_numpy(dtype=np.float64), bins)
    return categorical_psi(reference, current)


def frame_psi(reference: pd.DataFrame, current: pd.DataFrame, features: list[str]) -> dict[str, float]:
    """``{feature: PSI}`` of each of ``features`` (columns of both frames)."""
    return {name: feature_psi(reference[name], current[name]) for name in features}
