"""Trending popularity, overall and per user segment.

An item's raw score in a segment is the number of the segment's users whose last interaction
with it falls in the last ``window_days`` before the data's **max** timestamp (purchasers count
double), plus 1 % of the same count over all time as a tie-breaker.  Scores are scaled to [0, 1]
per segment, and a segment's row is blended with the overall row (``global_share``) so that a
small segment still ranks every item.  Row 0 is the overall ranking (:data:`ALL_SEGMENTS`).
The hybrid's popularity *prior* is separate: ``log(1 + distinct users)`` of each item, scaled to [0, 1]:
over all time by default, or counting the users of the last ``prior_days`` (plus 1 % of the all-time
count as a tie-breaker) when a seasonal catalogue ranks better on recent demand (chosen on the
validation window, see :func:`recomart.model.blend_search.fit_blend_options`).

Both are fitted once on the training history (:class:`Popularity`); they are the hybrid's cold-start
rule (segment trending for users without history, overall trending for unknown segments).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recomart.ranking.base import Recommender, TrainingSet
from recomart.ranking.history import UserHistory

ALL_SEGMENTS = "__all__"


@dataclass(frozen=True)
class PopularityTable:
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
) -> PopularityTable:
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
    return PopularityTable(segments, scaled.astype(np.float32), reference, window_days, prior.astype(np.float32))


def popular_items_frame(pop: PopularityTable, item_ids: np.ndarray, n: int = 100) -> pd.DataFrame:
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


class Popularity(Recommender):
    """The popularity prior (``score``: the same row for every user) and the cold-start tables.

    ``window_days``: the trending window of the per-segment tables; ``prior_days``: the prior counts
    the users of the last ``prior_days`` only (``None``: all time).
    """

    def __init__(self, *, window_days: int = 30, prior_days: int | None = None, global_share: float = 0.1) -> None:
        self.window_days = int(window_days)
        self.prior_days = None if prior_days is None else int(prior_days)
        self.global_share = float(global_share)
        self.item_ids = np.zeros(0, dtype=object)
        self.table = PopularityTable(np.array([ALL_SEGMENTS], dtype=object), np.zeros((1, 0), np.float32), None, 30)

    def fit(self, training: TrainingSet) -> Popularity:
        self.item_ids = training.item_ids
        self.table = compute_popularity(
            training.history,
            training.item_ids,
            training.segments,
            window_days=self.window_days,
            global_share=self.global_share,
            prior_days=self.prior_days,
        )
        return self

    @property
    def prior(self) -> np.ndarray:
        """float32[n_items] in [0, 1]: the blend's popularity prior."""
        return self.table.prior if self.table.prior is not None else self.table.scores[0]

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.prior, (len(rows), len(self.prior)))

    def segment_rows(self, segments: pd.Series | Sequence[Any]) -> np.ndarray:
        """Row of the cold-start table for each segment (unknown or missing: the overall row 0)."""
        return self.table.segment_index(pd.Series(segments, dtype=object).reset_index(drop=True))

    def cold_start_scores(self, segment_rows: np.ndarray) -> np.ndarray:
        """float32[len(segment_rows), n_items]: trending in each user's segment."""
        return self.table.scores[segment_rows]

    def popular_frame(self, n: int = 100) -> pd.DataFrame:
        """Top ``n`` items per segment (``segment, rank, item_id, score``): ``reco.popular_items``."""
        return popular_items_frame(self.table, self.item_ids, n)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        table = self.table
        arrays = {"segments": table.segments.astype(str), "scores": table.scores}
        if table.prior is not None:
            arrays["prior"] = table.prior
        settings = {
            "window_days": self.window_days,
            "prior_days": self.prior_days,
            "global_share": self.global_share,
            "reference_time": None if table.reference_time is None else table.reference_time.isoformat(),
        }
        return arrays, settings

    @classmethod
    def from_state(cls, item_ids: np.ndarray, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> Popularity:
        component = cls(
            window_days=settings["window_days"],
            prior_days=settings["prior_days"],
            global_share=settings["global_share"],
        )
        component.item_ids = item_ids
        reference = settings.get("reference_time")
        component.table = PopularityTable(
            np.asarray(arrays["segments"]).astype(object),
            np.asarray(arrays["scores"], dtype=np.float32),
            None if reference is None else pd.Timestamp(reference),
            component.window_days,
            None if "prior" not in arrays else np.asarray(arrays["prior"], dtype=np.float32),
        )
        return component
