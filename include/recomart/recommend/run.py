"""The nightly recommendation run: read the marts, rank every user through the champion, swap reco.* in.

The champion is loaded through its MLflow pyfunc (:func:`recomart.model.registry.load_champion`) and
every user of the marts is ranked by the very :class:`~recomart.ranking.hybrid.HybridRecommender`
its ``predict`` uses, against tonight's history: nothing is rebuilt from metadata.  While no model is
registered a non-personalised fallback (segment popularity, ``popular_no_model``) is fitted on the
marts.  ``reco.popular_items`` and the ``also_bought`` kind of ``reco.similar_items`` come from the same
recommender; its ``looks_like`` kind is the nearest neighbours of the catalogue's items by their vectors
in ``reco.item_embeddings`` (when the search refresh has stored any), in the same generation and swap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from recomart.marts import RankingInputs, StoredVectors, read_catalogue, read_item_embeddings, read_ranking_inputs
from recomart.model.ranker_stage import FeaturesAt
from recomart.model.registry import load_champion
from recomart.ranking.base import TrainingSet
from recomart.ranking.embedding import vector_neighbours
from recomart.ranking.hybrid import RANKED_COLUMNS, HybridRecommender
from recomart.recommend.tables import (
    ALSO_BOUGHT,
    LOOKS_LIKE,
    POPULAR_ITEMS,
    SIMILAR_ITEMS,
    USER_RECOMMENDATIONS,
    BuildingGeneration,
    begin_generation,
    mark_failed,
    mark_live,
)
from recomart.recommend.writer import publish

#: the business columns of ``reco.user_recommendations`` (the ranked columns and the model version)
OUTPUT_COLUMNS = [*RANKED_COLUMNS, "model_version"]
#: the columns of ``reco.similar_items`` after ``generation_id``
SIMILAR_COLUMNS = ["item_id", "kind", "rank", "similar_item_id", "score"]
#: "looks like" neighbours kept per item (as many as the co-occurrence neighbours' default ``top_n``)
LOOKS_LIKE_N = 50


@dataclass
class GenerationResult:
    """What one run published."""

    generation_id: int
    model_version: str | None
    strategy_counts: dict[str, int]
    users: int
    rows: int
    popular_rows: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    similar_rows: int = 0
    similar_kinds: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def fallback_recommender(dsn: str, inputs: RankingInputs, *, repeat_purchases: bool) -> HybridRecommender:
    """The recommender served while no model is registered: segment popularity (``popular_no_model``)
    and co-occurrence neighbours, fitted on tonight's marts with the feed's policy."""
    catalogue = read_catalogue(dsn)
    training = TrainingSet.build(inputs.history, catalogue.products, catalogue.users)
    return HybridRecommender(repeat_purchases=repeat_purchases, personalised=False).fit(training)


def looks_like_frame(item_ids: np.ndarray, embeddings: StoredVectors | None, k: int = LOOKS_LIKE_N) -> pd.DataFrame:
    """The ``looks_like`` neighbours (``item_id, rank, similar_item_id, score``) among the catalogue's
    ``item_ids`` that have a stored vector (none without ``embeddings``)."""
    if embeddings is None:
        return vector_neighbours(np.zeros(0, dtype=object), np.zeros((0, 1), dtype=np.float32), k)
    keep = np.isin(embeddings.item_ids, np.asarray(item_ids, dtype=object))
    return vector_neighbours(embeddings.item_ids[keep], embeddings.vectors[keep], k)


def similar_frame(recommender: HybridRecommender, embeddings: StoredVectors | None) -> pd.DataFrame:
    """Every kind of ``reco.similar_items`` (:data:`SIMILAR_COLUMNS`): the recommender's co-occurrence
    neighbours (``also_bought``) and the vector neighbours of its catalogue (``looks_like``)."""
    kinds = [
        recommender.similar_items_frame().assign(kind=ALSO_BOUGHT),
        looks_like_frame(recommender.item_ids, embeddings).assign(kind=LOOKS_LIKE),
    ]
    return pd.concat([frame[SIMILAR_COLUMNS] for frame in kinds], ignore_index=True)


def with_generation(frame: pd.DataFrame, generation_id: int) -> pd.DataFrame:
    """A copy of ``frame`` with ``generation_id`` as its first column."""
    frame = frame.copy()
    frame.insert(0, "generation_id", generation_id)
    return frame


def publish_generation(
    dsn: str,
    recs: pd.DataFrame,
    recommender: HybridRecommender,
    *,
    model_version: str | None,
    popular_n: int = 100,
    details: dict[str, Any] | None = None,
    generation: BuildingGeneration | None = None,
    marts_digest: str | None = None,
    embeddings: StoredVectors | None = None,
    log: Callable[[str], Any] = print,
) -> GenerationResult:
    """Swap ``reco.user_recommendations`` (``recs``: :data:`OUTPUT_COLUMNS`), ``reco.similar_items`` and
    ``reco.popular_items`` (from ``recommender``, and the ``looks_like`` kind from ``embeddings``) in
    together as ``generation`` (``similar_items`` may be empty: no co-occurrence and no vectors yet).
    Without ``generation`` one is begun (and ended) here."""
    if generation is None:
        with begin_generation(dsn) as own:
            return publish_generation(
                dsn,
                recs,
                recommender,
                model_version=model_version,
                popular_n=popular_n,
                details=details,
                generation=own,
                marts_digest=marts_digest,
                embeddings=embeddings,
                log=log,
            )
    t0 = time.perf_counter()
    generation_id = generation.generation_id
    try:
        generation.describe(model_version, details, marts_digest)
        recs = with_generation(recs, generation_id)
        popular = with_generation(recommender.popular_items_frame(popular_n), generation_id)
        similar = with_generation(similar_frame(recommender, embeddings), generation_id)
        kinds = {str(k): int(v) for k, v in similar["kind"].value_counts().items()}
        counts = {str(k): int(v) for k, v in recs.groupby("strategy")["user_id"].nunique().items()}
        users = int(recs["user_id"].nunique())

        def on_swap(cur: psycopg.Cursor) -> None:
            mark_live(
                cur,
                generation_id,
                strategy_summary=counts,
                row_count=len(recs),
                user_count=users,
                popular_item_count=len(popular),
                similar_item_count=len(similar),
            )

        publish(
            dsn,
            [(USER_RECOMMENDATIONS, recs), (SIMILAR_ITEMS, similar), (POPULAR_ITEMS, popular)],
            on_swap=on_swap,
            allow_empty=(SIMILAR_ITEMS.name,),
            log=log,
        )
    except BaseException as exc:
        mark_failed(dsn, generation_id, f"{type(exc).__name__}: {exc}")
        raise
    elapsed = time.perf_counter() - t0
    log(f"similar_items by kind: {kinds}")
    return GenerationResult(
        generation_id,
        model_version,
        counts,
        users,
        len(recs),
        len(popular),
        elapsed,
        similar_rows=len(similar),
        similar_kinds=kinds,
    )


def _recommender(
    dsn: str,
    inputs: RankingInputs,
    tracking_uri: str,
    model_name: str,
    repeat_purchases: bool,
    log: Callable[[str], Any],
) -> tuple[HybridRecommender, str | None]:
    """(the champion's recommender and version) or, while there is none, (the fallback, None)."""
    champion = load_champion(tracking_uri, model_name)
    if champion is None:
        log("no champion model registered yet: serving popularity")
        return fallback_recommender(dsn, inputs, repeat_purchases=repeat_purchases), None
    log(f"champion {model_name} v{champion.version}: {len(champion.recommender.item_ids)} items")
    return champion.recommender, champion.version


#: ``store_features(feature_service)``: that service's :data:`~recomart.model.ranker_stage.FeaturesAt`
#: (None when the feature store is not set up)
StoreFeatures = Callable[[str], FeaturesAt | None]


def attach_ranker_features(
    recommender: HybridRecommender,
    user_ids: np.ndarray,
    store_features: StoreFeatures | None,
    cutoff: pd.Timestamp,
) -> dict[str, Any]:
    """Give the recommender's learned ranker (if it has one that reads the feature store) the user and
    item features of its feature service point-in-time at ``cutoff``; returns what it read for the
    generation's details (``strategy``, ``feature_service``, ``features_cutoff``).  Raises when the
    ranker needs features and ``store_features`` cannot read its service."""
    ranker = recommender.ranker
    if ranker is None:
        return {"strategy": "blend"}
    service = ranker.feature_service
    if service is None:
        return {"strategy": "ranker", "feature_service": None}
    features_at = None if store_features is None else store_features(service)
    if features_at is None:
        raise RuntimeError(f"the champion's ranker reads feature service {service!r}, which cannot be read here")
    ranker.user_features, ranker.item_features = features_at(cutoff, user_ids, ranker.item_ids)
    return {"strategy": "ranker", "feature_service": service, "features_cutoff": cutoff.isoformat()}


def generation_details(
    recommender: HybridRecommender, version: str | None, *, k: int, dataset: str | None, model_name: str
) -> dict[str, Any]:
    """``reco.generations.details`` of a generation ranked by ``recommender`` (the champion ``version``)."""
    return {
        "k": k,
        "dataset": dataset,
        "repeat_purchases": recommender.repeat_purchases,
        "exclude": recommender.exclude,
        "weights": recommender.weights.as_dict(),
        "weights_source": "default" if version is None else "champion",
        "blend_options": recommender.options,
        "model_name": model_name,
    }


def generate_recommendations(
    dsn: str,
    *,
    tracking_uri: str,
    model_name: str,
    k: int = 10,
    block_size: int = 2048,
    dataset: str | None = None,
    repeat_purchases: bool = False,
    popular_n: int = 100,
    marts_digest: str | None = None,
    log: Callable[[str], Any] = print,
    store_features: StoreFeatures | None = None,
) -> GenerationResult:
    """Rank every warehouse user through the champion (or the fallback) and publish the result atomically.

    The champion carries its feed policy, weights and component options; ``repeat_purchases`` is the
    feed's policy for the fallback only.  The options are in the result and in
    ``reco.generations.details["blend_options"]``; ``marts_digest`` (of the marts read, taken before
    reading them) goes to ``reco.generations.marts_digest``.  A champion that ranks through a learned
    ranker reads its feature service at this run's own cutoff (now) through ``store_features``.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    # the generation (and its lock) exists before the marts are read, so a concurrent `forget` can wait
    # for every build that may have read a user it erased
    with begin_generation(dsn) as generation:
        if generation.orphans_failed:
            log(f"marked orphaned generations failed: {generation.orphans_failed}")
        try:
            step = time.perf_counter()
            inputs = read_ranking_inputs(dsn)
            step = lap("read_marts", step)
            log(f"read marts: {len(inputs.history)} history rows, {len(inputs.users)} users")
            recommender, version = _recommender(dsn, inputs, tracking_uri, model_name, repeat_purchases, log)
            ranker_read = attach_ranker_features(
                recommender, inputs.users["user_id"].astype(str).to_numpy(), store_features, pd.Timestamp.now(tz="UTC")
            )
            step = lap("load_champion", step)
            recs = recommender.rank(inputs.users, inputs.history, k=k, block_size=block_size)
            step = lap("score", step)
            embeddings = read_item_embeddings(dsn)
            step = lap("read_embeddings", step)
        except BaseException as exc:
            mark_failed(dsn, generation.generation_id, f"{type(exc).__name__}: {exc}")
            raise
        details = generation_details(recommender, version, k=k, dataset=dataset, model_name=model_name)
        details.update(ranker_read)
        result = publish_generation(
            dsn,
            recs.assign(model_version=version)[OUTPUT_COLUMNS],
            recommender,
            model_version=version,
            popular_n=popular_n,
            details=details,
            generation=generation,
            marts_digest=marts_digest,
            embeddings=embeddings,
            log=log,
        )
    lap("publish", step)
    result.timings, result.options = timings, dict(recommender.options)
    result.seconds = round(time.perf_counter() - started, 3)
    log(
        f"generation {result.generation_id}: {result.rows} rows for {result.users} users "
        f"{result.strategy_counts} in {result.seconds:.1f}s {timings}, options {result.options or 'default'}"
    )
    return result
