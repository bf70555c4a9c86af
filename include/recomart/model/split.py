"""Train / validation / test splits of a user × item ratings frame, or of interaction events.

Pair splits (:func:`make_split`) put every row of one user–item pair on one side.  For feeds with
repeat purchases that moves each repeat pair wholly into the test window and hides the strongest
replenishment signal, so those feeds split their *events* in time (:func:`make_event_split`) and
rebuild each part's pairs from its own events (:func:`pairs_from_events`): a pair bought before the
cut and again after it is in the training part *and* relevant in the test window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

TimestampLike = pd.Timestamp | datetime | str
"""A cutoff: a timestamp, or an ISO string; naive values are read as UTC."""


def _timestamps(df: pd.DataFrame, column: str) -> pd.Series:
    ts = pd.to_datetime(df[column], utc=True)
    if ts.isna().any():
        raise ValueError(f"{column} has missing timestamps")
    return ts


def _utc(value: TimestampLike) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def time_split(
    df: pd.DataFrame,
    cutoff_valid: TimestampLike,
    cutoff_test: TimestampLike,
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


def time_cutoff(df: pd.DataFrame, test_fraction: float = 0.2, *, time_column: str = "event_timestamp") -> pd.Timestamp:
    """The timestamp after which the last ``test_fraction`` of the rows fall (a row quantile)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    ts = _timestamps(df, time_column)
    return pd.Timestamp(ts.quantile(1.0 - test_fraction, interpolation="higher"))


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


# --- three-way splits: hyper-parameters on validation, test scored once ------------------
@dataclass(frozen=True)
class Split:
    """``train`` < ``valid`` < ``test`` (time) or disjoint per-user parts (random), plus a description.

    ``combined``: the pairs of train and validation together when they are not the concatenation of
    both parts (event splits rebuild them from the events of both windows).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    info: dict[str, Any]
    combined: pd.DataFrame | None = None

    @property
    def train_valid(self) -> pd.DataFrame:
        """Train and validation together: what the final candidate is refitted on before the test."""
        if self.combined is not None:
            return self.combined
        return pd.concat([self.train, self.valid], ignore_index=True)

    @property
    def by_events(self) -> bool:
        """Whether the parts were cut from events (test pairs may then also be in train)."""
        return self.info.get("unit") == "events"


def time_window_split(
    df: pd.DataFrame,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    *,
    time_column: str = "event_timestamp",
) -> Split:
    """Train before a cutoff, then a validation window, then a test window (row quantiles in time).

    The test window holds the last ``test_fraction`` of the rows, the validation window the
    ``valid_fraction`` before it.
    """
    if min(valid_fraction, test_fraction) <= 0.0 or valid_fraction + test_fraction >= 1.0:
        raise ValueError("need 0 < valid_fraction, 0 < test_fraction and their sum < 1")
    cutoff_test = time_cutoff(df, test_fraction, time_column=time_column)
    cutoff_valid = time_cutoff(df, test_fraction + valid_fraction, time_column=time_column)
    train, valid, test = time_split(df, cutoff_valid, cutoff_test, time_column=time_column)
    info = {
        "kind": "time",
        "cutoff_valid": pd.Timestamp(cutoff_valid).isoformat(),
        "cutoff_test": pd.Timestamp(cutoff_test).isoformat(),
        "valid_fraction": float(valid_fraction),
        "test_fraction": float(test_fraction),
    }
    return Split(train, valid, test, info)


def time_days_split(
    df: pd.DataFrame,
    valid_days: float,
    test_days: float,
    *,
    time_column: str = "event_timestamp",
) -> Split:
    """Test = the last ``test_days`` before the latest timestamp, validation = the ``valid_days`` before."""
    ts = _timestamps(df, time_column)
    end = ts.max()
    cutoff_test = end - pd.Timedelta(days=test_days)
    cutoff_valid = cutoff_test - pd.Timedelta(days=valid_days)
    train, valid, test = time_split(df, cutoff_valid, cutoff_test, time_column=time_column)
    info = {
        "kind": "time_days",
        "cutoff_valid": cutoff_valid.isoformat(),
        "cutoff_test": cutoff_test.isoformat(),
        "valid_days": float(valid_days),
        "test_days": float(test_days),
    }
    return Split(train, valid, test, info)


def per_user_three_way_split(
    df: pd.DataFrame,
    test_frac: float = 0.25,
    valid_frac: float = 0.2,
    seed: int = 42,
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
) -> Split:
    """Per-user stratified ``1 - test_frac`` / ``test_frac`` split (seeded), validation carved out of train.

    ``valid_frac`` is the share of each user's *training* pairs moved to validation, so the test
    part is exactly the one :func:`per_user_random_split` gives for the same seed (comparable with
    published 75/25 results).
    """
    rest, test = per_user_random_split(df, test_frac, seed, user_column=user_column, item_column=item_column)
    train, valid = per_user_random_split(rest, valid_frac, seed + 1, user_column=user_column, item_column=item_column)
    info = {
        "kind": "per_user_random",
        "test_frac": float(test_frac),
        "valid_frac": float(valid_frac),
        "seed": int(seed),
    }
    return Split(train, valid, test, info)


def make_split(df: pd.DataFrame, kind: str = "time", *, seed: int = 42, **options: Any) -> Split:
    """Dispatch on ``kind``: ``time`` (fractions), ``time_days`` (windows in days) or ``per_user_random``."""
    if kind == "time":
        return time_window_split(df, **options)
    if kind == "time_days":
        return time_days_split(df, **options)
    if kind == "per_user_random":
        return per_user_three_way_split(df, seed=seed, **options)
    raise ValueError(f"unknown split kind {kind!r} (time, time_days or per_user_random)")


def pairs_from_events(events: pd.DataFrame) -> pd.DataFrame:
    """One row per user–item pair of ``events`` (``user_id, item_id, event_timestamp`` and optional
    ``event_type`` (default: every event a purchase), ``order_id`` (default: one order per event),
    ``quantity``): ``user_id, item_id, rating, event_timestamp, purchases, interactions, quantity``,
    sorted by user then item.

    ``purchases`` counts the distinct orders of purchase events, ``event_timestamp`` is the pair's
    latest event and ``rating = 1 + ln(max(purchases, 1))`` (the accuracy benchmark's UCI rating).
    """
    frame = pd.DataFrame(
        {
            "user_id": events["user_id"].astype(str).to_numpy(),
            "item_id": events["item_id"].astype(str).to_numpy(),
            "event_timestamp": pd.to_datetime(events["event_timestamp"], utc=True).reset_index(drop=True),
            "quantity": events["quantity"].to_numpy() if "quantity" in events else 1,
        }
    )
    purchase = (events["event_type"] == "purchase").to_numpy() if "event_type" in events else np.ones(len(frame), bool)
    orders = events["order_id"].astype(str).to_numpy() if "order_id" in events else np.arange(len(frame)).astype(str)
    frame["purchase_order"] = pd.Series(orders, dtype=object).where(purchase)
    pairs = frame.groupby(["user_id", "item_id"], as_index=False, sort=True).agg(
        purchases=("purchase_order", "nunique"),
        interactions=("purchase_order", "size"),
        quantity=("quantity", "sum"),
        event_timestamp=("event_timestamp", "max"),
    )
    pairs["rating"] = 1.0 + np.log(np.maximum(pairs["purchases"].to_numpy(np.float64), 1.0))
    columns = ["user_id", "item_id", "rating", "event_timestamp", "purchases", "interactions", "quantity"]
    return pairs[columns]


def make_event_split(events: pd.DataFrame, kind: str = "time", **options: Any) -> Split:
    """A time split (``time`` or ``time_days``, see :func:`make_split`) of ``events`` whose parts are
    the pairs of their own events (:func:`pairs_from_events`); ``combined`` holds the pairs of the
    train and validation events together."""
    if kind not in ("time", "time_days"):
        raise ValueError(f"events are split in time (time or time_days), not {kind!r}")
    cut = make_split(events, kind, **options)
    info = {**cut.info, "unit": "events", "n_events": int(len(events))}
    combined = pairs_from_events(pd.concat([cut.train, cut.valid], ignore_index=True))
    return Split(
        pairs_from_events(cut.train), pairs_from_events(cut.valid), pairs_from_events(cut.test), info, combined
    )


def overlapping_pairs(a: pd.DataFrame, b: pd.DataFrame, columns: tuple[str, str] = ("user_id", "item_id")) -> int:
    """Number of distinct (user, item) pairs present in both frames (0 for a leak-free split)."""
    cols = list(columns)
    left = a[cols].astype(str).drop_duplicates()
    right = b[cols].astype(str).drop_duplicates()
    return int(len(left.merge(right, on=cols, how="inner")))
