"""Bounded search: seeded candidates, the budget, selection on the validation metric."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from recomart.model.evaluate import align_factors, better
from recomart.model.tuning import candidate_params, tune
from recomart.ranking.factors import FactorModel
from recomart.ranking.scoring import pair_scores, svd_scores
from recomart.ranking.svd import sample_negatives

SPACE = {"n_factors": [8, 16], "n_epochs": [5, 10, 20], "lr_all": [0.005, 0.01]}


def test_candidate_params_base_first_distinct_and_seeded() -> None:
    base = {"n_factors": 32, "n_epochs": 20, "lr_all": 0.005, "reg_all": 0.1}
    c = candidate_params(SPACE, 5, seed=1, base=base)
    assert c[0] == base and len(c) == 5
    assert len({tuple(sorted(p.items())) for p in c}) == 5
    assert all(p["reg_all"] == 0.1 for p in c)  # keys outside the space keep the base value
    assert c == candidate_params(SPACE, 5, seed=1, base=base)
    assert c != candidate_params(SPACE, 5, seed=2, base=base)
    full = candidate_params(SPACE, 100, seed=1)
    assert len(full) == 12  # the whole grid


def test_tune_picks_the_best_on_validation_and_respects_direction() -> None:
    cands = [{"x": x} for x in (3, 1, 4, 1.5)]
    res = tune(lambda p: {"ndcg_at_10": -abs(p["x"] - 1.4)}, cands, metric="ndcg_at_10", budget_s=60)
    assert res.best_params == {"x": 1.5} and len(res.trials) == 4 and not res.stopped_by_budget
    res = tune(lambda p: {"rmse": abs(p["x"] - 3.9)}, cands, metric="rmse", budget_s=60)
    assert res.best_params == {"x": 4}


def test_tune_stops_at_the_wall_clock_budget() -> None:
    def slow(p):
        time.sleep(0.05)
        return {"ndcg_at_10": p["x"]}

    res = tune(slow, [{"x": i} for i in range(50)], metric="ndcg_at_10", budget_s=0.12)
    assert res.stopped_by_budget and 1 <= len(res.trials) < 6
    only_one = tune(slow, [{"x": 1}, {"x": 2}], metric="ndcg_at_10", budget_s=0.0)
    assert len(only_one.trials) == 1  # the first trial always runs


def test_better() -> None:
    assert better("ndcg_at_10", 0.3, 0.2) and not better("ndcg_at_10", 0.2, 0.3)
    assert better("rmse", 0.8, 0.9) and not better("mae", 0.9, 0.8)
    assert not better("ndcg_at_10", float("nan"), 0.1)


def toy_model() -> FactorModel:
    rng = np.random.default_rng(0)
    return FactorModel(
        user_ids=np.array(["a", "b", "c"], dtype=object),
        item_ids=np.array(["x", "y", "z", "w"], dtype=object),
        global_mean=3.0,
        user_bias=rng.normal(size=3),
        item_bias=rng.normal(size=4),
        user_factors=rng.normal(size=(3, 2)),
        item_factors=rng.normal(size=(4, 2)),
    )


def test_align_factors_scores_unknown_ids_like_svd_estimate() -> None:
    m = toy_model()
    users = np.array(["b", "new-user", "a"], dtype=object)
    items = np.array(["z", "new-item", "x"], dtype=object)
    aligned = align_factors(m, users, items)
    got = svd_scores(aligned, np.arange(3))
    # reference: the original model with -1 for unknown ids drops the missing terms
    uu, ii = np.meshgrid(m.user_index(users), m.item_index(items), indexing="ij")
    want = pair_scores(m, uu.ravel(), ii.ravel()).reshape(3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # unknown user on unknown item: mu alone; known user on unknown item: mu + bu
    assert got[1, 1] == pytest.approx(3.0)
    assert got[0, 1] == pytest.approx(3.0 + m.user_bias[1], rel=1e-6)


def test_negative_sampling_schemes() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 50
    users = np.repeat(np.arange(n_users), 5)
    # items 0..4 are very popular, the rest rare
    items = np.where(rng.random(len(users)) < 0.8, rng.integers(0, 5, len(users)), rng.integers(5, n_items, len(users)))
    pairs = pd.DataFrame({"u": users, "i": items}).drop_duplicates()
    u, i = pairs.u.to_numpy(), pairs.i.to_numpy()
    pos = set(zip(u.tolist(), i.tolist(), strict=True))
    for scheme in ("uniform", "popularity"):
        nu, ni = sample_negatives(u, i, n_items, 1.0, np.random.default_rng(1), scheme)
        assert not pos & set(zip(nu.tolist(), ni.tolist(), strict=True))
        assert len(set(zip(nu.tolist(), ni.tolist(), strict=True))) == len(nu)
    _, uni = sample_negatives(u, i, n_items, 1.0, np.random.default_rng(1), "uniform")
    _, pop = sample_negatives(u, i, n_items, 1.0, np.random.default_rng(1), "popularity")
    assert (pop < 5).mean() > 2 * (uni < 5).mean()
    with pytest.raises(ValueError, match="scheme"):
        sample_negatives(u, i, n_items, 1.0, np.random.default_rng(1), "bogus")
