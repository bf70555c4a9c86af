"""Biased SVD (scikit-surprise ``SVD(biased=True)``): fitted with sampled negatives, scored by GEMM.

Implicit mode (default, for shop data): observed user–item pairs are positives carrying their
rating, and for each user ``negative_ratio × n_positives`` items the user never touched (in the data
the model is fitted on) are added with ``negative_rating`` (seeded; uniform over the catalogue, or in
proportion to item popularity), so the factors learn to rank observed items above unobserved ones
instead of only fitting ratings.

Scoring never calls surprise's per-pair ``predict`` / ``test`` / ``estimate``: the fitted factors are
copied into a :class:`~recomart.ranking.factors.FactorModel` and users are scored against every item
with one matrix product per user block (:mod:`recomart.ranking.scoring`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import pandas as pd

from recomart.ranking.base import RankedItems, Recommender, TrainingSet, top_neighbours
from recomart.ranking.factors import FactorModel
from recomart.ranking.history import ExcludePolicy, UserHistory
from recomart.ranking.kept import Kept, digest
from recomart.ranking.scoring import recommend_top_k, svd_scores

if TYPE_CHECKING:
    from recomart.ranking.svd_trainset import PairsTrainset

NEGATIVE_SCHEMES = ("uniform", "popularity")
#: surprise ``SVD`` arguments that are not hyper-parameters of the search (set by the settings)
RESERVED_PARAMS = ("biased", "random_state")


@dataclass(frozen=True)
class SVDSettings:
    """How one biased SVD is fitted: surprise hyper-parameters (``n_factors``, ``n_epochs``, ``lr_all``,
    ``reg_all``, ``init_std_dev``, ...), the seed and the implicit-feedback negatives."""

    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 42
    implicit: bool = True
    negative_ratio: float = 1.0
    negative_rating: float = 0.0
    negative_sampling: str = "uniform"

    def __post_init__(self) -> None:
        if self.negative_sampling not in NEGATIVE_SCHEMES:
            raise ValueError(f"negative_sampling must be one of {NEGATIVE_SCHEMES}")

    @property
    def svd_params(self) -> dict[str, Any]:
        """The surprise keyword arguments (without ``biased`` / ``random_state``, which are fixed)."""
        return {key: value for key, value in self.params.items() if key not in RESERVED_PARAMS}


def sample_negatives(
    user_codes: np.ndarray,
    item_codes: np.ndarray,
    n_items: int,
    ratio: float,
    rng: np.random.Generator,
    scheme: str = "uniform",
) -> tuple[np.ndarray, np.ndarray]:
    """About ``ratio × positives`` distinct unobserved items per user (vectorised draws, one compiled pass).

    ``scheme`` ``uniform`` draws items uniformly; ``popularity`` draws them in proportion to their
    number of positives (popular unobserved items are the informative negatives).  Draws with
    replacement, then keeps each user's first draws that hit neither a positive nor an earlier draw;
    users who have seen nearly the whole catalogue get fewer negatives.  Returns (user codes, item
    codes) of the negatives, int64, users ascending and each user's negatives in draw order.
    """
    if scheme not in NEGATIVE_SCHEMES:
        raise ValueError(f"unknown negative sampling scheme {scheme!r} ({', '.join(NEGATIVE_SCHEMES)})")
    if ratio <= 0 or len(user_codes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    users, counts = np.unique(user_codes, return_counts=True)
    wanted = np.ceil(counts * ratio).astype(np.int64)
    # oversample a little so collisions with positives rarely leave a user short
    draws = np.minimum(np.ceil(wanted * 1.3).astype(np.int64) + 2, 4 * n_items)
    n_draws = int(draws.sum())
    if scheme == "popularity":
        counts_per_item = np.bincount(item_codes, minlength=n_items).astype(np.float64) + 1.0
        neg_items = rng.choice(n_items, size=n_draws, p=counts_per_item / counts_per_item.sum())
    else:
        neg_items = rng.integers(0, n_items, size=n_draws)
    neg_items = neg_items.astype(np.int64)
    groups = np.searchsorted(users, user_codes).astype(np.int64)
    keep = _fresh_draws(groups, item_codes.astype(np.int64), draws, wanted, neg_items, n_items)
    return np.repeat(users.astype(np.int64), draws)[keep], neg_items[keep]


@numba.njit(cache=True, nogil=True)
def _fresh_draws(  # pragma: no cover - jit
    groups: np.ndarray, items: np.ndarray, draws: np.ndarray, wanted: np.ndarray, drawn: np.ndarray, n_items: int
) -> np.ndarray:
    """Which of ``drawn`` (``draws[g]`` consecutive draws per user group ``g``) are kept: per group, the
    first ``wanted[g]`` draws that are neither one of its positives (``items`` where ``groups == g``)
    nor an earlier draw.  One stamp per item marks the group that last saw it."""
    n_groups = len(draws)
    starts = np.zeros(n_groups + 1, dtype=np.int64)
    for g in groups:
        starts[g + 1] += 1
    for g in range(n_groups):
        starts[g + 1] += starts[g]
    grouped, fill = np.empty(len(items), dtype=np.int64), starts[:-1].copy()
    for p in range(len(items)):
        grouped[fill[groups[p]]] = items[p]
        fill[groups[p]] += 1
    stamp = np.full(n_items, -1, dtype=np.int64)
    keep = np.zeros(len(drawn), dtype=np.bool_)
    first = 0
    for g in range(n_groups):
        for p in range(starts[g], starts[g + 1]):
            stamp[grouped[p]] = g
        taken = 0
        for q in range(first, first + draws[g]):
            if taken < wanted[g] and stamp[drawn[q]] != g:
                stamp[drawn[q]], keep[q] = g, True
                taken += 1
        first += draws[g]
    return keep


def build_trainset(
    user_ids: np.ndarray, item_ids: np.ndarray, ratings: np.ndarray, rating_scale: tuple[float, float]
) -> PairsTrainset:
    """The trainset ``SVD.fit`` learns from (sorted raw ids → inner ids), without per-row dict lookups.

    Inner ids follow the sorted raw ids and each user's ratings are visited in item order, so the SGD
    visits ratings in a deterministic order whatever the input row order was
    (:class:`~recomart.ranking.svd_trainset.PairsTrainset`).
    """
    from recomart.ranking.svd_trainset import PairsTrainset

    u_codes, u_uniques = pd.factorize(pd.Series(user_ids, dtype=str), sort=True)
    i_codes, i_uniques = pd.factorize(pd.Series(item_ids, dtype=str), sort=True)
    values = np.asarray(ratings, dtype=np.float64)
    return PairsTrainset(u_codes, i_codes, values, u_uniques, i_uniques, rating_scale)


#: the last fits of this process (a training round fits the same SVD on the same window for its blend
#: and for its ranker's candidates: the second is a lookup)
FITTED: Kept[tuple[FactorModel, int]] = Kept(4)


def _fit_key(pairs: pd.DataFrame, settings: SVDSettings) -> str:
    """A digest of ``settings`` and of the multiset of ``(user_id, item_id, rating)`` rows (row order does
    not change a fit: :func:`build_trainset` and :func:`sample_negatives` order by id)."""
    rows = pd.util.hash_pandas_object(pairs[["user_id", "item_id", "rating"]], index=False).to_numpy()
    fitted_by = (sorted(settings.svd_params.items()), settings.seed, settings.implicit, settings.negative_ratio)
    return digest(np.sort(rows), repr((*fitted_by, settings.negative_rating, settings.negative_sampling)))


def fit_biased_svd(pairs: pd.DataFrame, settings: SVDSettings) -> tuple[FactorModel, int]:
    """Fit surprise's SVD on the ``user_id, item_id, rating`` positives of ``pairs`` (plus sampled
    negatives in implicit mode); returns (the factors, the number of negatives added).

    A fit is a function of the rows (in any order) and ``settings`` alone, so the last few fits are
    kept (:data:`FITTED`): fitting the same rows with the same settings again returns the kept factors."""
    return FITTED.get(_fit_key(pairs, settings), lambda: _fit_surprise(pairs, settings))


def remember_fit(pairs: pd.DataFrame, settings: SVDSettings, fitted: tuple[FactorModel, int]) -> None:
    """Keep ``fitted`` (factors, negatives added) as :func:`fit_biased_svd`'s result for ``pairs`` and
    ``settings``: a fit made by another process on the same rows (the train DAG's refit tasks)."""
    FITTED.put(_fit_key(pairs, settings), fitted)


def _fit_surprise(pairs: pd.DataFrame, settings: SVDSettings) -> tuple[FactorModel, int]:
    from surprise import SVD

    users, items = pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy()
    ratings = pairs["rating"].to_numpy(dtype=np.float64)
    n_negatives = 0
    low, high = float(ratings.min()), float(ratings.max())
    if settings.implicit and settings.negative_ratio > 0:
        u_codes, u_uniques = pd.factorize(pd.Series(users), sort=True)
        i_codes, i_uniques = pd.factorize(pd.Series(items), sort=True)
        rng = np.random.default_rng(settings.seed)
        neg_users, neg_items = sample_negatives(
            u_codes, i_codes, len(i_uniques), settings.negative_ratio, rng, settings.negative_sampling
        )
        n_negatives = len(neg_users)
        users = np.concatenate([users, np.asarray(u_uniques)[neg_users]])
        items = np.concatenate([items, np.asarray(i_uniques)[neg_items]])
        ratings = np.concatenate([ratings, np.full(n_negatives, settings.negative_rating)])
        low, high = min(low, settings.negative_rating), max(high, settings.negative_rating)
    trainset = build_trainset(users, items, ratings, (low, high))
    algo = SVD(biased=True, random_state=settings.seed, **settings.svd_params)
    algo.fit(trainset)
    return FactorModel.from_surprise(algo, trainset), n_negatives


class BiasedSVD(Recommender):
    """``mu + bu + bi + pu·qi`` over the catalogue: items the factors do not know get ``mu + bu``
    (the missing terms dropped, as ``SVD.estimate`` does), users they do not know ``mu + bi``.

    ``fit`` runs :func:`fit_biased_svd` with ``settings``; :meth:`from_factors` wraps factors fitted
    elsewhere.  ``similar_items`` is the cosine of the item factors.
    """

    def __init__(self, settings: SVDSettings | None = None) -> None:
        self.settings = settings or SVDSettings()
        self.factors: FactorModel | None = None
        self.item_ids = np.zeros(0, dtype=object)
        self.n_negatives = 0
        self._item_rows = np.zeros(0, dtype=np.int64)

    @classmethod
    def from_factors(cls, factors: FactorModel, item_ids: np.ndarray | None = None) -> BiasedSVD:
        """The component over ``item_ids`` (default: the factors' own items) with fitted ``factors``."""
        component = cls()
        component.factors = factors
        component._align(factors.item_ids if item_ids is None else item_ids)
        return component

    def fit(self, training: TrainingSet) -> BiasedSVD:
        self.factors, self.n_negatives = fit_biased_svd(training.history, self.settings)
        self._align(training.item_ids)
        return self

    def _align(self, item_ids: np.ndarray) -> None:
        self.item_ids = np.asarray(item_ids, dtype=object)
        self._item_rows = self.model.item_index(self.item_ids)

    @property
    def model(self) -> FactorModel:
        """The fitted factors (raises before :meth:`fit`)."""
        if self.factors is None:
            raise ValueError("the SVD is not fitted")
        return self.factors

    def user_rows(self, user_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Factor row of each user (``-1``: unknown to the factors)."""
        return self.model.user_index(user_ids)

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        return self.score_model_rows(self.user_rows(history.user_ids[rows]))

    def score_model_rows(self, model_rows: np.ndarray) -> np.ndarray:
        """float32[len(model_rows), n_items] over the catalogue for factor rows (``-1``: unknown user)."""
        model = self.model
        raw = np.asarray(svd_scores(model, model_rows), dtype=np.float32)
        item_rows = self._item_rows
        if len(item_rows) == raw.shape[1] and np.array_equal(item_rows, np.arange(raw.shape[1])):
            return raw
        known = item_rows >= 0
        out = np.empty((len(model_rows), len(item_rows)), dtype=np.float32)
        out[:, known] = raw[:, item_rows[known]]
        user_bias = np.where(model_rows >= 0, model.user_bias[np.maximum(model_rows, 0)], np.float32(0.0))
        out[:, ~known] = (np.float32(model.global_mean) + user_bias.astype(np.float32))[:, None]
        return out

    def recommend_aligned(
        self, history: UserHistory, k: int, exclude: ExcludePolicy, *, block_size: int = 2048
    ) -> RankedItems:
        """Over the factors' own catalogue: one GEMM per block and the compiled top-k (no dense blend)."""
        if not np.array_equal(self._item_rows, np.arange(self.model.n_items)):
            return super().recommend_aligned(history, k, exclude, block_size=block_size)
        rows = self.user_rows(history.user_ids)
        mask = history.exclusion(exclude)
        exclude_rows = None if mask is None else np.arange(history.n_users)
        columns, scores = recommend_top_k(self.model, rows, k, mask, exclude_rows, block_size)
        return RankedItems.from_columns(self.item_ids, columns, scores)

    def similar_items(self, item_ids: Sequence[str] | np.ndarray, k: int = 10) -> RankedItems:
        factors = self.model.item_factors[np.maximum(self._item_rows, 0)]
        factors = np.where((self._item_rows >= 0)[:, None], factors, 0.0)
        norms = np.linalg.norm(factors, axis=1)
        unit = np.divide(factors, norms[:, None], out=np.zeros_like(factors), where=norms[:, None] > 0)
        columns, values = top_neighbours(lambda rows: unit[rows] @ unit.T, self.item_rows(item_ids), k)
        return RankedItems.from_columns(self.item_ids, columns, values)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        settings = {
            "params": dict(self.settings.params),
            "seed": self.settings.seed,
            "implicit": self.settings.implicit,
            "negative_ratio": self.settings.negative_ratio,
            "negative_rating": self.settings.negative_rating,
            "negative_sampling": self.settings.negative_sampling,
        }
        return self.model.to_arrays(), settings

    @classmethod
    def from_state(cls, item_ids: np.ndarray, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> BiasedSVD:
        component = cls.from_factors(FactorModel.from_arrays(arrays), item_ids)
        component.settings = SVDSettings(**settings)
        return component
