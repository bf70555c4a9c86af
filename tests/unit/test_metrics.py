"""Metrics and splits on small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recomart.model.split import per_user_random_split, time_cutoff, time_split
from recomart.ranking import metrics as M

# user 0: relevant {1, 4}; top = [1, 2, 4] → hits at ranks 1 and 3
# user 1: relevant {0};    top = [3, 2, -1] → no hit
# user 2: no relevant item → left out of every ranking metric
TOP = np.array([[1, 2, 4], [3, 2, -1], [0, 1, 2]])
REL = sp.csr_matrix((np.ones(3), ([0, 0, 1], [1, 4, 0])), shape=(3, 5))


def test_precision_recall_hit_rate() -> None:
    assert M.precision_at_k(TOP, REL, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert M.recall_at_k(TOP, REL, 3) == pytest.approx((1.0 + 0) / 2)
    assert M.hit_rate_at_k(TOP, REL, 3) == pytest.approx(0.5)
    # at k = 1 only the first column counts
    assert M.precision_at_k(TOP, REL, 1) == pytest.approx(0.5)
    assert M.recall_at_k(TOP, REL, 1) == pytest.approx(0.25)


def test_ndcg() -> None:
    dcg0 = 1 / math.log2(2) + 1 / math.log2(4)
    idcg0 = 1 / math.log2(2) + 1 / math.log2(3)
    assert M.ndcg_at_k(TOP, REL, 3) == pytest.approx((dcg0 / idcg0 + 0) / 2)
    perfect = np.array([[4, 1, 0]])
    assert M.ndcg_at_k(perfect, REL[:1], 3) == pytest.approx(1.0)


def test_map() -> None:
    ap0 = (1 / 1 + 2 / 3) / 2
    assert M.map_at_k(TOP, REL, 3) == pytest.approx(ap0 / 2)


def test_minus_one_padding_never_hits_previous_user() -> None:
    # key (u, -1) would alias (u-1, n_items-1) without the explicit guard
    top = np.array([[0], [-1]])
    rel = sp.csr_matrix((np.ones(2), ([0, 1], [4, 0])), shape=(2, 5))
    rel_prev_last = sp.csr_matrix((np.ones(2), ([0, 1], [4, 1])), shape=(2, 5))
    assert M.hit_matrix(top, rel_prev_last).sum() == 0
    assert M.hit_rate_at_k(top, rel, 1) == 0.0


def test_ranking_metrics_dict_and_coverage() -> None:
    out = M.ranking_metrics(TOP, REL, 3)
    assert set(out) == {"precision_at_3", "recall_at_3", "ndcg_at_3", "map_at_3", "hit_rate_at_3"}
    assert M.catalog_coverage(TOP, 10) == pytest.approx(5 / 10)  # items 0..4
    assert M.user_coverage(np.array([0, -1, 3, 2])) == pytest.approx(0.75)


def test_rmse_mae() -> None:
    assert M.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert M.mae([1, 2, 3], [2, 2, 1]) == pytest.approx(1.0)
    assert math.isnan(M.rmse([], []))


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        M.precision_at_k(TOP, REL[:2], 3)
    with pytest.raises(ValueError):
        M.precision_at_k(TOP, REL, 4)


def _frame(n_users: int = 50, per_user: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = np.repeat([f"u{i}" for i in range(n_users)], per_user)
    items = np.concatenate([rng.choice(40, per_user, replace=False) for _ in range(n_users)])
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 30, len(users)), unit="D")
    return pd.DataFrame({"user_id": users, "item_id": [f"i{i}" for i in items], "rating": 1.0, "event_timestamp": ts})


def test_per_user_random_split_is_disjoint_seeded_and_keeps_users() -> None:
    df = _frame()
    df = pd.concat([df, df.iloc[:5]])  # duplicate pairs must land on one side
    train, test = per_user_random_split(df, test_frac=0.25, seed=7)
    assert len(train) + len(test) == len(df)
    pairs_train = set(zip(train.user_id, train.item_id, strict=True))
    pairs_test = set(zip(test.user_id, test.item_id, strict=True))
    assert not pairs_train & pairs_test
    assert set(train.user_id) == set(df.user_id)  # every user keeps a training pair
    assert test.drop_duplicates(["user_id", "item_id"]).groupby("user_id").size().eq(3).all()  # round(.25*12)
    train2, test2 = per_user_random_split(df, test_frac=0.25, seed=7)
    pd.testing.assert_frame_equal(test, test2)
    _, test3 = per_user_random_split(df, test_frac=0.25, seed=8)
    assert not test.equals(test3)


def test_time_split_windows() -> None:
    df = _frame()
    c1, c2 = pd.Timestamp("2026-01-20"), pd.Timestamp("2026-01-25", tz="UTC")
    train, valid, test = time_split(df, c1, c2)
    assert len(train) + len(valid) + len(test) == len(df)
    assert train.event_timestamp.max() < c1.tz_localize("UTC") <= valid.event_timestamp.min()
    assert valid.event_timestamp.max() < c2 <= test.event_timestamp.min()
    cutoff = time_cutoff(df, 0.2)
    _, _, tail = time_split(df, cutoff, cutoff)
    assert abs(len(tail) / len(df) - 0.2) < 0.01
    with pytest.raises(ValueError):
        time_split(df, c2, c1)
