"""One training round: split, tune the SVD and fit the blend on validation, score the test window once,
and fit the hybrid that gets registered.

Evaluation never calls surprise's per-pair ``predict`` / ``test`` / ``estimate``: every contender
ranks the whole catalogue with matrix products and the compiled top-k
(:mod:`recomart.ranking.scoring`), and the blends rank through
:class:`~recomart.ranking.hybrid.HybridRecommender`, the class that is registered and served.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from recomart.model.blend_search import COMPONENT_KEYS, BlendFit, blend_record, choose_blend
from recomart.model.catalogue import Catalogue
from recomart.model.config import DECISION_METRIC, TrainingConfig
from recomart.model.evaluate import Contender, eval_set, evaluate_blends, evaluate_models
from recomart.model.ranker_stage import (
    FeaturesAt,
    RankerOptions,
    RankerStage,
    fit_ranker_stage,
    rescore_champion_ranker,
)
from recomart.model.split import Split, make_event_split, make_split, overlapping_pairs, pairs_from_events
from recomart.model.tuning import TunedSVD, tune_svd
from recomart.ranking.blend import BlendWeights
from recomart.ranking.factors import FactorModel
from recomart.ranking.hybrid import HybridRecommender
from recomart.ranking.ranker import LearnedRanker
from recomart.ranking.svd import BiasedSVD, fit_biased_svd

log = logging.getLogger(__name__)

RATINGS_RELATION = "marts.user_item_ratings"
RATING_COLUMNS = ["user_id", "item_id", "rating", "event_timestamp"]


@dataclass(frozen=True)
class Champion:
    """The current champion as the gate re-scores it: the factors its own test figures came from
    (fitted before its test window), its version, the latest timestamp those factors saw, and its
    blend weights and component options (the defaults for a version that has none), and its learned
    ranker when that is its registered strategy (re-scored instead of its blend)."""

    factors: FactorModel
    version: str | None = None
    trained_through: str | None = None
    weights: BlendWeights = field(default_factory=BlendWeights)
    options: Mapping[str, Any] = field(default_factory=dict)
    ranker: LearnedRanker | None = None


@dataclass(eq=False)
class TrainResult:
    """What :func:`train_tune_evaluate` produced.

    ``recommender`` is the hybrid to register and serve: its SVD is refitted with the chosen
    parameters and seed on ALL the data when ``refit_full`` (the held-out window holds the freshest
    interactions), and its other components are fitted on all products and users.  ``eval_model`` is
    the SVD the test figures were measured with (fitted on train + validation).  ``metrics["model"]``
    is the blend on the test window, ``metrics["svd"]`` and the other components alone are reported
    next to ``metrics["popularity"]`` (and ``metrics["champion"]`` when there is one).
    """

    recommender: HybridRecommender
    eval_model: FactorModel
    metrics: dict[str, dict[str, float]]
    beats_popularity: bool
    params: dict[str, Any]
    data_digest: str
    split: dict[str, Any]
    refit_full: bool
    timings: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    primary_metric: str = DECISION_METRIC
    gate_margin: float = 0.0
    champion_version: str | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, Any] = field(default_factory=dict)
    score_samples: dict[str, list[float]] = field(default_factory=dict)
    dataset_source: str = RATINGS_RELATION
    data: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def model(self) -> FactorModel:
        """The served SVD's factors."""
        if self.recommender.svd is None:
            raise ValueError("the recommender has no SVD")
        return self.recommender.svd.model


# --- data preparation ---------------------------------------------------------------------
def prepare_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """Typed, one row per user–item pair (mean rating, latest timestamp, summed ``purchases`` when
    present), sorted by user then item."""
    missing = set(RATING_COLUMNS) - set(ratings.columns)
    if missing:
        raise ValueError(f"ratings frame misses columns {sorted(missing)}")
    columns = RATING_COLUMNS + (["purchases"] if "purchases" in ratings else [])
    df = ratings[columns].reset_index(drop=True)
    df = df.assign(
        user_id=df["user_id"].astype(str),
        item_id=df["item_id"].astype(str),
        rating=pd.to_numeric(df["rating"]).astype("float64"),
        event_timestamp=pd.to_datetime(df["event_timestamp"], utc=True),
    )
    if df["rating"].isna().any() or df["event_timestamp"].isna().any():
        raise ValueError("ratings contain missing ratings or timestamps")
    if df.duplicated(["user_id", "item_id"]).any():
        aggregations: dict[str, Any] = {"rating": ("rating", "mean"), "event_timestamp": ("event_timestamp", "max")}
        if "purchases" in df:
            aggregations["purchases"] = ("purchases", "sum")
        df = df.groupby(["user_id", "item_id"], as_index=False, sort=False).agg(**aggregations)
    return df.sort_values(["user_id", "item_id"], kind="stable", ignore_index=True)


def data_digest(df: pd.DataFrame) -> str:
    """sha256 over the prepared (sorted, typed) ratings: equal data gives an equal digest."""
    hashed = pd.util.hash_pandas_object(df[RATING_COLUMNS], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def split_for_training(data: pd.DataFrame, events: pd.DataFrame | None, config: TrainingConfig) -> Split:
    """The three-way split of a round: ``events`` cut in time when given (and the split is in time),
    else the pairs ``data``.  A pair split must not leak test pairs into training."""
    if events is not None and config.split != "per_user_random":
        split = make_event_split(events, config.split, **config.split_options)
    else:
        split = make_split(data, config.split, seed=config.seed, **config.split_options)
    if split.train.empty or split.test.empty:
        raise ValueError(f"split {split.info} leaves an empty train or test part")
    if not split.by_events:
        leaks = overlapping_pairs(split.train_valid, split.test)
        if leaks:
            raise ValueError(f"{leaks} test user-item pairs also appear in train: the split leaks")
    return split


def prepared_split(
    ratings: pd.DataFrame | None, events: pd.DataFrame | None, config: TrainingConfig
) -> tuple[pd.DataFrame, Split]:
    """The round's prepared pairs (:func:`prepare_ratings`; rebuilt from ``events`` when given) and its
    split (:func:`split_for_training`)."""
    source = pairs_from_events(events) if events is not None else ratings
    if source is None or source.empty:
        raise ValueError("no ratings to train on")
    data = prepare_ratings(source)
    return data, split_for_training(data, events, config)


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started


# --- evaluation on the test window --------------------------------------------------------------
def _merge_blend_metrics(
    svd: dict[str, dict[str, float]], blends: dict[str, dict[str, float]], factors_of: dict[str, str]
) -> dict[str, dict[str, float]]:
    """SVD-alone and blend metrics in one mapping; a blend carries its factors' rating errors and user
    coverage (the share of test users its SVD part knows)."""
    carried = ("rmse", "mae", "user_coverage")
    out = dict(svd)
    for name, values in blends.items():
        source = svd.get(factors_of.get(name, ""), {})
        out[name] = {**values, **{key: source[key] for key in carried if key in source}}
    return out


def _contenders(
    eval_model: FactorModel, blend: BlendFit, champion: Champion | None, catalogue: Catalogue
) -> dict[str, Contender]:
    """``model`` (the candidate blend), each component but the SVD alone, and the champion's blend."""
    contenders = {"model": Contender(BlendWeights.from_meta({"weights": blend.weights}), eval_model, blend.options)}
    for component in catalogue.components():
        if component in COMPONENT_KEYS and component != "cf":
            contenders[COMPONENT_KEYS[component]] = Contender(BlendWeights.only(component), None, blend.options)
    if champion is not None:
        contenders["champion"] = Contender(champion.weights, champion.factors, dict(champion.options))
    return contenders


def evaluate_on_test(
    split: Split,
    eval_model: FactorModel,
    blend: BlendFit,
    champion: Champion | None,
    catalogue: Catalogue,
    config: TrainingConfig,
) -> dict[str, Any]:
    """Score the test window once for every contender: the SVD alone (``svd``, and ``champion_svd``),
    popularity, the candidate blend (``model``), each component alone and the champion's blend.
    Returns ``{"metrics", "curves", "scores", "info"}`` (see :func:`evaluate_models`)."""
    train_valid, exclude_seen = split.train_valid, not catalogue.repeat_purchases
    factor_models = {"svd": eval_model, **({"champion_svd": champion.factors} if champion is not None else {})}
    svd_figures = evaluate_models(
        train_valid,
        split.test,
        factor_models,
        k=config.k,
        exclude_seen=exclude_seen,
        block_size=config.block_size,
        seed=config.seed,
    )
    blend_figures = evaluate_blends(
        train_valid,
        eval_set(train_valid, split.test),
        _contenders(eval_model, blend, champion, catalogue),
        catalogue,
        k=config.k,
        exclude_seen=exclude_seen,
    )
    carried = {"model": "svd", "champion": "champion_svd"}
    return {
        "metrics": _merge_blend_metrics(svd_figures["metrics"], blend_figures["metrics"], carried),
        "curves": {**svd_figures["curves"], **blend_figures["curves"]},
        "scores": svd_figures["scores"],
        "info": svd_figures["info"],
    }


# --- the served recommender ----------------------------------------------------------------------
def fit_served_recommender(
    data: pd.DataFrame,
    eval_model: FactorModel,
    params: Mapping[str, Any],
    blend: BlendFit,
    catalogue: Catalogue,
    config: TrainingConfig,
) -> HybridRecommender:
    """The hybrid to register: the SVD refitted on all of ``data`` with ``params`` (or ``eval_model``
    without ``config.refit_full``), the fitted weights and options, the feed's policy, every other
    component fitted on all products, users and pairs."""
    factors = fit_biased_svd(data, config.svd_settings(params))[0] if config.refit_full else eval_model
    hybrid = catalogue.hybrid(
        weights=BlendWeights.from_meta({"weights": blend.weights}),
        options=blend.options,
        svd=BiasedSVD.from_factors(factors),
    )
    return hybrid.fit(catalogue.serving_set(data))


def _saw_test(trained_through: str | None, test: pd.DataFrame) -> bool | None:
    """Whether a model fitted on data up to ``trained_through`` may have seen rows of ``test``."""
    if not trained_through or test.empty:
        return None
    first_test = pd.to_datetime(test["event_timestamp"], utc=True).min()
    saw = bool(pd.Timestamp(trained_through) >= first_test)
    if saw:
        log.warning(
            "the champion was trained on data up to %s, past the test part's start %s: its test figures are optimistic",
            trained_through,
            first_test,
        )
    return saw


# --- the round ---------------------------------------------------------------------------------------
def train_tune_evaluate(
    ratings: pd.DataFrame | None,
    config: TrainingConfig | None = None,
    *,
    events: pd.DataFrame | None = None,
    champion: Champion | None = None,
    catalogue: Catalogue | None = None,
    dataset_source: str = RATINGS_RELATION,
    features_at: FeaturesAt | None = None,
    feature_service: str | None = None,
    tuned: TunedSVD | None = None,
) -> TrainResult:
    """Split three ways, tune the SVD and fit the blend on validation, score the test part once.

    ``ratings``: one row per user–item pair (``user_id, item_id, rating, event_timestamp``, optional
    ``purchases``).  ``events``: for feeds with repeat purchases, the interaction events
    (``user_id, item_id, event_timestamp``, optional ``event_type, order_id, quantity``); the time
    split then cuts events and every pair frame is rebuilt from them (``ratings`` may be ``None``).

    1. The SVD hyper-parameters are tuned on the validation window (fitted on the train part), unless
       ``tuned`` gives the search's outcome on this very split (the train DAG runs the trials as mapped
       tasks, :mod:`recomart.model.trials`); ``timings["tuning_s"]`` is then the trials' summed seconds.
    2. The hybrid's weights and component options are fitted on the same window with that SVD
       (:func:`recomart.model.blend_search.choose_blend`) over ``catalogue`` (products, segments,
       feed policy; ids only by default).
    3. The tuned SVD is refitted on train + validation and the test part is scored once for every
       contender (:func:`evaluate_on_test`), the ``champion`` re-scored with its own weights and
       options.  Feeds with repeat purchases are scored like the nightly job serves them: nothing
       excluded, repeats relevant; other feeds exclude every seen item.
    4. The served hybrid is fitted (:func:`fit_served_recommender`).
    5. Unless ``config.ranker`` is ``off``, the learned ranker is fitted on validation over the
       candidate generators with the user and item features of ``features_at`` (the feature store's
       ``feature_service`` read point-in-time at each cutoff), compared with the blend on validation and
       scored on the test window; the winner (or the one ``config.ranker`` names) is registered
       (:mod:`recomart.model.ranker_stage`, :func:`with_ranker`).

    A champion whose factors saw data past this split's earliest test row is flagged
    (``champion_saw_test_data``).
    """
    config = config or TrainingConfig()
    catalogue = catalogue if catalogue is not None else Catalogue()
    timings: dict[str, float] = {}
    with _timed(timings, "prepare_s"):
        data, split = prepared_split(ratings, events, config)
    exclude_seen = not catalogue.repeat_purchases
    if tuned is None:
        with _timed(timings, "tuning_s"):
            tuned = tune_svd(split.train, split.valid, config, exclude_seen=exclude_seen)
    else:
        timings["tuning_s"] = float(sum(trial["seconds"] for trial in tuned.trials))
    with _timed(timings, "blend_fit_s"):
        blend = fit_round_blend(split, tuned, catalogue, config)
    scored = score_round(data, split, tuned, blend, catalogue, config, champion=champion, features_at=features_at)
    stage = ranker_round(split, data, tuned, blend, catalogue, config, features_at, feature_service)
    return round_result(
        RoundSetup(config, catalogue, data, split, tuned, dataset_source, timings), blend, scored, stage
    )


@dataclass
class ScoredRound:
    """The test-window half of a round (:func:`score_round`): the tuned SVD refitted on train +
    validation (``eval_model``, fitted with ``n_negatives`` sampled negatives), every contender's test
    figures (``evaluation``, as :func:`evaluate_on_test` returns them, the champion's ranker re-scored
    when it has one), the hybrid to register, the re-scored champion's version and the latest time its
    factors saw, and the seconds of ``fit_train_s``, ``evaluate_s`` and ``fit_full_s``."""

    eval_model: FactorModel
    n_negatives: int
    evaluation: dict[str, Any]
    recommender: HybridRecommender
    champion_version: str | None = None
    champion_trained_through: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundSetup:
    """What every step of a round shares: the settings, the catalogue, the prepared pairs and their
    split, the tuned SVD, where the pairs came from and the seconds spent so far (``prepare_s``,
    ``tuning_s``, ``blend_fit_s``)."""

    config: TrainingConfig
    catalogue: Catalogue
    data: pd.DataFrame
    split: Split
    tuned: TunedSVD
    dataset_source: str = RATINGS_RELATION
    timings: Mapping[str, float] = field(default_factory=dict)


def score_round(
    data: pd.DataFrame,
    split: Split,
    tuned: TunedSVD,
    blend: BlendFit,
    catalogue: Catalogue,
    config: TrainingConfig,
    *,
    champion: Champion | None = None,
    features_at: FeaturesAt | None = None,
) -> ScoredRound:
    """Steps 3 and 4 of :func:`train_tune_evaluate`: refit the tuned SVD on train + validation, score
    every contender on the test window once, fit the hybrid to register.  Independent of the ranker's
    stage (:func:`ranker_round`): the train DAG runs the two as parallel tasks."""
    timings: dict[str, float] = {}
    with _timed(timings, "fit_train_s"):
        eval_model, n_negatives = fit_biased_svd(split.train_valid, config.svd_settings(tuned.params))
    with _timed(timings, "evaluate_s"):
        evaluation = evaluate_on_test(split, eval_model, blend, champion, catalogue, config)
    with _timed(timings, "fit_full_s"):
        recommender = fit_served_recommender(data, eval_model, tuned.params, blend, catalogue, config)
    if champion is not None and champion.ranker is not None:
        rescored = rescore_champion_ranker(champion.ranker, split, catalogue, features_at, config.k)
        if rescored is not None:
            evaluation["metrics"]["champion"] = rescored
    return ScoredRound(
        eval_model,
        n_negatives,
        evaluation,
        recommender,
        champion_version=None if champion is None else champion.version,
        champion_trained_through=None if champion is None else champion.trained_through,
        timings=timings,
    )


def round_result(setup: RoundSetup, blend: BlendFit, scored: ScoredRound, stage: RankerStage | None) -> TrainResult:
    """The round's :class:`TrainResult` from its parts: the blend, the test-window half and the ranker's
    stage (None when the ranker is off); logs the outcome."""
    data, split = setup.data, setup.split
    timings = {**setup.timings, **scored.timings, **(stage.timings if stage is not None else {})}
    timings["total_s"] = sum(timings.values())
    split_info = {
        **_split_record(data, split, scored.n_negatives, scored.evaluation["info"]),
        "champion_saw_test_data": _saw_test(scored.champion_trained_through, split.test),
    }
    result = _result(
        setup.config,
        setup.catalogue,
        data,
        split,
        setup.tuned,
        blend,
        scored.eval_model,
        scored.recommender,
        scored.evaluation,
        split_info,
    )
    result.timings, result.dataset_source = timings, setup.dataset_source
    result.champion_version = scored.champion_version
    with_ranker(result, stage)
    _log_outcome(result, blend)
    return result


def ranker_round(
    split: Split,
    data: pd.DataFrame,
    tuned: TunedSVD,
    blend: BlendFit,
    catalogue: Catalogue,
    config: TrainingConfig,
    features_at: FeaturesAt | None,
    feature_service: str | None,
) -> RankerStage | None:
    """Step 5 of :func:`train_tune_evaluate`: :func:`recomart.model.ranker_stage.fit_ranker_stage` with
    the round's blend (train-part SVD); None when ``config.ranker`` is ``off``."""
    if config.ranker == "off":
        return None
    blend_hybrid = train_part_blend(split, tuned, blend, catalogue, config)
    return fit_ranker_stage(
        split, data, blend_hybrid, catalogue, ranker_options(config, tuned, features_at, feature_service)
    )


def ranker_options(
    config: TrainingConfig, tuned: TunedSVD, features_at: FeaturesAt | None, feature_service: str | None
) -> RankerOptions:
    """The ranker stage's options for this round's settings and tuned SVD."""
    return RankerOptions(
        svd=config.svd_settings(tuned.params),
        features_at=features_at,
        feature_service=feature_service,
        strategy=config.ranker,
        k=config.k,
        seed=config.seed,
    )


def train_part_blend(
    split: Split, tuned: TunedSVD, blend: BlendFit, catalogue: Catalogue, config: TrainingConfig
) -> HybridRecommender:
    """The round's blend (weights and options) over the tuned SVD fitted on the train part, unfitted: what
    the learned ranker is compared with on validation."""
    train_model = tuned.train_model or fit_biased_svd(split.train, config.svd_settings(tuned.params))[0]
    return catalogue.hybrid(
        weights=BlendWeights.from_meta({"weights": blend.weights}),
        options=blend.options,
        svd=BiasedSVD.from_factors(train_model),
        exclude_seen=not catalogue.repeat_purchases,
    )


def with_ranker(result: TrainResult, stage: RankerStage | None) -> None:
    """Record the registered strategy in ``result`` (``metadata["strategy"]``: ``ranker`` or ``blend``).

    With a ranker stage, ``metrics["blend"]`` keeps the blend's test figures and ``metrics["ranker"]``
    the ranker's; when the ranker is registered, ``metrics["model"]`` (what the gate judges) becomes the
    ranker's figures and the served hybrid ranks through it."""
    result.metadata["strategy"] = "blend" if stage is None else stage.strategy
    if stage is None:
        return
    result.metadata["ranker"] = stage.record
    if not stage.metrics:  # not fitted (too small a validation window): nothing to report
        return
    result.metrics["blend"] = dict(result.metrics["model"])
    result.metrics["ranker"] = dict(stage.metrics)
    result.curves["blend"], result.curves["ranker"] = result.curves["model"], stage.curves
    if stage.strategy == "ranker":
        result.metrics["model"], result.curves["model"] = dict(stage.metrics), stage.curves
        result.recommender.ranker = stage.served
        metric = result.primary_metric
        result.beats_popularity = bool(result.metrics["model"][metric] > result.metrics["popularity"][metric])


def fit_round_blend(split: Split, tuned: TunedSVD, catalogue: Catalogue, config: TrainingConfig) -> BlendFit:
    """Step 2 of :func:`train_tune_evaluate`: the blend chosen on validation with the tuned SVD fitted on
    the train part."""
    train_model = tuned.train_model
    if train_model is None and not split.valid.empty:
        train_model = fit_biased_svd(split.train, config.svd_settings(tuned.params))[0]
    svd = None if train_model is None else BiasedSVD.from_factors(train_model)
    return choose_blend(
        split.train,
        split.valid,
        catalogue,
        svd=svd,
        exclude_seen=not catalogue.repeat_purchases,
        search=config.blend,
        k=config.k,
        seed=config.seed,
    )


def _split_record(data: pd.DataFrame, split: Split, n_negatives: int, info: Mapping[str, Any]) -> dict[str, Any]:
    """The split's description and sizes (``ratings`` = pairs; ``test_pairs_in_train`` is 0 for a pair
    split and counts the repeat pairs of an event split) plus the evaluation's counts."""
    return {
        **split.info,
        "n_ratings": int(len(data)),
        "n_train": int(len(split.train)),
        "n_valid": int(len(split.valid)),
        "n_test": int(len(split.test)),
        "n_negatives_train": int(n_negatives),
        "test_pairs_in_train": int(overlapping_pairs(split.train_valid, split.test)),
        **info,
    }


def _params(config: TrainingConfig, catalogue: Catalogue, tuned: TunedSVD, split: Split) -> dict[str, Any]:
    """Every setting of the round, flat (the MLflow run's params)."""
    return {
        **config.svd_settings(tuned.params).svd_params,
        "biased": True,
        "seed": int(config.seed),
        "k": int(config.k),
        "mode": config.mode,
        "implicit": config.implicit,
        "negative_ratio": float(config.negative_ratio),
        "negative_sampling": config.negative_sampling,
        "negative_rating": float(config.negative_rating),
        "seen_policy_exclude": not catalogue.repeat_purchases,
        "refit_full": bool(config.refit_full),
        "split": config.split,
        "split_unit": "events" if split.by_events else "pairs",
        **{f"split_{key}": value for key, value in config.split_options.items()},
        "tuning_metric": config.effective_tuning_metric,
        "tuning_trials": len(tuned.trials),
        "tuning_budget_s": float(config.tuning_budget_s),
        "primary_metric": config.primary_metric,
        "gate_margin": float(config.gate_margin),
        "repeat_purchases": bool(catalogue.repeat_purchases),
    }


def _result(
    config: TrainingConfig,
    catalogue: Catalogue,
    data: pd.DataFrame,
    split: Split,
    tuned: TunedSVD,
    blend: BlendFit,
    eval_model: FactorModel,
    recommender: HybridRecommender,
    evaluation: dict[str, Any],
    split_info: dict[str, Any],
) -> TrainResult:
    metrics = evaluation["metrics"]
    metric = config.primary_metric
    return TrainResult(
        recommender=recommender,
        eval_model=eval_model,
        metrics=metrics,
        beats_popularity=bool(metrics["model"][metric] > metrics["popularity"][metric]),
        params=_params(config, catalogue, tuned, split),
        data_digest=data_digest(data),
        split=split_info,
        refit_full=bool(config.refit_full),
        primary_metric=metric,
        gate_margin=float(config.gate_margin),
        trials=tuned.trials,
        curves=evaluation["curves"],
        score_samples=evaluation["scores"],
        data=data,
        metadata={
            "eval_trained_through": pd.Timestamp(split.train_valid["event_timestamp"].max()).isoformat(),
            "weights": dict(blend.weights),
            "blend": blend_record(blend),
        },
    )


def _log_outcome(result: TrainResult, blend: BlendFit) -> None:
    metric, metrics = result.primary_metric, result.metrics
    champion = f" vs champion {metrics['champion'][metric]:.4f}" if "champion" in metrics else ""
    log.info(
        "blend %s=%.4f (svd %.4f) vs popularity %.4f%s; weights %s options %s (%s, %.1fs) after %d trials in %.1fs",
        metric,
        metrics["model"][metric],
        metrics["svd"][metric],
        metrics["popularity"][metric],
        champion,
        blend.weights,
        blend.options,
        blend.reason,
        result.timings["blend_fit_s"],
        len(result.trials),
        result.timings["total_s"],
    )
