"""Item-to-item co-occurrence, buy-again and the feed's repeat-purchase policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from recomart.ranking import item_item
from recomart.ranking.base import TrainingSet
from recomart.ranking.blend import BlendWeights
from recomart.ranking.factors import FactorModel
from recomart.ranking.history import UserHistory, exclusion_for
from recomart.ranking.hybrid import HybridRecommender
from recomart.ranking.item_item import (
    ItemItem,
    incidence,
    item_item_scores,
    item_similarity,
    similar_items_frame,
    top_n_per_row,
)
from recomart.ranking.kept import Kept
from recomart.ranking.svd import BiasedSVD
from recomart.tasks.common import repeat_purchases_allowed


def _random_incidence(seed: int = 3, n_users: int = 60, n_items: int = 25) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < rng.uniform(0.02, 0.4, n_items)
    r, c = np.nonzero(dense)
    return incidence(r, c, n_users, n_items)


def _dense_similarity(x: sparse.csr_matrix, method: str) -> np.ndarray:
    d = x.toarray().astype(np.float64)
    co = d.T @ d
    n = np.diag(co)
    if method == "jaccard":
        sim = co / np.maximum(n[:, None] + n[None, :] - co, 1.0)
    else:
        sim = co / np.sqrt(np.maximum(np.outer(n, n), 1.0))
    np.fill_diagonal(sim, 0.0)
    return sim


@pytest.mark.parametrize("method", ["jaccard", "cosine"])
def test_similarity_matches_a_dense_reference_and_keeps_top_n(method: str) -> None:
    x = _random_incidence()
    ref = _dense_similarity(x, method)
    full = item_similarity(x, top_n=100, method=method).toarray()
    np.testing.assert_allclose(full, ref, rtol=1e-6, atol=1e-7)
    top = item_similarity(x, top_n=3, method=method, block_items=4)
    assert top.shape == (25, 25) and np.all(np.diff(top.indptr) <= 3)
    assert np.all(top.diagonal() == 0)
    dense_top = top.toarray()
    for i in range(25):  # each kept value is among the row's three largest
        kept = dense_top[i][dense_top[i] > 0]
        assert len(kept) == min(3, int((ref[i] > 0).sum()))
        if len(kept):
            assert kept.min() >= np.sort(ref[i])[-3] - 1e-7


def test_block_size_does_not_change_the_result() -> None:
    x = _random_incidence(seed=8)
    a = item_similarity(x, top_n=5, block_items=1)
    b = item_similarity(x, top_n=5, block_items=4096)
    assert (a != b).nnz == 0


def test_top_n_ties_prefer_the_lower_column() -> None:
    m = sparse.csr_matrix(np.array([[0.5, 0.5, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32))
    out = top_n_per_row(m, 2).toarray()
    np.testing.assert_array_equal(out[0], [0.5, 0.5, 0.0, 0.0])
    assert not out[1].any()


def _top_n_by_sorting(matrix: sparse.csr_matrix, n: int) -> np.ndarray:
    """The definition, row by row: the positive entries sorted by value (descending), then column."""
    dense = matrix.toarray()
    out = np.zeros(dense.shape, dtype=np.float32)
    for r, row in enumerate(dense):
        positive = np.flatnonzero(row > 0)
        best = positive[np.lexsort((positive, -row[positive]))][:n]
        out[r, best] = row[best]
    return out


@pytest.mark.parametrize("n", [0, 1, 3, 7, 40])
def test_top_n_per_row_keeps_what_sorting_each_row_keeps(n: int) -> None:
    rng = np.random.default_rng(n)
    dense = rng.integers(0, 5, (30, 25)).astype(np.float64) / 4  # few values: many ties
    dense[rng.random(dense.shape) < 0.4] = 0.0
    dense[3] = -1.0  # a row without a positive entry
    ordered = sparse.csr_matrix(dense)
    spans = list(zip(ordered.indptr[:-1], ordered.indptr[1:], strict=True))
    reverse = np.concatenate([np.arange(a, b)[::-1] for a, b in spans])  # each row's entries, last first
    matrix = sparse.csr_matrix((ordered.data[reverse], ordered.indices[reverse], ordered.indptr), shape=dense.shape)
    kept = top_n_per_row(matrix, n)
    assert kept.dtype == np.float32 and kept.has_sorted_indices
    np.testing.assert_array_equal(kept.toarray(), _top_n_by_sorting(matrix, n))


def test_user_scores_are_the_weighted_sum_of_neighbour_similarities() -> None:
    x = _random_incidence(seed=5)
    sim = item_similarity(x, top_n=4)
    rng = np.random.default_rng(1)
    history = sparse.csr_matrix(x.multiply(rng.uniform(0.1, 1.0, x.shape)).astype(np.float32))
    rows = np.array([3, 0, 17])
    got = item_item_scores(history, sim, rows)
    want = history.toarray()[rows] @ sim.toarray()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_similar_items_frame_ranks_neighbours() -> None:
    sim = sparse.csr_matrix(np.array([[0, 0.2, 0.9], [0.2, 0, 0], [0.9, 0, 0]], dtype=np.float32))
    frame = similar_items_frame(sim, np.array(["a", "b", "c"], dtype=object))
    assert frame.to_dict("list") == {
        "item_id": ["a", "a", "b", "c"],
        "rank": [1, 2, 1, 1],
        "similar_item_id": ["c", "b", "a", "a"],
        "score": pytest.approx([0.9, 0.2, 0.2, 0.9]),
    }


# --- the feed policy and buy-again ------------------------------------------------------
T = pd.Timestamp("2021-06-30", tz="UTC")


def _shop() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    products = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "title": ["tea cup", "tea pot", "coffee mug", "garden hose"],
            "description": ["", "", "", ""],
            "category": ["kitchen", "kitchen", "kitchen", "garden"],
            "brand": ["x", "x", "y", "z"],
            "price": [3.0, 20.0, 4.0, 15.0],
        }
    )
    rows = [  # user, item, purchases, days ago
        ("u1", "a", 5, 1),
        ("u1", "c", 1, 90),
        ("u2", "a", 1, 2),
        ("u2", "b", 1, 2),
        ("u3", "a", 2, 5),
        ("u3", "b", 1, 5),
        ("u4", "d", 1, 1),
    ]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "purchases", "age"])
    ratings["last_interaction_at"] = T - pd.to_timedelta(ratings.pop("age"), unit="D")
    ratings["rating"] = 1.0
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "segment": ["s"] * 4})
    return ratings, users, products


def _hybrid(ratings, users, products, *, repeat: bool, weights: BlendWeights | None = None) -> HybridRecommender:
    """A hybrid with a trivial model (users with factors take the blend; the SVD gets no weight here)."""
    model = FactorModel(
        ["u1", "u2", "u3", "u4"], ["a"], 1.0, np.zeros(4), np.zeros(1), np.zeros((4, 1)), np.zeros((1, 1))
    )
    recommender = HybridRecommender(weights=weights, repeat_purchases=repeat, svd=BiasedSVD.from_factors(model))
    return recommender.fit(TrainingSet.build(ratings, products, users))


def test_feed_policy_decides_exclusion_and_buy_again() -> None:
    assert repeat_purchases_allowed("uci") is True
    assert repeat_purchases_allowed("generated") is False
    assert repeat_purchases_allowed(None) is False and repeat_purchases_allowed("nope") is False
    assert exclusion_for(True) == "none" and exclusion_for(False) == "purchased"
    ratings, users, products = _shop()
    no_repeat = _hybrid(ratings, users, products, repeat=False)
    assert no_repeat.buy_again is None and no_repeat.exclude == "purchased"
    repeat = _hybrid(ratings, users, products, repeat=True)
    assert repeat.exclude == "none" and repeat.buy_again is not None
    history = UserHistory.align(ratings, np.array(["u1"], dtype=object), repeat.item_ids)
    u1 = repeat.buy_again.matrix(history)[0].toarray().ravel()  # a bought 5x yesterday beats c once 90 days ago
    assert u1[0] > u1[2] > 0 and u1[1] == 0


def test_buy_again_ranks_reorders_first_only_when_repeats_are_allowed() -> None:
    ratings, users, products = _shop()
    weights = BlendWeights(cf=0.0, content=0.0, popularity=0.0, item_item=0.2, buy_again=0.8)
    repeat = _hybrid(ratings, users, products, repeat=True, weights=weights).rank(users, ratings, k=4)
    u1 = repeat[repeat["user_id"] == "u1"]
    assert u1["item_id"].iloc[0] == "a" and u1["buy_again_score"].iloc[0] > 0  # the frequent recent reorder
    again_only = BlendWeights.only("buy_again")
    u1 = _hybrid(ratings, users, products, repeat=True, weights=again_only).rank(users, ratings, k=4)
    u1 = u1.query("user_id == 'u1'")
    assert list(u1["item_id"][:2]) == ["a", "c"]  # then the older, single purchase
    assert u1["buy_again_score"].iloc[0] > u1["buy_again_score"].iloc[1] > 0
    once = _hybrid(ratings, users, products, repeat=False, weights=weights).rank(users, ratings, k=4)
    u1 = once[once["user_id"] == "u1"]
    assert not {"a", "c"} & set(u1["item_id"]) and u1["buy_again_score"].isna().all()
    assert u1["item_id"].iloc[0] == "b"  # co-bought with a by u2 and u3
    assert u1["item_item_score"].iloc[0] > 0


def test_item_item_component_follows_the_recommender_interface() -> None:
    ratings, users, products = _shop()
    component = ItemItem(top_n=2).fit(TrainingSet.build(ratings, products, users))
    neighbours = component.similar_items(["a", "zzz"], k=3)
    assert neighbours.item_ids[0].tolist() == ["b", "c", None]  # b: two shared buyers, c: one
    assert neighbours.item_ids[1].tolist() == [None, None, None]  # unknown item: empty row
    ranked = component.recommend(["u4", "u1"], ratings, k=2, filter_seen=True)
    assert "a" not in ranked.item_ids[1] and "c" not in ranked.item_ids[1]
    assert ranked.item_ids[1][0] == "b"
    assert ranked.scores[0].tolist() == [0.0, 0.0]  # d has no co-buyers: nothing scores above zero


def test_a_refit_on_the_same_incidence_and_settings_reuses_the_kept_similarity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(item_item, "SIMILARITIES", Kept(2))
    ratings, users, products = _shop()
    training = TrainingSet.build(ratings, products, users)
    first = ItemItem(top_n=2).fit(training).similarity
    assert ItemItem(top_n=2).fit(TrainingSet.build(ratings.iloc[::-1], products, users)).similarity is first
    other = ItemItem(top_n=1).fit(training).similarity
    assert other is not first and other.nnz < first.nnz
    fewer = ItemItem(top_n=2).fit(TrainingSet.build(ratings.iloc[1:], products, users)).similarity  # drops `first`
    assert fewer is not first and ItemItem(top_n=2).fit(training).similarity is not first
    assert (ItemItem(top_n=2).fit(training).similarity != first).nnz == 0
