"""EASE and RP3β: closed forms against direct computations, the support cut, and the Recommender interface."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from recomart.model.catalogue import Catalogue
from recomart.model.component_search import (
    CANDIDATES,
    choose_fitted,
    fit_of,
    remember_fit,
    validation_ndcg,
)
from recomart.ranking import ease, rp3beta
from recomart.ranking.base import Recommender, TrainingSet
from recomart.ranking.ease import EASE, ease_weights, supported_items
from recomart.ranking.rp3beta import RP3Beta, popularity_penalty, rp3beta_similarity, transition_matrices


def _incidence(n_users: int, n_items: int, seed: int = 5, density: float = 0.3) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    return sparse.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


def _ease_reference(x: sparse.csr_matrix, l2: float) -> np.ndarray:
    """B = I − P diagMat(1/diag(P)), P = (XᵀX + λI)⁻¹, in float64 with np.linalg.inv."""
    d = x.toarray().astype(np.float64)
    p = np.linalg.inv(d.T @ d + l2 * np.eye(d.shape[1]))
    return np.eye(d.shape[1]) - p / np.diag(p)[None, :]


def _history(x: sparse.csr_matrix) -> pd.DataFrame:
    users, items = x.nonzero()
    return pd.DataFrame(
        {
            "user_id": [f"u{u:02d}" for u in users],
            "item_id": [f"i{i:02d}" for i in items],
            "purchases": 1,
            "last_interaction_at": pd.Timestamp("2026-01-01", tz="UTC"),
        }
    )


@pytest.mark.parametrize("n_users", [40, 7])  # more users than items (Cholesky of G), fewer (Woodbury)
def test_ease_equals_the_closed_form_with_a_zero_diagonal(n_users: int) -> None:
    x = _incidence(n_users, 12)
    for l2 in (0.5, 10.0, 300.0):
        weights = ease_weights(x, l2)
        assert weights.dtype == np.float32 and weights.flags["C_CONTIGUOUS"]
        np.testing.assert_allclose(weights, _ease_reference(x, l2), rtol=1e-4, atol=1e-5)
        assert np.all(np.diag(weights) == 0.0)
    with pytest.raises(ValueError, match="positive"):
        ease_weights(x, 0.0)


def test_support_cut_keeps_the_best_supported_items() -> None:
    support = np.array([5, 0, 3, 9, 3, 1])
    assert supported_items(support, 3).tolist() == [0, 2, 3]  # 9, 5 and the first 3 (column 2, not 4)
    assert supported_items(support, 10).tolist() == [0, 2, 3, 4, 5]  # never an item without support
    assert supported_items(support, 10, min_support=3).tolist() == [0, 2, 3, 4]
    x = _incidence(30, 10, seed=2)
    training = TrainingSet.build(_history(x))
    ease = EASE(l2=5.0, max_items=4).fit(training)
    counts = np.asarray(x.sum(axis=0)).ravel()
    assert ease.columns.tolist() == supported_items(counts, 4).tolist()
    np.testing.assert_allclose(ease.weights, _ease_reference(x[:, ease.columns], 5.0), rtol=1e-4, atol=1e-5)
    scores = ease.score(training.entries, np.arange(5))
    outside = np.setdiff1d(np.arange(10), ease.columns)
    assert np.all(scores[:, outside] == -np.inf) and np.all(np.isfinite(scores[:, ease.columns]))
    ranked = ease.recommend(training.entries.user_ids, training.history, k=8, filter_seen=False)
    assert set(ranked.item_ids[pd.notna(ranked.item_ids)]) <= set(training.item_ids[ease.columns])


def test_ease_scores_are_the_binary_history_times_b() -> None:
    x = _incidence(25, 9, seed=11)
    training = TrainingSet.build(_history(x))
    ease = EASE(l2=3.0).fit(training)
    expected = x.toarray().astype(np.float64) @ _ease_reference(x, 3.0)
    np.testing.assert_allclose(ease.score(training.entries, np.arange(25)), expected, rtol=1e-4, atol=1e-4)


def _tiny() -> sparse.csr_matrix:
    """u0: i0 i1; u1: i0 i2; u2: i0 (item degrees 3, 1, 1; user degrees 2, 2, 1)."""
    return sparse.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [1, 0, 0]], dtype=np.float32))


def test_rp3beta_transitions_are_row_normalised() -> None:
    p_ui, p_iu = transition_matrices(_tiny())
    np.testing.assert_allclose(p_ui.toarray(), [[0.5, 0.5, 0], [0.5, 0, 0.5], [1, 0, 0]])
    np.testing.assert_allclose(p_iu.toarray(), [[1 / 3, 1 / 3, 1 / 3], [1, 0, 0], [0, 1, 0]])
    squared_ui, squared_iu = transition_matrices(_tiny(), alpha=2.0)
    np.testing.assert_allclose(squared_ui.toarray(), [[0.25, 0.25, 0], [0.25, 0, 0.25], [1, 0, 0]])
    np.testing.assert_allclose(squared_iu.toarray()[0], [1 / 9, 1 / 9, 1 / 9])


def test_rp3beta_walk_and_popularity_penalty_by_hand() -> None:
    # P_iu @ P_ui: i0 -> [2/3, 1/6, 1/6], i1 -> [1/2, 1/2, 0], i2 -> [1/2, 0, 1/2]; diagonal zeroed
    walk = rp3beta_similarity(_tiny(), alpha=1.0, beta=0.0).toarray()
    np.testing.assert_allclose(walk, [[0, 1 / 6, 1 / 6], [0.5, 0, 0], [0.5, 0, 0]], rtol=1e-6)
    # β = 0.5 divides column j by deg(j)^0.5: only the popular i0 (degree 3) is penalised
    np.testing.assert_allclose(popularity_penalty(np.array([3, 1, 0]), 0.5), [3**-0.5, 1.0, 0.0], rtol=1e-6)
    penalised = rp3beta_similarity(_tiny(), alpha=1.0, beta=0.5).toarray()
    np.testing.assert_allclose(penalised, [[0, 1 / 6, 1 / 6], [0.5 / 3**0.5, 0, 0], [0.5 / 3**0.5, 0, 0]], rtol=1e-6)
    # α = 2: P_iu² @ P_ui², row i0 = (1/9) ([.25, .25, 0] + [.25, 0, .25] + [1, 0, 0])
    squared = rp3beta_similarity(_tiny(), alpha=2.0, beta=0.0).toarray()
    np.testing.assert_allclose(squared[0], [0, 0.25 / 9, 0.25 / 9], rtol=1e-6)
    np.testing.assert_allclose(squared[1], [0.25, 0, 0], rtol=1e-6)
    top1 = rp3beta_similarity(_tiny(), alpha=1.0, beta=0.0, top_n=1, block_items=2).toarray()
    np.testing.assert_allclose(top1, [[0, 1 / 6, 0], [0.5, 0, 0], [0.5, 0, 0]], rtol=1e-6)  # tie: lower column


COMPONENTS = [lambda: EASE(l2=4.0), lambda: EASE(l2=4.0, max_items=6), lambda: RP3Beta(alpha=0.8, beta=0.3, top_n=5)]


@pytest.mark.parametrize("make", COMPONENTS, ids=["ease", "ease_cut", "rp3beta"])
def test_recommender_interface(make) -> None:
    x = _incidence(30, 10, seed=8)
    training = TrainingSet.build(_history(x))
    component: Recommender = make().fit(training)
    users = np.array(["u03", "u00", "nobody"], dtype=object)
    ranked = component.recommend(users, training.history, k=4)
    assert ranked.item_ids.shape == (3, 4) and ranked.scores.shape == (3, 4)
    assert np.all(np.diff(ranked.scores, axis=1)[np.isfinite(ranked.scores[:, 1:])] <= 0)
    history = training.history
    for row, user in enumerate(users):  # seen items are never recommended with filter_seen
        seen = set(history.loc[history["user_id"] == user, "item_id"])
        assert not seen & set(ranked.item_ids[row][pd.notna(ranked.item_ids[row])])
    unfiltered = component.recommend(users, history, k=10, filter_seen=False)
    assert np.array_equal(unfiltered.item_ids, make().fit(training).recommend(users, history, 10, False).item_ids)
    similar = component.similar_items(["i01", "i09", "unknown"], k=3)
    assert similar.item_ids.shape == (3, 3) and similar.scores.shape == (3, 3)
    assert "i01" not in set(similar.item_ids[0]) and all(v is None for v in similar.item_ids[2])
    arrays, settings = component.state()
    restored = type(component).from_state(training.item_ids, arrays, settings)
    np.testing.assert_array_equal(
        restored.score(training.entries, np.arange(5)), component.score(training.entries, np.arange(5))
    )


def test_parameters_are_chosen_on_validation_only() -> None:
    x = _incidence(60, 15, seed=3, density=0.25)
    frame = _history(x).assign(rating=1.0, event_timestamp=pd.Timestamp("2026-01-01", tz="UTC"))
    valid = frame.sample(frac=0.2, random_state=1)
    fit = frame.drop(valid.index)
    grid = [{"l2": 1.0}, {"l2": 30.0}, {"l2": 1000.0}]
    chosen, _ = choose_fitted(lambda p: EASE(l2=p["l2"]), grid, fit, valid, Catalogue(), k=5)
    values = [t["ndcg_at_5"] for t in chosen["trials"]]
    assert [t["params"] for t in chosen["trials"]] == grid
    assert chosen["params"] == grid[int(np.argmax(values))] and chosen["validation_ndcg_at_5"] == max(values)
    training = Catalogue().evaluation_set(fit)
    value, n_users = validation_ndcg(EASE(l2=30.0).fit(training), training, valid, k=5, exclude_seen=True)
    assert value == pytest.approx(values[1]) and n_users == chosen["n_validation_users"] > 0


def test_rp3beta_fitted_for_a_grid_equals_one_fit_per_point() -> None:
    x = _incidence(60, 15, seed=3, density=0.25)
    frame = _history(x).assign(rating=1.0, event_timestamp=pd.Timestamp("2026-01-01", tz="UTC"))
    valid = frame.sample(frac=0.2, random_state=1)
    fit = frame.drop(valid.index)
    training = Catalogue().evaluation_set(fit)
    betas = [0.0, 0.3, 0.9]
    for beta, shared in zip(betas, RP3Beta.fitted_for_betas(training, alpha=0.7, betas=betas, top_n=4), strict=True):
        alone = RP3Beta(alpha=0.7, beta=beta, top_n=4).fit(training)
        assert (shared.beta, shared.top_n) == (beta, 4)
        assert (shared.similarity != alone.similarity).nnz == 0 and shared.similarity.nnz == alone.similarity.nnz
    grid = [{"alpha": a, "beta": b} for a in (0.5, 1.0) for b in (0.0, 0.5)]
    builder = CANDIDATES["rp3beta"][0]
    shared_trials = choose_fitted(builder, grid, fit, valid, Catalogue(), k=5)[0]["trials"]
    one_by_one = choose_fitted(lambda p: builder(p), grid, fit, valid, Catalogue(), k=5)[0]["trials"]
    assert [(t["params"], t["ndcg_at_5"]) for t in shared_trials] == [(t["params"], t["ndcg_at_5"]) for t in one_by_one]


@pytest.mark.parametrize(("name", "solver"), [("ease", "ease_weights"), ("rp3beta", "rp3beta_similarity")])
def test_a_remembered_tuning_fit_is_the_next_fit_of_the_same_part(name, solver, monkeypatch) -> None:
    x = _incidence(60, 15, seed=3, density=0.25)
    frame = _history(x).assign(rating=1.0, event_timestamp=pd.Timestamp("2026-01-01", tz="UTC"))
    valid = frame.sample(frac=0.2, random_state=1)
    fit = frame.drop(valid.index)
    build, grid = CANDIDATES[name]
    record, fitted = choose_fitted(build, grid, fit, valid, Catalogue(), k=5)
    values = [t["ndcg_at_5"] for t in record["trials"]]
    assert record["params"] == grid[int(np.argmax(values))]  # the first of the best
    kept = fit_of(fitted)
    assert kept is not None
    expected = build(record["params"]).fit(Catalogue().evaluation_set(fit)).state()[0]
    # the chosen point's fit, as one fit of its parameters gives it
    assert kept[1].keys() == expected.keys() and all(np.array_equal(kept[1][key], expected[key]) for key in expected)
    module = {"ease": ease, "rp3beta": rp3beta}[name]
    module.FITTED.results.clear()  # another process: it knows only what it is told
    remember_fit(name, *kept)
    monkeypatch.setattr(module, solver, lambda *a, **k: pytest.fail(f"{name} was fitted again"))
    again = build(record["params"]).fit(Catalogue().evaluation_set(fit)).state()[0]
    assert all(np.array_equal(again[key], expected[key]) for key in expected)
    module.FITTED.results.clear()
    with pytest.raises(pytest.fail.Exception):  # without the remembered fit, it would fit again
        build(record["params"]).fit(Catalogue().evaluation_set(fit))


def test_validation_ndcg_measures_a_seeded_sample_beyond_its_user_cap() -> None:
    x = _incidence(60, 15, seed=3, density=0.25)
    frame = _history(x).assign(rating=1.0, event_timestamp=pd.Timestamp("2026-01-01", tz="UTC"))
    valid = frame.sample(frac=0.2, random_state=1)
    training = Catalogue().evaluation_set(frame.drop(valid.index))
    model = EASE(l2=30.0).fit(training)
    _, every = validation_ndcg(model, training, valid, k=5, exclude_seen=True)
    first = validation_ndcg(model, training, valid, k=5, exclude_seen=True, max_users=every // 2)
    again = validation_ndcg(model, training, valid, k=5, exclude_seen=True, max_users=every // 2)
    assert first == again and first[1] == every // 2 < every
