"""Three-way splits: train < valid < test in time, per-user 75/25 with validation carved out of train."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recomart.model.split import (
    make_split,
    overlapping_pairs,
    per_user_random_split,
    per_user_three_way_split,
    time_days_split,
    time_window_split,
)


def ratings(n_users: int = 40, per_user: int = 12, n_items: int = 60, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    users = np.repeat(np.arange(n_users), per_user)
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 100, len(users)), unit="D")
    return pd.DataFrame(
        {"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items], "rating": 1.0, "event_timestamp": ts}
    )


def test_time_window_split_orders_train_valid_test() -> None:
    df = ratings()
    s = time_window_split(df, valid_fraction=0.1, test_fraction=0.2)
    assert len(s.train) + len(s.valid) + len(s.test) == len(df)
    assert s.train.event_timestamp.max() < s.valid.event_timestamp.min()
    assert s.valid.event_timestamp.max() < s.test.event_timestamp.min()
    assert len(s.test) == pytest.approx(0.2 * len(df), abs=2)
    assert len(s.valid) == pytest.approx(0.1 * len(df), abs=2)
    assert overlapping_pairs(s.train_valid, s.test) == 0  # one row per pair: time windows never share one
    with pytest.raises(ValueError):
        time_window_split(df, valid_fraction=0.5, test_fraction=0.5)


def test_time_days_split_windows() -> None:
    df = ratings()
    s = time_days_split(df, valid_days=10, test_days=30)
    end = df.event_timestamp.max()
    assert s.test.event_timestamp.min() >= end - pd.Timedelta(days=30)
    assert s.train_valid.event_timestamp.max() < end - pd.Timedelta(days=30)
    assert s.valid.event_timestamp.min() >= end - pd.Timedelta(days=40)
    assert s.train.event_timestamp.max() < end - pd.Timedelta(days=40)


def test_per_user_three_way_split_has_no_test_pair_in_train() -> None:
    df = ratings()
    # a repeated pair (two rows of one user-item pair) must land on one side only
    df = pd.concat([df, df.iloc[:40]], ignore_index=True)
    s = per_user_three_way_split(df, test_frac=0.25, valid_frac=0.2, seed=7)
    assert overlapping_pairs(s.train_valid, s.test) == 0
    assert overlapping_pairs(s.train, s.valid) == 0
    assert len(s.train) + len(s.valid) + len(s.test) == len(df)
    # the test part is the one of the plain 75/25 split (comparable with published results)
    _, test = per_user_random_split(df, 0.25, 7)
    pd.testing.assert_frame_equal(s.test, test)
    # stratified per user: every user keeps training pairs and about a quarter goes to test
    per_user = s.test.groupby("user_id").size() / df.groupby("user_id").size()
    assert per_user.between(0.2, 0.35).all()
    assert set(s.train.user_id) == set(df.user_id)
    # seeded
    again = per_user_three_way_split(df.sample(frac=1.0, random_state=1).sort_index(), 0.25, 0.2, seed=7)
    pd.testing.assert_frame_equal(again.valid, s.valid)
    other = per_user_three_way_split(df, 0.25, 0.2, seed=8)
    assert not other.test.index.equals(s.test.index)


def test_overlapping_pairs_detects_a_leak() -> None:
    df = ratings()
    s = per_user_three_way_split(df, seed=1)
    leaky = pd.concat([s.train, s.test.iloc[:3]])
    assert overlapping_pairs(leaky, s.test) == 3


def test_make_split_dispatch() -> None:
    df = ratings()
    assert make_split(df, "time").info["kind"] == "time"
    assert make_split(df, "time_days", valid_days=5, test_days=10).info["kind"] == "time_days"
    assert make_split(df, "per_user_random", seed=3).info["seed"] == 3
    with pytest.raises(ValueError, match="unknown split"):
        make_split(df, "bogus")
