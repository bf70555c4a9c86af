"""Trending popularity, overall and per user segment.

An item's raw score in a segment is the number of the segment's users whose last interaction
with it falls in the last ``window_days`` before the data's **max** timestamp (purchasers count
double), plus 1 % of the same count over all time as a tie-breaker.  Scores are scaled to [0, 1]
per segment, and a segment's row is blended with the overall row (``global_share``) so that a
small segment still ranks every item.  Row 0 is the overall ranking (:data:`ALL_SEGMENTS`).
The hybrid's popularity *prior* is separate: ``log(1 + distinct users)`` of each item, scaled to [0, 1]:
over all time by default, or counting the users of the last ``prior_days`` (plus 1 % of the all-time
count as a tie-breaker) when a seasonal catalogue ranks better on recent demand (chosen on the
validation window, see :func:`recomart.recommend.blend.fit_blend_options`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ALL_SEGMENTS = "__all__"


@dataclass(frozen=True)
class Popularity:
    """Popularity scores: ``scores[s, i]`` in [0, 1] for segment ``segments[s]`` and item ``i``."""

    segments: np.ndarray  # str[n_segments], segments[0] == ALL_SEGMENTS
    scores: np.ndarray  # float32[n_segments, n_items]
    reference_time: pd.Timestamp | None
    window_days: int
    #: float32[n_items] in [0, 1]: log(1 + distinct users of the item), scaled; the blend's prior
    prior: np.ndarray | None = None

    def segment_index(self, segment: pd.Series) -> np.ndarray:
        """Row of ``scores`` for each segment value; unknown or missing segments map to 0 (overall)."""
        lookup = pd.Series(np.arange(len(self.segments)), index=self.segments)
        return segment.map(lookup).fillna(0).to_numpy(dtype=np.int64)


def _scale_rows(matrix: np.ndarray) -> np.ndarray:
    top = matrix.max(axis=1, keepdims=True)
    return np.divide(matrix, top, out=np.zeros_like(matrix), where=top > 0)


def compute_popularity(
    ratings: pd.DataFrame,
    item_ids: np.ndarray,
    user_segments: pd.Series,
    *,
    window_days: int = 30,
    global_share: float = 0.1,
    prior_days: int | None = None,
) -> Popularity:
    """Popularity from ``ratings`` (``user_id, item_id, purchases, last_interaction_at``, one row per pair).

    ``item_ids`` is the sorted item universe (the score columns); ``user_segments`` maps
    ``user_id`` (index) to segment.  Items outside ``item_ids`` are ignored.  ``prior_days``: the
    prior counts the users of the last ``prior_days`` only (``None``: all time).
    """
    seg_values = user_segments.dropna().astype(str)
    segments = np.array([ALL_SEGMENTS, *sorted(set(seg_values.unique()) - {ALL_SEGMENTS})], dtype=object)
    n_items, n_seg = len(item_ids), len(segments)
    raw = np.zeros((n_seg, n_items), dtype=np.float64)
    prior = np.zeros(n_items, dtype=np.float64)
    reference = None
    if len(ratings) and n_items:
        cols = np.searchsorted(item_ids, ratings["item_id"].to_numpy())
        cols = np.clip(cols, 0, n_items - 1)
        valid = item_ids[cols] == ratings["item_id"].to_numpy()
        ts = pd.to_datetime(ratings["last_interaction_at"], utc=True)
        reference = ts.max()
        recent = (ts >= reference - pd.Timedelta(days=window_days)).to_numpy()
        purchases = pd.to_numeric(ratings.get("purchases", 0), errors="coerce")
        weight = 1.0 + (np.asarray(purchases, dtype=np.float64) > 0)
        score = weight * (recent + 0.01)
        lookup = pd.Series(np.arange(n_seg), index=segments)
        seg_rows = ratings["user_id"].map(seg_values).map(lookup).fillna(-1).to_numpy(dtype=np.int64)
        score, cols, seg_rows = score[valid], cols[valid], seg_rows[valid]
        raw[0] = np.bincount(cols, weights=score, minlength=n_items)
        users_all = np.bincount(cols, minlength=n_items).astype(np.float64)
        if prior_days is None:
            prior = np.log1p(users_all)
        else:
            since = (ts >= reference - pd.Timedelta(days=prior_days)).to_numpy()[valid]
            prior = np.log1p(np.bincount(cols, weights=since.astype(np.float64), minlength=n_items) + 0.01 * users_all)
        in_seg = seg_rows > 0
        flat = np.bincount(seg_rows[in_seg] * n_items + cols[in_seg], weights=score[in_seg], minlength=n_seg * n_items)
        raw[1:] = flat.reshape(n_seg, n_items)[1:]
    scaled = _scale_rows(raw)
    scaled[1:] = (1.0 - global_share) * scaled[1:] + global_share * scaled[0]
    top = prior.max() if n_items else 0.0
    prior = prior / top if top > 0 else prior
    return Popularity(segments, scaled.astype(np.float32), reference, window_days, prior.astype(np.float32))


def popular_items_frame(pop: Popularity, item_ids: np.ndarray, n: int = 100) -> pd.DataFrame:
    """Top ``n`` items per segment as rows ``segment, rank, item_id, score`` (ties broken by item id)."""
    n = min(n, len(item_ids))
    if n == 0:
        return pd.DataFrame({"segment": [], "rank": [], "item_id": [], "score": []})
    # stable sort on -score keeps item-id order among ties (item_ids are sorted)
    order = np.argsort(-pop.scores, axis=1, kind="stable")[:, :n]
    n_seg = len(pop.segments)
    return pd.DataFrame(
        {
            "segment": np.repeat(pop.segments, n),
            "rank": np.tile(np.arange(1, n + 1, dtype=np.int32), n_seg),
            "item_id": item_ids[order].ravel(),
            "score": np.take_along_axis(pop.scores, order, axis=1).ravel().astype(np.float64),
        }
    )
