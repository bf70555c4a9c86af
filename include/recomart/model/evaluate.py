"""Score factor models, hybrids and a popularity baseline on one split, over one catalogue.

Every contender ranks the same users over the same items (those of the training part), with the same
mask of seen items, so their metrics are comparable.  A model fitted on other data (the current
champion) is first *aligned* to this catalogue: users or items it does not know get zero factors
and zero bias, which is exactly ``SVD.estimate`` dropping the missing terms.  Hybrids
(:func:`evaluate_blends`) rank through :class:`recomart.ranking.hybrid.HybridRecommender`, the
very class that is registered and served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recomart.model.catalogue import Catalogue
from recomart.ranking import metrics as M
from recomart.ranking.blend import BlendWeights
from recomart.ranking.factors import FactorModel
from recomart.ranking.hybrid import HybridRecommender
from recomart.ranking.scoring import DEFAULT_BLOCK_SIZE, pair_scores, recommend_top_k, static_top_k, svd_scores
from recomart.ranking.svd import BiasedSVD

CURVE_KS = (1, 2, 3, 5, 10, 15, 20)
LOWER_IS_BETTER = frozenset({"rmse", "mae"})


def align_factors(model: FactorModel, user_ids: Any, item_ids: Any) -> FactorModel:
    """``model`` re-indexed onto ``user_ids`` × ``item_ids``; unknown ids get zero factors and bias.

    Scores of the aligned model equal ``mu + bu + bi + pu·qi`` with the missing terms dropped, as
    ``surprise.SVD.estimate`` does for an unknown user or item.
    """
    u = model.user_index(user_ids)
    i = model.item_index(item_ids)
    ku, ki = u >= 0, i >= 0

    def take(values: np.ndarray, rows: np.ndarray, known: np.ndarray) -> np.ndarray:
        out = values[np.where(known, rows, 0)].copy()
        out[~known] = 0.0
        return out

    return FactorModel(
        user_ids=np.asarray(user_ids, dtype=object),
        item_ids=np.asarray(item_ids, dtype=object),
        global_mean=model.global_mean,
        user_bias=take(model.user_bias, u, ku),
        item_bias=take(model.item_bias, i, ki),
        user_factors=take(model.user_factors, u, ku),
        item_factors=take(model.item_factors, i, ki),
    )


def _codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    return index.get_indexer(pd.Index(values.astype(str).to_numpy())).astype(np.int64)


@dataclass(frozen=True)
class EvalSet:
    """Who is ranked over what on one split: the training part's sorted ``users`` and ``items``, the
    test users ranked (``eval_users``, rows of ``users``) with their ``relevant`` test items, the
    training pairs (``seen``), the test pairs' codes (``test_users`` / ``test_items``, -1 unknown) and
    the number of test users that could be ranked (``eligible_users``; ``eval_users`` may be a sample)."""

    users: pd.Index
    items: pd.Index
    eval_users: np.ndarray
    relevant: sp.csr_matrix
    seen: sp.csr_matrix
    test_users: np.ndarray
    test_items: np.ndarray
    eligible_users: int

    @property
    def evaluated(self) -> np.ndarray:
        """bool mask of the test pairs that are scored (known user and item)."""
        return (self.test_users >= 0) & (self.test_items >= 0)

    @property
    def eval_user_ids(self) -> np.ndarray:
        return self.users.to_numpy()[self.eval_users]

    def info(self) -> dict[str, int]:
        return {
            "n_eval_users": int(len(self.eval_users)),
            "n_eligible_users": int(self.eligible_users),
            "n_test_pairs_evaluated": int(self.evaluated.sum()),
            "n_test_pairs_cold_user": int((self.test_users < 0).sum()),
            "n_test_pairs_cold_item": int(((self.test_users >= 0) & (self.test_items < 0)).sum()),
            "n_items": int(len(self.items)),
        }


#: test users the test window ranks at most (a seeded sample beyond it, the same one for every contender
#: of a round): each is ranked against the whole catalogue, so more users cost users × items per contender
TEST_MAX_USERS = 10_000


def eval_set(train: pd.DataFrame, test: pd.DataFrame, *, max_users: int = TEST_MAX_USERS, seed: int = 0) -> EvalSet:
    """Test users present in ``train`` with at least one test item of the train catalogue, and their items;
    a sample of ``max_users`` of those users (seeded: the same split gives the same users) when there are
    more (``n_eligible_users`` in :meth:`EvalSet.info` counts them all)."""
    users = pd.Index(np.sort(train["user_id"].astype(str).unique()))
    items = pd.Index(np.sort(train["item_id"].astype(str).unique()))
    test_users, test_items = _codes(test["user_id"], users), _codes(test["item_id"], items)
    known = (test_users >= 0) & (test_items >= 0)
    eval_users, relevant_rows = np.unique(test_users[known], return_inverse=True)
    if len(eval_users) == 0:
        raise ValueError("no test pair has a user and an item of the training part: split too small")
    ones = np.ones(int(known.sum()), dtype=np.int8)
    relevant = sp.csr_matrix((ones, (relevant_rows, test_items[known])), shape=(len(eval_users), len(items)))
    eligible = len(eval_users)
    if eligible > max_users:
        keep = np.sort(np.random.default_rng(seed).choice(eligible, max_users, replace=False))
        eval_users, relevant = eval_users[keep], relevant[keep]
    train_users, train_items = _codes(train["user_id"], users), _codes(train["item_id"], items)
    seen = sp.csr_matrix(
        (np.ones(len(train_users), dtype=np.int8), (train_users, train_items)), shape=(len(users), len(items))
    )
    seen.sum_duplicates()
    seen.data[:] = 1
    return EvalSet(users, items, eval_users, relevant, seen, test_users, test_items, eligible)


def ranking_summary(
    top: np.ndarray, relevant: sp.csr_matrix, n_items: int, k: int, ks: list[int], curve_ks: tuple[int, ...]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Ranking metrics of ``top`` (item indices, best first, -1 empty) at every ``ks``, catalog
    coverage at ``k`` and the metric-vs-K curve at ``curve_ks``."""
    metrics: dict[str, float] = {}
    for kk in ks:
        metrics.update(M.ranking_metrics(top[:, :kk], relevant, kk))
    metrics["catalog_coverage"] = M.catalog_coverage(top[:, :k], n_items)
    curve = {str(kk): {key: metrics[f"{key}_at_{kk}"] for key in ("ndcg", "precision", "recall")} for kk in curve_ks}
    return metrics, curve


def metric_ks(k: int, curve_ks: tuple[int, ...] = CURVE_KS) -> list[int]:
    """The cut-offs every contender is scored at: ``k``, 10 and the curve's."""
    return sorted({int(k), 10, *curve_ks})


def _rating_errors(
    model: FactorModel, evaluation: EvalSet, train: pd.DataFrame, test: pd.DataFrame
) -> dict[str, float]:
    """RMSE and MAE of the clipped estimates of the scored test pairs (none without ratings)."""
    if "rating" not in test or "rating" not in train:
        return {}
    scored = evaluation.evaluated
    truth = test["rating"].to_numpy(dtype=np.float64)[scored]
    low, high = float(train["rating"].min()), float(train["rating"].max())
    rows, columns = evaluation.test_users[scored], evaluation.test_items[scored]
    estimates = np.clip(pair_scores(model, rows, columns), low, high)
    return {"rmse": M.rmse(truth, estimates), "mae": M.mae(truth, estimates)}


def evaluate_models(
    train: pd.DataFrame,
    test: pd.DataFrame,
    models: dict[str, FactorModel],
    *,
    k: int = 10,
    exclude_seen: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    curve_ks: tuple[int, ...] = CURVE_KS,
    score_sample: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of each model in ``models`` and of ``popularity`` (train counts) on ``test``.

    Users: test users present in ``train`` with at least one test item of the train catalogue
    (:func:`eval_set`).  User coverage is the share of all test users a model has factors for.  Returns
    ``{"metrics": {name: {...}}, "curves": {name: {k: {...}}}, "scores": {name: [...]}, "info": {...}}``.
    """
    evaluation = eval_set(train, test)
    n_items, eval_users = len(evaluation.items), evaluation.eval_users
    exclude = evaluation.seen if exclude_seen else None
    k_max = max(max(curve_ks), k)
    test_user_ids = test["user_id"].astype(str).drop_duplicates().to_numpy()
    rng = np.random.default_rng(seed)
    sample_users = eval_users[rng.permutation(len(eval_users))[: max(1, score_sample // max(n_items, 1))]]
    tops: dict[str, np.ndarray] = {}
    out: dict[str, Any] = {"metrics": {}, "curves": {}, "scores": {}}
    for name, model in models.items():
        aligned = align_factors(model, evaluation.users, evaluation.items)
        tops[name], _ = recommend_top_k(aligned, eval_users, k_max, exclude, eval_users, block_size)
        out["metrics"][name] = {
            **_rating_errors(aligned, evaluation, train, test),
            "user_coverage": M.user_coverage(model.user_index(test_user_ids)),
        }
        out["scores"][name] = svd_scores(aligned, sample_users).ravel()[:score_sample].astype(float).tolist()
    popularity = np.asarray(evaluation.seen.sum(axis=0)).ravel().astype(np.float32)
    tops["popularity"], _ = static_top_k(popularity, len(eval_users), k_max, exclude, eval_users, block_size)
    out["metrics"]["popularity"] = {}
    for name, top in tops.items():
        ranking, out["curves"][name] = ranking_summary(
            top, evaluation.relevant, n_items, k, metric_ks(k, curve_ks), curve_ks
        )
        out["metrics"][name].update(ranking)
    out["info"] = evaluation.info()
    return out


def better(metric: str, a: float, b: float, margin: float = 0.0) -> bool:
    """Whether ``a`` beats ``b`` on ``metric`` by the relative ``margin`` (direction-aware, NaN never wins)."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return False
    if metric.split("_at_")[0] in LOWER_IS_BETTER or metric in LOWER_IS_BETTER:
        return a < b * (1.0 - margin)
    return a > b * (1.0 + margin) if b > 0 else a > b + margin


# --- hybrids -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contender:
    """A blend ranked on the test window: weights, factors (``None``: no SVD) and component options."""

    weights: BlendWeights
    model: FactorModel | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def evaluate_blends(
    train: pd.DataFrame,
    evaluation: EvalSet,
    blends: Mapping[str, Contender],
    catalogue: Catalogue,
    *,
    k: int = 10,
    exclude_seen: bool = True,
    block_size: int = 1024,
    curve_ks: tuple[int, ...] = CURVE_KS,
) -> dict[str, Any]:
    """Ranking metrics and curves of each named :class:`Contender` on ``evaluation``'s test users.

    ``train`` must be the part ``evaluation`` was built from: each blend is a hybrid fitted on
    ``catalogue.evaluation_set(train)`` and ranks the same users over the same catalogue, with the
    same items excluded, as :func:`evaluate_models`.  Returns ``{"metrics": {name: {...}}, "curves":
    {name: {k: {...}}}}``.
    """
    training = catalogue.evaluation_set(train)
    if not np.array_equal(training.item_ids.astype(str), evaluation.items.to_numpy().astype(str)):
        raise ValueError("the blend's catalogue differs from the evaluation's")
    users = evaluation.eval_user_ids
    ks, k_max = metric_ks(k, curve_ks), max(max(curve_ks), k)
    fitted: dict[tuple[tuple[str, Any], ...], HybridRecommender] = {}  # one fit per distinct option set
    out: dict[str, Any] = {"metrics": {}, "curves": {}}
    for name, contender in blends.items():
        key = tuple(sorted(contender.options.items()))
        if key not in fitted:
            fitted[key] = catalogue.hybrid(options=contender.options, exclude_seen=exclude_seen).fit(training)
        svd = None if contender.model is None else BiasedSVD.from_factors(contender.model)
        hybrid = fitted[key].variant(weights=contender.weights, svd=svd)
        ids = hybrid.recommend(users, training.history, k_max, block_size=block_size).item_ids
        top = evaluation.items.get_indexer(pd.Index(ids.ravel())).reshape(ids.shape)  # None (no pick) -> -1
        metrics, curve = ranking_summary(top, evaluation.relevant, len(evaluation.items), k, ks, curve_ks)
        out["metrics"][name], out["curves"][name] = metrics, curve
    return out
