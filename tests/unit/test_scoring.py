"""Scoring: the GEMM scores equal surprise's estimate, and top_k equals a brute-force argsort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recomart.ranking.factors import FactorModel
from recomart.ranking.scoring import iter_blocks, pair_scores, recommend_top_k, svd_scores, top_k, weighted_top_k


def _reference_top_k(scores, k, exclude=None, exclude_rows=None):
    """Brute force: mask with -inf, stable argsort on -score (ties → lower index), pad with -1."""
    s = scores.astype(np.float64).copy()
    allowed = np.ones_like(s, dtype=bool)
    if exclude is not None:
        dense = exclude.toarray().astype(bool)
        rows = np.arange(len(s)) if exclude_rows is None else np.asarray(exclude_rows)
        for b, r in enumerate(rows):
            if r >= 0:
                allowed[b] &= ~dense[r]
    idx = np.full((len(s), k), -1, dtype=np.int64)
    val = np.full((len(s), k), -np.inf)
    for b in range(len(s)):
        cols = np.flatnonzero(allowed[b])
        order = cols[np.argsort(-s[b, cols], kind="stable")][:k]
        idx[b, : len(order)] = order
        val[b, : len(order)] = s[b, order]
    return idx, val


@pytest.mark.parametrize("k", [1, 5, 17])
def test_top_k_matches_argsort_with_exclusions(k: int) -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(64, 40)).astype(np.float32)
    scores[:, 7] = scores[:, 8]  # ties: the lower index must come first
    exclude = sp.random(30, 40, density=0.3, random_state=1, format="csr")
    exclude_rows = rng.integers(-1, 30, size=64)
    idx, val = top_k(scores, k, exclude, exclude_rows)
    ref_idx, ref_val = _reference_top_k(scores, k, exclude, exclude_rows)
    assert idx.dtype == np.int32 and val.dtype == np.float32 and idx.shape == (64, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(val, ref_val)
    dense = exclude.toarray().astype(bool)
    for b, r in enumerate(exclude_rows):
        if r >= 0:
            assert not dense[r, idx[b][idx[b] >= 0]].any()


def test_top_k_across_many_chunks_with_rising_scores_nan_and_ties() -> None:
    """Rows much wider than the kernel's chunk: candidates keep arriving late (rising trend), masked
    columns sit among the best, NaN is scattered and whole chunks tie."""
    from recomart.ranking.scoring import CHUNK

    rng = np.random.default_rng(5)
    n_cols = 7 * CHUNK + 13
    scores = (rng.normal(size=(40, n_cols)) + np.linspace(0, 3, n_cols)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.01] = np.nan
    scores[3] = 1.0  # one row of ties: the lowest unmasked columns win
    best = np.argsort(-np.nan_to_num(scores, nan=-np.inf), axis=1)[:, :4]
    rows = np.repeat(np.arange(40), 4)
    exclude = sp.csr_matrix((np.ones(rows.size), (rows, best.ravel())), shape=(40, n_cols))
    exclude = exclude + sp.random(40, n_cols, density=0.2, random_state=6, format="csr")
    idx, val = top_k(scores, 10, exclude)
    ref_idx, ref_val = _reference_top_k(np.nan_to_num(scores, nan=-np.inf), 10, exclude)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(val, ref_val)


def test_top_k_without_mask_and_unsorted_csr() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(10, 25)).astype(np.float32)
    idx, val = top_k(scores, 4)
    ref_idx, _ = _reference_top_k(scores, 4)
    np.testing.assert_array_equal(idx, ref_idx)
    assert np.all(np.diff(val, axis=1) <= 0)
    # a CSR with unsorted column indices must still be honoured
    mask = sp.csr_matrix((np.ones(3), np.array([9, 2, 5]), np.array([0, 3] + [3] * 9)), shape=(10, 25))
    assert not mask.has_sorted_indices
    idx, _ = top_k(np.tile(np.arange(25, 0, -1, dtype=np.float32), (10, 1)), 3, mask)
    np.testing.assert_array_equal(idx[0], [0, 1, 3])
    np.testing.assert_array_equal(idx[1], [0, 1, 2])


def test_top_k_pads_when_everything_is_masked() -> None:
    scores = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
    mask = sp.csr_matrix(np.array([[1, 0, 1]]))
    idx, val = top_k(scores, 3, mask)
    np.testing.assert_array_equal(idx, [[1, -1, -1]])
    assert val[0, 0] == 2.0 and np.isneginf(val[0, 1:]).all()
    idx, _ = top_k(np.array([[np.nan, 1.0, -np.inf, 5.0]], dtype=np.float32), 3)
    np.testing.assert_array_equal(idx, [[3, 1, -1]])  # NaN and -inf never rank


@pytest.mark.parametrize("terms", [[(0, 0.3), (2, 0.7)], [(2, 1.0)], [(1, 0.05), (0, 0.5), (2, 0.45)], []])
def test_weighted_top_k_selects_what_top_k_of_the_stored_sum_selects(terms: list[tuple[int, float]]) -> None:
    rng = np.random.default_rng(11)
    # coarse values make many exact ties; 150 columns span several chunks and a ragged last one
    parts = np.round(rng.random((3, 40, 150)) * 4).astype(np.float32) / 4
    parts[1, 5, :] = np.nan
    total = np.zeros(parts.shape[1:], dtype=np.float32)
    for c, weight in terms:
        total += np.float32(weight) * parts[c]
    exclude = sp.random(7, 150, density=0.3, format="csr", random_state=2)
    rows = rng.integers(-1, 7, 40)
    for k in (1, 10, 149):
        expected, _ = top_k(total, k, exclude=exclude, exclude_rows=rows)
        np.testing.assert_array_equal(weighted_top_k(parts, terms, k, exclude, rows), expected)
    np.testing.assert_array_equal(weighted_top_k(parts, terms, 10), top_k(total, 10)[0])


def test_iter_blocks_covers_range() -> None:
    blocks = list(iter_blocks(10, 4))
    assert [(b.start, b.stop) for b in blocks] == [(0, 4), (4, 8), (8, 10)]
    assert list(iter_blocks(0, 4)) == []


@pytest.fixture(scope="module")
def fitted():
    """A small surprise SVD fitted on random ratings (with one user and one item held out)."""
    from surprise import SVD, Dataset, Reader

    rng = np.random.default_rng(3)
    n = 600
    df = pd.DataFrame(
        {
            "user": [f"u{x}" for x in rng.integers(0, 40, n)],
            "item": [f"i{x}" for x in rng.integers(0, 30, n)],
            "rating": rng.integers(1, 6, n).astype(float),
        }
    ).drop_duplicates(["user", "item"])
    data = Dataset.load_from_df(df, Reader(rating_scale=(1, 5)))
    trainset = data.build_full_trainset()
    algo = SVD(n_factors=8, n_epochs=15, biased=True, random_state=0)
    algo.fit(trainset)
    return algo, trainset, FactorModel.from_surprise(algo, trainset)


def test_svd_scores_equal_the_biased_svd_formula(fitted) -> None:
    algo, trainset, model = fitted
    users = ["u3", "u17", "nobody"]
    rows = model.user_index(users)
    assert rows[-1] == -1
    scores = svd_scores(model, rows)
    assert scores.dtype == np.float32 and scores.shape == (3, trainset.n_items)
    mu = trainset.global_mean
    for b, raw in enumerate(users):
        for j, item in enumerate(model.item_ids):
            i = trainset.to_inner_iid(item)
            if raw == "nobody":  # unknown user: mu + bi only, as SVD.estimate drops missing terms
                expected = mu + algo.bi[i]
            else:
                u = trainset.to_inner_uid(raw)
                expected = mu + algo.bu[u] + algo.bi[i] + algo.qi[i] @ algo.pu[u]
            assert scores[b, j] == pytest.approx(expected, abs=1e-4)


@pytest.mark.surprise_reference
def test_svd_scores_match_one_real_surprise_predict(fitted) -> None:
    algo, trainset, model = fitted
    item = model.item_ids[5]
    for raw in ["u3", "nobody"]:
        pred = algo.predict(raw, item, clip=False)
        score = svd_scores(model, model.user_index([raw]))[0, 5]
        assert score == pytest.approx(pred.est, abs=1e-4)
        assert pair_scores(model, model.user_index([raw]), np.array([5]))[0] == pytest.approx(pred.est, abs=1e-5)
    # unknown item: mu + bu, exactly like estimate()
    pred = algo.predict("u3", "no-such-item", clip=False)
    est = pair_scores(model, model.user_index(["u3"]), model.item_index(["no-such-item"]))[0]
    assert est == pytest.approx(pred.est, abs=1e-5)


def test_recommend_top_k_blocks_equal_one_shot(fitted) -> None:
    _, _, model = fitted
    rows = np.r_[np.arange(model.n_users), -1]
    seen = sp.random(model.n_users, model.n_items, density=0.2, random_state=4, format="csr")
    exclude_rows = np.where(rows >= 0, rows, -1)
    idx_blocks, val_blocks = recommend_top_k(model, rows, 6, seen, exclude_rows, block_size=7)
    ref_idx, ref_val = _reference_top_k(svd_scores(model, rows), 6, seen, exclude_rows)
    np.testing.assert_array_equal(idx_blocks, ref_idx)
    np.testing.assert_allclose(val_blocks, ref_val, rtol=1e-6)


def test_factor_model_roundtrip_and_lookups(fitted, tmp_path) -> None:
    _, _, model = fitted
    from recomart.model.serialization import load_factors, save_factors

    loaded = load_factors(save_factors(model, tmp_path / "f.npz"))
    np.testing.assert_array_equal(loaded.user_ids, model.user_ids)
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert loaded.global_mean == model.global_mean
    assert loaded.user_factors.dtype == np.float32
    np.testing.assert_array_equal(loaded.item_index([model.item_ids[2], "zzz"]), [2, -1])
