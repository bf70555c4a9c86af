"""The learned ranker in a training round: fitted on validation, compared with the blend on validation,
scored once on the test window, and attached to the served hybrid when it won.

Protocol (nothing is chosen on the test window):

1. **Generators.** :func:`recomart.model.ranker_fit.ranker_generators` with the round's tuned SVD
   settings and EASE / RP3β tuned on validation (:func:`recomart.model.component_search.choose_fitted`;
   the chosen point's fit of the train part is kept, so step 2 does not fit it again).
2. **Validation.** The validation users are split, seeded, into the ranker's users (its LambdaRank
   labels and early stopping) and the comparison users (``COMPARE_SHARE``).  The ranker is fitted on
   the train part with the labels of its users; the comparison users are ranked by the ranker and by
   the blend (fitted on the same train part with the round's weights and options), and the higher
   nDCG@k picks the **strategy** (``ranker`` or ``blend``).  The blend's weights were fitted on every
   validation user, so the comparison leans towards the blend, never towards the ranker.
3. **Test.** The generators are refitted on train + validation (the learned model is kept) and the
   test users are ranked once, like every other contender (``metrics["ranker"]``).
4. **Serving.** When the ranker won, its generators are refitted on all the data and it goes into the
   registered hybrid (:attr:`recomart.ranking.hybrid.HybridRecommender.ranker`).

Each step is a function of its own (:func:`tune_generator` per tuned generator, :func:`fit_and_choose`,
:func:`score_ranker_on_test`, :func:`serve_ranker`, then :func:`assemble_stage`), so that the train DAG
runs them as tasks: each generator's tuning beside the SVD trials (it needs only the split), the test
window beside the serving fit.  :func:`fit_ranker_stage` runs them one after another.

User and item features come from ``features_at(cutoff, user_ids, item_ids)`` (a :data:`FeaturesAt`:
the feature store's values point-in-time at ``cutoff``, see
:func:`recomart.features.point_in_time.entity_frames_at`) at the validation cutoff for fitting and at
the test cutoff for the test figures; cross features (category share, relative price) come from the
history (:mod:`recomart.ranking.ranker_features`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recomart.model.catalogue import Catalogue
from recomart.model.component_search import (
    CANDIDATES,
    choose_fitted,
    fit_of,
    remember_fit,
    users_ndcg,
    validation_users,
)
from recomart.model.evaluate import CURVE_KS, eval_set, metric_ks, ranking_summary
from recomart.model.ranker_fit import RANKER_CANDIDATES, RANKER_THREADS, ranker_generators
from recomart.model.split import Split
from recomart.ranking.history import ExcludePolicy, UserHistory
from recomart.ranking.hybrid import HybridRecommender
from recomart.ranking.ranker import LearnedRanker
from recomart.ranking.ranker_features import frame_columns
from recomart.ranking.svd import SVDSettings

log = logging.getLogger(__name__)

#: ``features_at(cutoff, user_ids, item_ids) -> (user frame, item frame)``: numeric frames indexed by id
FeaturesAt = Callable[[pd.Timestamp, np.ndarray, np.ndarray], tuple[pd.DataFrame | None, pd.DataFrame | None]]
#: share of the validation users held out of the ranker's fit to compare it with the blend
COMPARE_SHARE = 0.3


@dataclass
class RankerStage:
    """What the stage produced: the ``strategy`` to register (``ranker`` or ``blend``) and why
    (``validation``: nDCG@k of both on the comparison users), the ranker's test ``metrics`` / ``curves``,
    the ranker fitted for serving (None unless it is registered), the ``record`` for the run (its
    ``skipped`` says why when the validation window is too small to fit the ranker: the blend is then
    registered, ``validation`` and ``metrics`` are empty) and the ``timings``: ``ranker_features_s``
    (feature-store reads) and the seconds of each of :data:`RANKER_STEPS` without them
    (``ranker_<step>_s``)."""

    strategy: str
    validation: dict[str, float]
    metrics: dict[str, float]
    curves: dict[str, Any]
    served: LearnedRanker | None
    record: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


RANKER_STEPS = ("tune", "fit", "compare", "test", "serve_fit")
"""The stage's timed steps: EASE and RP3β tuned on validation, the generators and LightGBM fitted on the
train part, the ranker and the blend scored on the comparison users, the test window (generators refitted
on train + validation), the serving fit on all the data (only when the ranker is registered)."""


class _Clock:
    """Seconds spent reading features, and in each step of the stage apart from them."""

    def __init__(self, features_at: FeaturesAt | None) -> None:
        self.features_at, self.features_s = features_at, 0.0
        self.last, self.features_at_last = time.perf_counter(), 0.0
        self.steps: dict[str, float] = {}

    def lap(self, step: str) -> None:
        """End ``step`` (one of :data:`RANKER_STEPS`): the seconds since the last lap, less feature reads."""
        now = time.perf_counter()
        seconds = now - self.last - (self.features_s - self.features_at_last)
        self.steps[f"ranker_{step}_s"] = self.steps.get(f"ranker_{step}_s", 0.0) + seconds
        self.last, self.features_at_last = now, self.features_s

    def attach(self, ranker: LearnedRanker, cutoff: pd.Timestamp, users: np.ndarray) -> None:
        """Set ``ranker``'s user and item frames to the feature store's values at ``cutoff``."""
        if self.features_at is None:
            ranker.user_features = ranker.item_features = None
            return
        started = time.perf_counter()
        ranker.user_features, ranker.item_features = self.features_at(cutoff, users, ranker.item_ids)
        self.features_s += time.perf_counter() - started

    def timings(self) -> dict[str, float]:
        return {"ranker_features_s": self.features_s, **self.steps}


def _store_columns(ranker: LearnedRanker) -> list[str]:
    """The learned feature columns that come from the feature store's user and item frames."""
    none = np.zeros(0, dtype=object)
    names = {*frame_columns(ranker.user_features, none, "user_"), *frame_columns(ranker.item_features, none, "item_")}
    return [name for name in ranker.feature_names if name in names]


def _window_start(frame: pd.DataFrame) -> pd.Timestamp:
    return pd.Timestamp(pd.to_datetime(frame["event_timestamp"], utc=True).min())


@dataclass(frozen=True)
class GeneratorChoice:
    """Step 1 for one tuned generator (:data:`~recomart.model.component_search.CANDIDATES`): its name, the
    ``params`` chosen on validation (None with ``skipped``: why no choice could be made), the seconds and
    the chosen point's ``fit`` on the train part (its fit key and state arrays, which step 2 reuses
    instead of fitting the same part again: :func:`~recomart.model.component_search.remember_fit`)."""

    name: str
    params: dict[str, Any] | None
    seconds: float
    skipped: str | None = None
    fit: tuple[str, dict[str, np.ndarray]] | None = None


def tune_generator(
    name: str, train: pd.DataFrame, valid: pd.DataFrame, catalogue: Catalogue, k: int = 10
) -> GeneratorChoice:
    """Step 1: choose ``name``'s parameters (EASE's λ, RP3β's α and β), fitted on the ``train`` part and
    scored on the ``valid`` part of the split."""
    build, grid = CANDIDATES[name]
    started = time.perf_counter()
    try:
        picked, fitted = choose_fitted(
            build, grid, train, valid, catalogue, k=k, exclude_seen=not catalogue.repeat_purchases
        )
    except ValueError as exc:  # too few validation users to tune on
        return GeneratorChoice(name, None, time.perf_counter() - started, str(exc))
    return GeneratorChoice(name, picked["params"], time.perf_counter() - started, fit=fit_of(fitted))


@dataclass
class FittedRanker:
    """Step 2's outcome: the ``strategy`` to register and why (``validation``: nDCG@k of the ranker and of
    the blend on the comparison users), the ranker fitted on the train part with its learned model (None,
    with ``record["skipped"]``, when it could not be fitted), the ``record`` and the ``timings`` so far."""

    strategy: str
    validation: dict[str, float]
    ranker: LearnedRanker | None
    record: dict[str, Any]
    timings: dict[str, float]


@dataclass(frozen=True)
class RankerOptions:
    """How the stage runs: ``svd``, the round's tuned SVD settings (its SVD generator's); ``features_at``,
    the feature-store reads (None: none) and ``feature_service``, the name the ranker records for them;
    ``strategy``: ``validation`` (whatever wins there), or ``blend`` / ``ranker`` to register that one
    whatever validation says; ``k`` of nDCG@k and the ``seed``."""

    svd: SVDSettings
    features_at: FeaturesAt | None
    feature_service: str | None
    strategy: str = "validation"
    k: int = 10
    seed: int = 42


def _skipped(record: dict[str, Any], rule: str, reason: str, timings: dict[str, float]) -> FittedRanker:
    log.warning("learned ranker not fitted, the blend is registered: %s", reason)
    record.update(strategy="blend", strategy_rule=rule, skipped=reason)
    return FittedRanker("blend", {}, None, record, timings)


def _compare_users(valid: pd.DataFrame, seed: int) -> np.ndarray:
    """The seeded :data:`COMPARE_SHARE` of the validation users that the ranker is not fitted on."""
    users = np.sort(valid["user_id"].astype(str).unique())
    return users[np.random.default_rng(seed).random(len(users)) < COMPARE_SHARE]


def fit_and_choose(
    split: Split,
    blend_hybrid: HybridRecommender,
    catalogue: Catalogue,
    choices: list[GeneratorChoice],
    options: RankerOptions,
) -> FittedRanker:
    """Step 2 (module docstring) with the generators of ``choices`` (step 1).  ``blend_hybrid``: the
    blend with the round's weights, options and train-part SVD, unfitted."""
    strategy, features_at, k, seed = options.strategy, options.features_at, options.k, options.seed
    if strategy not in ("validation", "blend", "ranker"):
        raise ValueError(f"ranker strategy {strategy!r} is not validation, blend or ranker")
    tuned = {choice.name: choice.params for choice in choices if choice.params is not None}
    record: dict[str, Any] = {f"{name}_params": params for name, params in tuned.items()}
    clock = _Clock(features_at)
    clock.steps["ranker_tune_s"] = sum(choice.seconds for choice in choices)
    not_tuned = [f"{choice.name}: {choice.skipped}" for choice in choices if choice.skipped is not None]
    if not_tuned:
        return _skipped(record, strategy, "; ".join(not_tuned), clock.timings())
    for choice in choices:
        if choice.fit is not None:
            remember_fit(choice.name, *choice.fit)
    chosen = {name: CANDIDATES[name][0](params) for name, params in tuned.items()}
    policy: ExcludePolicy = "interacted" if not catalogue.repeat_purchases else "none"
    compare = _compare_users(split.valid, seed)
    ranker = LearnedRanker(
        ranker_generators(catalogue, options.svd, chosen),
        n_candidates=RANKER_CANDIDATES,
        exclude=policy,
        seed=seed,
        num_threads=RANKER_THREADS,
    )
    ranker.feature_service = options.feature_service if features_at is not None else None
    try:
        validation = _fit_and_compare(ranker, split, catalogue, blend_hybrid, clock, compare, k)
    except ValueError as exc:  # too few validation users to learn from or compare on
        clock.lap("fit")  # a stage that stopped early counts its last step's seconds as fitting
        return _skipped(record, strategy, str(exc), clock.timings())
    won = "ranker" if validation["ranker"] > validation["blend"] else "blend"
    registered = won if strategy == "validation" else strategy
    record.update(
        strategy=registered,
        strategy_rule=strategy,
        validation_ndcg=validation,
        n_compare_users=int(len(compare)),
        feature_service=ranker.feature_service,
        store_features=_store_columns(ranker),
        generators=list(ranker.generators),
        n_candidates=RANKER_CANDIDATES,
        **ranker.evidence,
        feature_importances=ranker.feature_importances(),
    )
    log.info(
        "ranker nDCG@%d on %d validation users %.4f vs blend %.4f: registering the %s (%s)",
        k,
        len(compare),
        validation["ranker"],
        validation["blend"],
        registered,
        "validation winner" if strategy == "validation" else f"forced by the {strategy!r} setting",
    )
    return FittedRanker(registered, validation, ranker, record, clock.timings())


@dataclass(frozen=True)
class RankerTest:
    """Step 3's outcome: the ranker's test ``metrics`` and ``curves`` and the ``timings``."""

    metrics: dict[str, float]
    curves: dict[str, Any]
    timings: dict[str, float]


def score_ranker_on_test(
    ranker: LearnedRanker, split: Split, catalogue: Catalogue, features_at: FeaturesAt | None, k: int = 10
) -> RankerTest:
    """Step 3: the fitted ``ranker`` (its generators refitted on train + validation) scored once on the
    test window."""
    clock = _Clock(features_at)
    policy: ExcludePolicy = "interacted" if not catalogue.repeat_purchases else "none"
    metrics, curves = _test_figures(ranker, split, catalogue, clock, k, policy)
    clock.lap("test")
    return RankerTest(metrics, curves, clock.timings())


def serve_ranker(ranker: LearnedRanker, data: pd.DataFrame, catalogue: Catalogue) -> tuple[LearnedRanker, float]:
    """Step 4: (the ranker with its generators refitted on all the data and no feature frames, seconds)."""
    started = time.perf_counter()
    served = ranker.fit(catalogue.serving_set(data))
    served.user_features = served.item_features = None  # read again at each ranking's cutoff
    return served, time.perf_counter() - started


def assemble_stage(
    fitted: FittedRanker, tested: RankerTest | None, served: tuple[LearnedRanker, float] | None
) -> RankerStage:
    """The :class:`RankerStage` of steps 2-4 (``tested`` is None when the ranker was not fitted, ``served``
    unless it is registered)."""
    timings = dict(fitted.timings)
    extra = dict(tested.timings) if tested is not None else {}
    if served is not None:
        extra["ranker_serve_fit_s"] = served[1]
    for key, seconds in extra.items():
        timings[key] = timings.get(key, 0.0) + seconds
    if tested is None:
        return RankerStage(fitted.strategy, {}, {}, {}, None, fitted.record, timings)
    ranker = None if served is None else served[0]
    return RankerStage(
        fitted.strategy, fitted.validation, tested.metrics, tested.curves, ranker, fitted.record, timings
    )


def fit_ranker_stage(
    split: Split, data: pd.DataFrame, blend_hybrid: HybridRecommender, catalogue: Catalogue, options: RankerOptions
) -> RankerStage:
    """Run the stage's steps one after another in this process (module docstring; the train DAG runs
    them as tasks of their own).  Arguments as :func:`fit_and_choose`'s."""
    choices = [tune_generator(name, split.train, split.valid, catalogue, options.k) for name in CANDIDATES]
    fitted = fit_and_choose(split, blend_hybrid, catalogue, choices, options)
    if fitted.ranker is None:
        return assemble_stage(fitted, None, None)
    tested = score_ranker_on_test(fitted.ranker, split, catalogue, options.features_at, options.k)
    served = serve_ranker(fitted.ranker, data, catalogue) if fitted.strategy == "ranker" else None
    return assemble_stage(fitted, tested, served)


def _fit_and_compare(
    ranker: LearnedRanker,
    split: Split,
    catalogue: Catalogue,
    blend_hybrid: HybridRecommender,
    clock: _Clock,
    compare: np.ndarray,
    k: int,
) -> dict[str, float]:
    """Fit ``ranker`` on the train part with the validation labels of the users not in ``compare``
    (features at the validation cutoff); returns ``{"ranker", "blend"}``: nDCG@k of the ranker and of
    ``blend_hybrid`` (fitted on the same part) on the ``compare`` users."""
    exclude_seen = not catalogue.repeat_purchases
    training = catalogue.evaluation_set(split.train)
    ranker.item_ids = training.item_ids
    clock.attach(ranker, _window_start(split.valid), training.entries.user_ids)
    held = split.valid["user_id"].astype(str).isin(compare).to_numpy()
    ranker.fit_ranker(training, split.valid[~held])
    clock.lap("fit")
    compared = validation_users(training, split.valid[held], exclude_seen=exclude_seen)
    scores = {
        "ranker": users_ndcg(ranker, compared, k),
        "blend": users_ndcg(blend_hybrid.fit(training), compared, k),
    }
    clock.lap("compare")
    return scores


def _test_figures(
    ranker: LearnedRanker, split: Split, catalogue: Catalogue, clock: _Clock, k: int, policy: ExcludePolicy
) -> tuple[dict[str, float], dict[str, Any]]:
    """The ranker's metrics and curves on the test window: generators refitted on train + validation,
    features at the test cutoff, the same users, catalogue and exclusion as every other contender."""
    evaluation = eval_set(split.train_valid, split.test)
    training = catalogue.evaluation_set(split.train_valid)
    ranker.fit(training)
    users = evaluation.eval_user_ids
    clock.attach(ranker, _window_start(split.test), users)
    ks = metric_ks(k)
    aligned = UserHistory.align(training.history, users, training.item_ids)
    ids = ranker.recommend_aligned(aligned, max(max(CURVE_KS), k), policy).item_ids
    top = evaluation.items.get_indexer(pd.Index(ids.ravel())).reshape(ids.shape)
    metrics, curve = ranking_summary(top, evaluation.relevant, len(evaluation.items), k, ks, CURVE_KS)
    return metrics, curve


def rescore_champion_ranker(
    champion: LearnedRanker, split: Split, catalogue: Catalogue, features_at: FeaturesAt | None, k: int = 10
) -> dict[str, float] | None:
    """The test figures of a champion whose registered strategy is the ranker: its learned model kept,
    its generators refitted on this round's train + validation parts (never on the test window) and
    its store features read at the test cutoff, as :func:`_test_figures` scores the candidate.  None
    (with a warning) when it reads a feature service that ``features_at`` cannot provide."""
    if champion.feature_service is not None and features_at is None:
        log.warning("the champion's ranker reads %s, unreadable here: not re-scored", champion.feature_service)
        return None
    policy: ExcludePolicy = "interacted" if not catalogue.repeat_purchases else "none"
    return _test_figures(champion, split, catalogue, _Clock(features_at), k, policy)[0]
