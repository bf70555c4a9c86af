"""Recommendation health of one generation (Evidently's recsys definitions), vectorised.

Inputs are the generation's rows (``user_id, rank, item_id, strategy``), the item popularity
(share of users who interacted with each item, from the marts) and the item categories.

- ``coverage``: share of the catalogue recommended to at least one user;
- ``exposure_gini``: Gini coefficient of how often each catalogue item is recommended (0 = every item
  equally often, 1 = one item takes every slot);
- ``avg_rec_popularity`` (ARP, popularity bias): mean popularity of the recommended items;
- ``personalization``: 1 − mean pairwise overlap (shared items / k) of the top-k lists of a seeded
  sample of users;
- ``novelty``: mean −log2 popularity of the recommended items (an item no user interacted with counts
  as one interaction in ``n_users + 1``, so its novelty is finite);
- ``intra_list_diversity``: mean share of item pairs within a list that have different categories;
- ``cold_start_share``: share of users served the cold-start list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

COLD_START_STRATEGIES = ("popular_cold_start", "popular_no_model")
DEFAULT_SAMPLE_USERS = 1000
DEFAULT_K = 10


@dataclass(frozen=True)
class Popularity:
    """Item popularity: ``users_per_item`` (item_id -> distinct users who interacted) and ``n_users``."""

    users_per_item: pd.Series
    n_users: int

    def share(self, items: pd.Series) -> np.ndarray:
        """Share of users who interacted with each of ``items``, unseen items as one in ``n_users + 1``."""
        counts = items.map(self.users_per_item).fillna(0).to_numpy(dtype=np.float64)
        return np.where(counts > 0, counts / max(self.n_users, 1), 1.0 / (self.n_users + 1))


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (0 for an even spread or no counts)."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = values.size, values.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(np.sum((2 * ranks - n - 1) * values) / (n * total))


def exposure_counts(recs: pd.DataFrame, catalogue: pd.Index) -> np.ndarray:
    """How often each ``catalogue`` item is recommended (0 for those never recommended)."""
    return recs["item_id"].value_counts().reindex(catalogue, fill_value=0).to_numpy()


def personalization(recs: pd.DataFrame, k: int = DEFAULT_K, sample: int = DEFAULT_SAMPLE_USERS, seed: int = 0) -> float:
    """1 − mean pairwise overlap of the top-``k`` lists of ``sample`` users drawn with ``seed``
    (nan with fewer than two users)."""
    top = recs[recs["rank"] <= k]
    users = top["user_id"].unique()
    if users.size < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(users, size=min(sample, users.size), replace=False)
    top = top[top["user_id"].isin(chosen)]
    rows = pd.Categorical(top["user_id"], categories=chosen).codes
    cols, _ = pd.factorize(top["item_id"])
    lists = sp.csr_matrix((np.ones(len(top)), (rows, cols)), shape=(chosen.size, cols.max() + 1))
    shared = (lists @ lists.T).toarray()
    n = chosen.size
    pair_overlap = (shared.sum() - np.trace(shared)) / (n * (n - 1))
    return float(1.0 - pair_overlap / k)


def intra_list_diversity(recs: pd.DataFrame, category: pd.Series) -> float:
    """Mean over lists of the share of item pairs in different categories (lists of one item count as 0)."""
    cats = recs["item_id"].map(category).fillna("<none>")
    per_cat = recs.assign(category=cats).groupby(["user_id", "category"]).size()
    same = (per_cat * (per_cat - 1) / 2).groupby(level="user_id").sum()
    length = per_cat.groupby(level="user_id").sum()
    pairs = length * (length - 1) / 2
    diversity = (1 - same / pairs.where(pairs > 0)).fillna(0.0)
    return float(diversity.mean()) if len(diversity) else float("nan")


def recommendation_health(
    recs: pd.DataFrame,
    catalogue: pd.Index,
    popularity: Popularity,
    category: pd.Series,
    *,
    k: int = DEFAULT_K,
    sample: int = DEFAULT_SAMPLE_USERS,
    seed: int = 0,
) -> dict[str, float]:
    """Every health metric of the generation ``recs`` (``user_id, rank, item_id, strategy``).

    ``catalogue``: the recommendable item ids; ``category``: item_id -> category.
    """
    if recs.empty:
        return {"coverage": 0.0, "users": 0.0}
    shares = popularity.share(recs["item_id"])
    cold = recs.groupby("user_id")["strategy"].first().isin(COLD_START_STRATEGIES)
    return {
        "users": float(recs["user_id"].nunique()),
        "coverage": recs.loc[recs["item_id"].isin(catalogue), "item_id"].nunique() / max(len(catalogue), 1),
        "exposure_gini": gini(exposure_counts(recs, catalogue)),
        "avg_rec_popularity": float(shares.mean()),
        "personalization": personalization(recs, k, sample, seed),
        "novelty": float(np.mean(-np.log2(shares))),
        "intra_list_diversity": intra_list_diversity(recs, category),
        "cold_start_share": float(cold.mean()),
    }
