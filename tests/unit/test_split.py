"""Three-way splits: train < valid < test in time, per-user 75/25 with validation carved out of train, and
event splits for feeds with repeat purchases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recomart.model.split import (
    make_event_split,
    make_split,
    overlapping_pairs,
    pairs_from_events,
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


# --- event splits: repeat purchases stay in training and count in the test window ------------------
def _orders() -> pd.DataFrame:
    """u1 buys a on days 0, 50 and 95 (two lines on the last order); u2 buys b on day 10 and c on day 96."""
    day = pd.Timestamp("2026-01-01", tz="UTC")
    rows = [("u1", "a", 0, "o1", 2), ("u1", "a", 50, "o2", 1), ("u1", "a", 95, "o3", 1), ("u1", "a", 95, "o3", 4)]
    rows += [("u2", "b", 10, "o4", 1), ("u2", "c", 96, "o5", 1)]
    rows += [(f"x{n}", "b", n, f"x{n}", 1) for n in range(1, 90)]  # filler so the quantiles fall between
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "day", "order_id", "quantity"])
    frame["event_timestamp"] = day + pd.to_timedelta(frame.pop("day"), unit="D")
    return frame


def test_pairs_from_events_count_orders_and_keep_the_latest_time() -> None:
    pairs = pairs_from_events(_orders()).set_index(["user_id", "item_id"])
    a = pairs.loc[("u1", "a")]
    assert a["purchases"] == 3 and a["interactions"] == 4 and a["quantity"] == 8
    assert a["rating"] == pytest.approx(1 + np.log(3))
    assert a["event_timestamp"] == pd.Timestamp("2026-04-06", tz="UTC")
    views = pd.DataFrame(
        {"user_id": ["u"], "item_id": ["i"], "event_type": ["view"], "event_timestamp": [pd.Timestamp(0, tz="UTC")]}
    )
    assert pairs_from_events(views)[["purchases", "rating"]].values.tolist() == [[0, 1.0]]


def test_an_event_split_keeps_a_repeat_pair_in_training_and_relevant_in_test() -> None:
    events = _orders()
    split = make_event_split(events, "time_days", valid_days=50, test_days=5)
    assert split.by_events and split.info["unit"] == "events" and split.info["n_events"] == len(events)
    train = split.train.set_index(["user_id", "item_id"])
    assert train.loc[("u1", "a"), "purchases"] == 1  # day 0 only: day 50 is in the validation window
    assert ("u1", "a") in set(zip(split.valid.user_id, split.valid.item_id, strict=True))
    assert {("u1", "a"), ("u2", "c")} <= set(zip(split.test.user_id, split.test.item_id, strict=True))
    combined = split.train_valid.set_index(["user_id", "item_id"])
    assert combined.loc[("u1", "a"), "purchases"] == 2  # rebuilt from both windows' events, not stacked
    assert not split.train_valid.duplicated(["user_id", "item_id"]).any()
    assert overlapping_pairs(split.train_valid, split.test) >= 1  # the repeat pair is on both sides
    # a pair split of the same data moves the repeat pair out of training altogether
    pair_split = make_split(pairs_from_events(events), "time_days", valid_days=50, test_days=5)
    assert ("u1", "a") not in set(zip(pair_split.train_valid.user_id, pair_split.train_valid.item_id, strict=True))


def test_events_are_only_split_in_time() -> None:
    with pytest.raises(ValueError, match="in time"):
        make_event_split(_orders(), "per_user_random")
