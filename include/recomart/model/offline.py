"""Offline scorers of the hybrid and of each of its components, for ``benchmarks/accuracy.py``.

A scorer is ``fn(train_df, users) -> object[len(users), k]`` of item ids (``None`` pads), given only
the training pairs (``user_id, item_id, rating, event_timestamp`` and optional ``purchases``).
:func:`benchmark_scorers` is the hook the accuracy benchmark imports; :func:`hybrid_scorers` builds
the same scorers for any catalogue.  Every scorer ranks through
:class:`~recomart.ranking.hybrid.HybridRecommender` fitted on the training pairs
(:meth:`recomart.model.catalogue.Catalogue.evaluation_set`), exactly as the train DAG's test window
does.  The hybrid fits its weights and component options with
:func:`recomart.model.blend_search.fit_blend_options` on a validation split carved out of ``train``
(never the test window) and blends the SVD with the parameters the benchmark tuned (``svd_params``).
The benchmark passes its own splitter: for order lines it rebuilds the fit part from the lines before
the cut, so a pair bought before and again inside the validation window stays in the fit part
(:func:`last_days_validation`, on pairs only, cannot do that).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recomart.model.blend_search import content_variants, fit_blend_options
from recomart.model.catalogue import Catalogue
from recomart.model.component_search import Scorer, Splitter, candidate_scorers
from recomart.model.config import TrainingConfig
from recomart.model.ranker_fit import ranker_scorer
from recomart.model.split import per_user_random_split
from recomart.ranking.blend import BlendWeights
from recomart.ranking.embedding import ItemVectors
from recomart.ranking.factors import FactorModel
from recomart.ranking.svd import BiasedSVD, fit_biased_svd

ModelFitter = Callable[[pd.DataFrame], FactorModel]

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _ranked_ids(
    catalogue: Catalogue, train: pd.DataFrame, users: np.ndarray, k: int, exclude_seen: bool, **hybrid: Any
) -> np.ndarray:
    """object[len(users), k]: a hybrid (``weights``, ``options``, ``svd``) fitted on ``train`` ranks ``users``."""
    training = catalogue.evaluation_set(train)
    recommender = catalogue.hybrid(exclude_seen=exclude_seen, **hybrid).fit(training)
    return recommender.recommend(users, training.history, k).item_ids


def component_scorer(
    component: str,
    catalogue: Catalogue,
    *,
    k: int = 10,
    exclude_seen: bool = True,
    options: Mapping[str, Any] | None = None,
) -> Scorer:
    """Ranks by one component alone (``item_item``, ``content``, ``buy_again`` or ``popularity``), with
    the component ``options`` given (default: the components' defaults)."""
    weights = BlendWeights.only(component)

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        return _ranked_ids(catalogue, train, users, k, exclude_seen, weights=weights, options=options)

    return score


def hybrid_scorer(
    catalogue: Catalogue,
    *,
    validation: Splitter,
    k: int = 10,
    exclude_seen: bool = True,
    model_fitter: ModelFitter | None = None,
    record: dict[str, Any] | None = None,
) -> Scorer:
    """The blend with weights and options fitted on ``validation(train)`` (fit part, validation
    pairs); the SVD (``model_fitter``) is fitted on the fit part for the search and refitted on all of
    ``train``.  The fit's evidence (weights, options, validation nDCG, every candidate) goes to ``record``."""

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        fit_part, valid_part = validation(train)
        model = model_fitter(fit_part) if model_fitter is not None else None
        fit = fit_blend_options(
            fit_part,
            valid_part,
            catalogue,
            svd=None if model is None else BiasedSVD.from_factors(model),
            exclude_seen=exclude_seen,
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
                content=content_variants(fit),
                n_fit_pairs=len(fit_part),
                n_validation_pairs=len(valid_part),
            )
        final = model_fitter(train) if (model_fitter is not None and weights.cf > 0) else None
        svd = None if final is None else BiasedSVD.from_factors(final)
        return _ranked_ids(catalogue, train, users, k, exclude_seen, weights=weights, options=fit.options, svd=svd)

    return score


def hybrid_scorers(
    catalogue: Catalogue,
    *,
    validation: Splitter,
    k: int = 10,
    exclude_seen: bool = True,
    model_fitter: ModelFitter | None = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Scorer]:
    """``{"hybrid", "item_item", "content", "popularity_recent"[, "buy_again_recency"]}`` scorers for one
    setting (``content`` only with products); ``popularity_recent`` is the prior over the last 30 days
    alone (the trending baseline).  With the catalogue's item vectors also ``content_tfidf`` (the same
    as ``content``), ``content_blend`` (half embeddings) and ``content_embed`` (embeddings alone)."""
    common: dict[str, Any] = {"k": k, "exclude_seen": exclude_seen}
    scorers: dict[str, Scorer] = {
        "hybrid": hybrid_scorer(catalogue, validation=validation, model_fitter=model_fitter, record=record, **common),
        "item_item": component_scorer("item_item", catalogue, **common),
    }
    if catalogue.products is not None:
        scorers["content"] = component_scorer("content", catalogue, **common)
    if catalogue.item_vectors is not None:
        for name, share in (("content_tfidf", None), ("content_blend", 0.5), ("content_embed", 1.0)):
            options = {} if share is None else {"content_embedding": share}
            scorers[name] = component_scorer("content", catalogue, options=options, **common)
    scorers["popularity_recent"] = component_scorer("popularity", catalogue, options={"prior_days": 30}, **common)
    if catalogue.repeat_purchases:
        scorers["buy_again_recency"] = component_scorer("buy_again", catalogue, **common)
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


def svd_fitter(config: TrainingConfig, params: Mapping[str, Any] | None = None) -> ModelFitter:
    """Fits the configuration's SVD with ``params`` (default: its base parameters) on a pairs frame."""
    settings = config.svd_settings(params)

    def fit(frame: pd.DataFrame) -> FactorModel:
        return fit_biased_svd(frame, settings)[0]

    return fit


def benchmark_scorers(
    dataset: str,
    setting: str,
    k: int = 10,
    *,
    config: TrainingConfig | None = None,
    validation: Splitter | None = None,
    record: dict[str, Any] | None = None,
    svd_params: Mapping[str, Any] | None = None,
    candidates_record: dict[str, Any] | None = None,
    item_vectors: ItemVectors | None = None,
) -> dict[str, Scorer]:
    """Extra scorers for ``benchmarks/accuracy.py``: ``dataset`` is ``ml_latest_small`` or ``uci``,
    ``setting`` ``ranking``, ``discovery`` or ``replenishment``.  ``validation`` is the benchmark's own
    splitter (default: per-user 80/20 for MovieLens, the last 30 days of pairs for UCI), ``svd_params``
    the SVD parameters it tuned (default: ``config``'s base parameters); the hybrid's fit evidence
    goes to ``record``, the candidate generators' (EASE, RP3β:
    :func:`recomart.model.component_search.candidate_scorers`) and the learned ranker's
    (:func:`recomart.model.ranker_fit.ranker_scorer`, under ``"ranker"``) to ``candidates_record``.
    ``item_vectors`` (the products' text embeddings, made by the benchmark) add the embedding content
    scorers and let the hybrid's validation search try them."""
    config = config or TrainingConfig()
    if dataset == "ml_latest_small":
        products, default_validation, repeat = movielens_products(), _per_user_validation(config.seed + 11), False
    elif dataset == "uci":
        products, default_validation, repeat = uci_products(), last_days_validation(30), setting == "replenishment"
    else:
        raise ValueError(f"unknown data set {dataset!r}")
    catalogue = Catalogue(products, None, repeat, item_vectors)
    splitter, exclude_seen = validation or default_validation, setting != "replenishment"
    scorers = hybrid_scorers(
        catalogue,
        validation=splitter,
        record=record,
        k=k,
        exclude_seen=exclude_seen,
        model_fitter=svd_fitter(config, svd_params),
    )
    candidates = candidate_scorers(
        catalogue, validation=splitter, k=k, exclude_seen=exclude_seen, record=candidates_record
    )
    ranker = ranker_scorer(
        catalogue,
        validation=splitter,
        svd=config.svd_settings(svd_params),
        k=k,
        exclude_seen=exclude_seen,
        seed=config.seed,
        record=None if candidates_record is None else candidates_record.setdefault("ranker", {}),
    )
    return {**scorers, **candidates, "ranker": ranker}
