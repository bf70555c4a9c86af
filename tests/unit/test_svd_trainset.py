"""The SVD's array-built surprise trainset and its compiled negative sampling give what surprise's own
per-user rating lists and the sort-based sampling gave: the same SGD input, the same negatives; a fit
depends on the rows alone, not their order, so a repeated fit is a lookup."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from surprise import SVD, Trainset

from recomart.ranking import svd
from recomart.ranking.factors import FactorModel
from recomart.ranking.kept import Kept
from recomart.ranking.svd import SVDSettings, build_trainset, sample_negatives


def _pairs(seed: int, n_users: int = 60, n_items: int = 25, n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{v}" for v in rng.integers(0, n_users, n)],
            "item_id": [f"i{v}" for v in rng.integers(0, n_items, n)],
            "rating": rng.integers(1, 6, n).astype(float),
        }
    )
    return frame.drop_duplicates(["user_id", "item_id"]).sample(frac=1.0, random_state=seed)


def _lists_trainset(pairs: pd.DataFrame) -> Trainset:
    """surprise's own layout: per-user and per-item rating lists, users and items by sorted raw id."""
    users, items = sorted(pairs["user_id"].unique()), sorted(pairs["item_id"].unique())
    u_of, i_of = {u: n for n, u in enumerate(users)}, {i: n for n, i in enumerate(items)}
    ur: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    ir: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    for user, item, rating in sorted(pairs.itertuples(index=False), key=lambda t: (u_of[t[0]], i_of[t[1]])):
        ur[u_of[user]].append((i_of[item], float(rating)))
        ir[i_of[item]].append((u_of[user], float(rating)))
    return Trainset(ur, ir, len(users), len(items), len(pairs), (1.0, 5.0), u_of, i_of)


@pytest.mark.parametrize("seed", [0, 1])
def test_array_trainset_feeds_the_sgd_what_surprises_lists_would(seed: int) -> None:
    pairs = _pairs(seed)
    built = build_trainset(
        pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy(), pairs["rating"].to_numpy(), (1.0, 5.0)
    )
    reference = _lists_trainset(pairs)
    assert list(built.all_ratings()) == list(reference.all_ratings())
    assert built.global_mean == reference.global_mean
    assert (built.n_users, built.n_items, built.n_ratings) == (
        reference.n_users,
        reference.n_items,
        reference.n_ratings,
    )
    assert built.knows_user(built.n_users - 1) and not built.knows_user(built.n_users)
    assert built.knows_item(0) and not built.knows_item(-1)
    fitted = [SVD(biased=True, random_state=7, n_factors=4, n_epochs=3).fit(t) for t in (built, reference)]
    models = [
        FactorModel.from_surprise(algo, t).to_arrays() for algo, t in zip(fitted, (built, reference), strict=True)
    ]
    for key, value in models[0].items():
        np.testing.assert_array_equal(value, models[1][key], err_msg=key)


def _sorted_negatives(user_codes, item_codes, n_items, ratio, rng, scheme):  # type: ignore[no-untyped-def]
    """The sort-based definition: draw, drop positives, keep first occurrences in draw order, cap per user."""
    users, counts = np.unique(user_codes, return_counts=True)
    wanted = np.ceil(counts * ratio).astype(np.int64)
    draws = np.minimum(np.ceil(wanted * 1.3).astype(np.int64) + 2, 4 * n_items)
    neg_users = np.repeat(users, draws)
    if scheme == "popularity":
        weights = np.bincount(item_codes, minlength=n_items).astype(np.float64) + 1.0
        neg_items = rng.choice(n_items, size=len(neg_users), p=weights / weights.sum())
    else:
        neg_items = rng.integers(0, n_items, size=len(neg_users))
    keys = neg_users.astype(np.int64) * n_items + neg_items
    keys = keys[~np.isin(keys, np.unique(user_codes.astype(np.int64) * n_items + item_codes))]
    _, first = np.unique(keys, return_index=True)
    keys = keys[np.sort(first)]
    key_users = keys // n_items
    rank = pd.Series(key_users).groupby(key_users).cumcount().to_numpy()
    keys = keys[rank < pd.Series(wanted, index=users).reindex(key_users).to_numpy()]
    return keys // n_items, keys % n_items


@pytest.mark.parametrize("scheme", ["uniform", "popularity"])
@pytest.mark.parametrize("ratio", [0.5, 1.0, 3.0])
def test_compiled_negatives_equal_the_sort_based_definition(scheme: str, ratio: float) -> None:
    rng = np.random.default_rng(5)
    n_items = 12  # small, so that draws collide with positives and with each other, and some users run short
    user_codes = np.repeat(np.array([0, 3, 4, 9, 10]), [2, 11, 5, 1, 8])
    item_codes = np.concatenate([rng.choice(n_items, size=n, replace=False) for n in (2, 11, 5, 1, 8)])
    got = sample_negatives(user_codes, item_codes, n_items, ratio, np.random.default_rng(3), scheme)
    expected = _sorted_negatives(user_codes, item_codes, n_items, ratio, np.random.default_rng(3), scheme)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[0].dtype == got[1].dtype == np.int64


def test_a_fit_depends_on_the_rows_not_their_order_and_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = _pairs(3)
    settings = SVDSettings(params={"n_factors": 4, "n_epochs": 3})
    monkeypatch.setattr(svd, "FITTED", Kept(4))
    first, n_negatives = svd.fit_biased_svd(pairs, settings)
    svd.FITTED.results.clear()
    shuffled, _ = svd.fit_biased_svd(pairs.sample(frac=1.0, random_state=9), settings)
    for key, value in first.to_arrays().items():
        np.testing.assert_array_equal(value, shuffled.to_arrays()[key], err_msg=key)
    kept, kept_negatives = svd.fit_biased_svd(pairs.iloc[::-1], settings)
    assert kept is shuffled and kept_negatives == n_negatives  # kept, not refitted
    other_settings, _ = svd.fit_biased_svd(pairs, SVDSettings(params={"n_factors": 4, "n_epochs": 3}, seed=1))
    fewer_rows, _ = svd.fit_biased_svd(pairs.iloc[1:], settings)
    changed_rating, _ = svd.fit_biased_svd(
        pairs.assign(rating=pairs["rating"].where(pairs.index != pairs.index[0], 0.5)), settings
    )
    assert len({id(m) for m in (shuffled, other_settings, fewer_rows, changed_rating)}) == 4
    assert len(svd.FITTED.results) == svd.FITTED.size
