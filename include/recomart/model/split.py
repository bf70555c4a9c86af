"""Train / validation / test splits of a user × item ratings frame."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _timestamps(df: pd.DataFrame, column: str) -> pd.Series:
    ts = pd.to_datetime(df[column], utc=True)
    if ts.isna().any():
        raise ValueError(f"{column} has missing timestamps")
    return ts


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def time_split(
    df: pd.DataFrame,
    cutoff_valid,
    cutoff_test,
    *,
    time_column: str = "event_timestamp",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(train, valid, test)``: ``t < cutoff_valid``, ``cutoff_valid <= t < cutoff_test``, ``t >= cutoff_test``.

    Naive cutoffs are read as UTC.  Pass ``cutoff_valid == cutoff_test`` for an empty validation window.
    """
    lo, hi = _utc(cutoff_valid), _utc(cutoff_test)
    if lo > hi:
        raise ValueError("cutoff_valid must not be after cutoff_test")
    ts = _timestamps(df, time_column)
    train = (ts < lo).to_numpy()
    test = (ts >= hi).to_numpy()
    valid = ~train & ~test
    return df[train], df[valid], df[test]


def time_cutoff(df: pd.DataFrame, test_fraction: float = 0.2, *, time_column: str = "event_timestamp"):
    """The timestamp after which the last ``test_fraction`` of the rows fall (a row quantile)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    ts = _timestamps(df, time_column)
    return ts.quantile(1.0 - test_fraction, interpolation="higher")


def per_user_random_split(
    df: pd.DataFrame,
    test_frac: float = 0.25,
    seed: int = 42,
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, test)`` holding out ``round(test_frac · n_u)`` pairs of each user (seeded).

    A user always keeps at least one pair in train, and every row of one user–item pair lands on
    the same side, so no test pair appears in train.
    """
    if not 0.0 < test_frac < 1.0:
        raise ValueError("test_frac must be in (0, 1)")
    pairs = df[[user_column, item_column]].astype(str)
    pair_code = pd.MultiIndex.from_frame(pairs).factorize()[0] if len(df) else np.zeros(0, int)
    first = pd.Series(pair_code).drop_duplicates()
    unique_users = pairs[user_column].to_numpy()[first.index.to_numpy()]
    rng = np.random.default_rng(seed)
    key = rng.random(len(first))
    ranks = pd.Series(key).groupby(unique_users).rank(method="first").to_numpy() - 1
    sizes = pd.Series(unique_users).map(pd.Series(unique_users).value_counts()).to_numpy()
    n_test = np.minimum(np.round(test_frac * sizes), sizes - 1)
    pair_is_test = np.zeros(len(first), dtype=bool)
    pair_is_test[first.to_numpy()] = ranks < n_test
    is_test = pair_is_test[pair_code]
    return df[~is_test], df[is_test]
