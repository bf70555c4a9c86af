"""Offline scorers of the hybrid and of each of its components, for ``benchmarks/accuracy.py``.

A scorer is ``fn(train_df, users) -> object[len(users), k]`` of item ids (``None`` pads), given only
the training pairs (``user_id, item_id, rating, event_timestamp`` and optional ``purchases``).
:func:`benchmark_scorers` is the hook the accuracy benchmark imports; :func:`hybrid_scorers` builds
the same scorers for any catalogue.  The hybrid fits its weights and input options with
:func:`blend.fit_blend_options` on a validation split carved out of ``train`` (never the test
window), then ranks with them.  The benchmark passes its own splitter: for order lines it rebuilds
the fit part from the lines before the cut, so a pair bought before and again inside the validation
window stays in the fit part (:func:`last_days_validation`, on pairs only, cannot do that).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recomart.recommend.blend import as_ratings, default_products, fit_blend_options
from recomart.recommend.hybrid import (
    BlendWeights,
    HybridInputs,
    _excluded_cells,
    _select,
    blend,
    build_inputs,
    component_scores,
)

if TYPE_CHECKING:
    from recomart.model.factors import FactorModel

Scorer = Callable[[pd.DataFrame, np.ndarray], np.ndarray]
Splitter = Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]]
ModelFitter = Callable[[pd.DataFrame], "FactorModel"]

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def top_items(
    inputs: HybridInputs,
    users: np.ndarray,
    weights: BlendWeights,
    k: int,
    *,
    model: FactorModel | None = None,
    block_size: int = 1024,
) -> np.ndarray:
    """object[len(users), k] of the blend's top item ids (users outside ``inputs``: ``None`` row).

    Users are treated as :func:`recomart.recommend.hybrid.recommend` treats them: users ``model``
    knows get the full blend; users it does not know (or all users, without a model) get the blend
    without the SVD component (the popularity prior when nothing weighted remains), or their
    segment's popular items when they have no history either.
    """
    out = np.full((len(users), k), None, dtype=object)
    rows = pd.Index(inputs.user_ids).get_indexer(pd.Series(users).astype(str).to_numpy())
    known = np.flatnonzero(rows >= 0)
    model_rows = np.full(len(known), -1, dtype=np.int64)
    if model is not None and len(known):
        model_rows = np.asarray(model.user_index(inputs.user_ids[rows[known]]), dtype=np.int64)
    history = inputs.has_history[rows[known]]
    items_csc = inputs.items.tocsc()
    item_rows = None if model is None else np.asarray(model.item_index(inputs.item_ids), dtype=np.int64)
    needed = weights.as_dict()
    groups = (
        (model_rows >= 0, True),  # hybrid
        ((model_rows < 0) & history, False),  # hybrid_no_svd
        ((model_rows < 0) & ~history, None),  # cold start: segment popularity
    )
    for mask, with_model in groups:
        members = np.flatnonzero(mask)
        for start in range(0, len(members), block_size):
            sel = members[start : start + block_size]
            pos, r = known[sel], rows[known[sel]]
            if with_model is None:
                scores = inputs.popularity.scores[inputs.segment_rows[r]]
            else:
                ex_r, ex_c = _excluded_cells(inputs.exclude, r)
                comps = component_scores(
                    inputs,
                    r,
                    model=model if with_model else None,
                    model_rows=model_rows[sel] if with_model else None,
                    item_rows=item_rows,
                    items_csc=items_csc,
                    needed=needed,
                )
                scores = blend(comps, weights, ex_r, ex_c)
            b, c, _ = _select(scores, k, inputs.exclude, r)
            rank = np.arange(len(b)) - np.searchsorted(b, b)  # picks are grouped by block row, best first
            out[pos[b], rank] = inputs.item_ids[c]
    return out


def _inputs(
    train: pd.DataFrame,
    products: pd.DataFrame | None,
    repeat_purchases: bool,
    exclude_seen: bool,
    options: dict[str, Any] | None = None,
) -> HybridInputs:
    ratings = as_ratings(train)
    known = sorted(ratings["item_id"].unique())
    # the catalogue as of the training data: items that only appear later cannot be evaluated anyway
    catalogue = default_products(known) if products is None else products[products["item_id"].isin(known)]
    users = pd.DataFrame({"user_id": ratings["user_id"].unique(), "segment": None})
    exclude = "interacted" if exclude_seen else "none"
    return build_inputs(
        ratings, users, catalogue, repeat_purchases=repeat_purchases, exclude=exclude, **(options or {})
    )


def component_scorer(
    component: str,
    products: pd.DataFrame | None = None,
    *,
    k: int = 10,
    repeat_purchases: bool = False,
    exclude_seen: bool = True,
    options: dict[str, Any] | None = None,
) -> Scorer:
    """Ranks by one component alone (``item_item``, ``content``, ``buy_again`` or ``popularity``), built
    with the :func:`build_inputs` ``options`` given (default: its defaults)."""
    weights = BlendWeights(**{name: (1.0 if name == component else 0.0) for name in BlendWeights().as_dict()})

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        inputs = _inputs(train, products, repeat_purchases, exclude_seen, options)
        return top_items(inputs, users, weights, k)

    return score


def hybrid_scorer(
    products: pd.DataFrame | None = None,
    *,
    validation: Splitter,
    k: int = 10,
    repeat_purchases: bool = False,
    exclude_seen: bool = True,
    model_fitter: ModelFitter | None = None,
    record: dict[str, Any] | None = None,
) -> Scorer:
    """The blend with weights and input options fitted on ``validation(train)`` (fit part, validation
    pairs); the SVD (``model_fitter``) is fitted on the fit part for the search and refitted on all of
    ``train``.  The fit's evidence (weights, options, validation nDCG, every candidate) goes to ``record``."""

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        fit_part, valid_part = validation(train)
        model = model_fitter(fit_part) if model_fitter is not None else None
        fit = fit_blend_options(
            fit_part,
            valid_part,
            products,
            model=model,
            repeat_purchases=repeat_purchases,
            exclude="interacted" if exclude_seen else "none",
            k=k,
        )
        weights = BlendWeights.from_meta({"weights": fit.weights})
        if record is not None:
            record.update(
                weights=fit.weights,
                options=fit.options,
                fitted=fit.fitted,
                reason=fit.reason,
                n_validation_users=fit.n_users,
                validation_ndcg_at_10=fit.validation_ndcg,
                validation_default_ndcg_at_10=fit.default_ndcg,
                validation_single_ndcg_at_10=fit.single_ndcg,
                candidates=fit.trials,
                n_fit_pairs=len(fit_part),
                n_validation_pairs=len(valid_part),
            )
        final = model_fitter(train) if (model_fitter is not None and weights.cf > 0) else None
        inputs = _inputs(train, products, repeat_purchases, exclude_seen, fit.options)
        return top_items(inputs, users, weights, k, model=final)

    return score


def hybrid_scorers(
    products: pd.DataFrame | None = None,
    *,
    validation: Splitter,
    k: int = 10,
    repeat_purchases: bool = False,
    exclude_seen: bool = True,
    model_fitter: ModelFitter | None = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Scorer]:
    """``{"hybrid", "item_item", "content", "popularity_recent"[, "buy_again_recency"]}`` scorers for one
    setting; ``popularity_recent`` is the prior over the last 30 days alone (the trending baseline)."""
    common = {"k": k, "repeat_purchases": repeat_purchases, "exclude_seen": exclude_seen}
    scorers: dict[str, Scorer] = {
        "hybrid": hybrid_scorer(products, validation=validation, model_fitter=model_fitter, record=record, **common),
        "item_item": component_scorer("item_item", products, **common),
    }
    if products is not None:
        scorers["content"] = component_scorer("content", products, **common)
    scorers["popularity_recent"] = component_scorer("popularity", products, options={"prior_days": 30}, **common)
    if repeat_purchases:
        scorers["buy_again_recency"] = component_scorer("buy_again", products, **common)
    return scorers


# --- the benchmark hook -----------------------------------------------------------------------
@functools.cache
def movielens_products(folder: Path = SHARED_DATA / "movielens-latest-small") -> pd.DataFrame:
    """MovieLens ``movies.csv`` as a catalogue: title, genres as description and category."""
    movies = pd.read_csv(Path(folder) / "movies.csv", dtype={"movieId": str, "title": str, "genres": str})
    genres = movies["genres"].fillna("").str.replace("(no genres listed)", "", regex=False).str.replace("|", " ")
    return pd.DataFrame(
        {
            "item_id": movies["movieId"],
            "title": movies["title"],
            "description": genres,
            "category": genres,
            "brand": "",
            "price": np.nan,
        }
    )


@functools.cache
def uci_products(folder: Path = SHARED_DATA / "uci-online-retail") -> pd.DataFrame:
    """The UCI catalogue derived from the by-day order files (most frequent description, median price)."""
    from recomart.datasets.uci import derive_uci_products

    files = sorted((Path(folder) / "by-day").glob("*.csv"))
    return derive_uci_products(files)


def _per_user_validation(seed: int) -> Splitter:
    def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        from recomart.model.split import per_user_random_split

        return per_user_random_split(frame, test_frac=0.2, seed=seed)

    return split


def last_days_validation(days: int = 30) -> Splitter:
    """Pairs whose last interaction falls in the last ``days`` of ``train`` validate; the rest fit.

    Pairs only: a pair bought before and again inside the window leaves the fit part, so the window
    looks like discovery.  With repeat purchases, prefer a splitter over order lines (the benchmark's).
    """

    def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        ts = pd.to_datetime(frame["event_timestamp"], utc=True)
        cut = ts.max() - pd.Timedelta(days=days)
        return frame[(ts < cut).to_numpy()], frame[(ts >= cut).to_numpy()][["user_id", "item_id"]]

    return split


def _svd_fitter(seed: int) -> ModelFitter:
    def fit(frame: pd.DataFrame) -> FactorModel:
        from recomart.model.train import fit_factors

        return fit_factors(frame, seed=seed, implicit=True)

    return fit


def benchmark_scorers(
    dataset: str,
    setting: str,
    k: int = 10,
    *,
    seed: int = 42,
    validation: Splitter | None = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Scorer]:
    """Extra scorers for ``benchmarks/accuracy.py``: ``dataset`` is ``ml_latest_small`` or ``uci``,
    ``setting`` ``ranking``, ``discovery`` or ``replenishment``.  ``validation`` is the benchmark's own
    splitter (default: per-user 80/20 for MovieLens, the last 30 days of pairs for UCI); the hybrid's
    fit evidence goes to ``record``."""
    if dataset == "ml_latest_small":
        products, default_validation, repeat = movielens_products(), _per_user_validation(seed + 11), False
    elif dataset == "uci":
        products, default_validation, repeat = uci_products(), last_days_validation(30), setting == "replenishment"
    else:
        raise ValueError(f"unknown data set {dataset!r}")
    return hybrid_scorers(
        products,
        validation=validation or default_validation,
        record=record,
        k=k,
        repeat_purchases=repeat,
        exclude_seen=setting != "replenishment",
        model_fitter=_svd_fitter(seed),
    )
