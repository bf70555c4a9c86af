"""Blend weights and component settings fitted on a validation window (coordinate search on nDCG@k).

The train step calls :func:`choose_blend` with the pairs before the validation window, the
validation pairs and the SVD fitted on that earlier part, and stores the outcome with the
registered model (:func:`blend_record`); the served hybrid is built with exactly those weights and
options.  With too few validation users the fixed default 0.7 CF / 0.3 content is kept.

Each component is scored once for a seeded sample of validation users and normalised per user (as
the served blend does: :meth:`recomart.ranking.hybrid.HybridRecommender.normalised_components`), so
every weight vector tried costs one weighted sum and one top-k.  :func:`fit_blend_options` repeats
the search for each candidate option set (neighbour count, popularity prior window, buy-again
half-life) and keeps the best; when the catalogue has item vectors it then tries the best set again
with each share of embeddings in the content component (``content_embedding``), so the embeddings are
used only when the validation window prefers them (:func:`content_variants` is that evidence).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from recomart.model.catalogue import Catalogue
from recomart.model.config import BlendSearch
from recomart.ranking.base import TrainingSet
from recomart.ranking.blend import COMPONENTS, BlendWeights
from recomart.ranking.history import UserHistory
from recomart.ranking.metrics import ndcg_at_k
from recomart.ranking.scoring import weighted_top_k
from recomart.ranking.svd import BiasedSVD

DEFAULT_WEIGHTS = BlendWeights()
#: metric key of each component ranked alone (``popularity`` alone is the popularity baseline: its
#: prior ``log(1 + distinct users)`` orders items as the baseline's training counts do)
COMPONENT_KEYS = {"cf": "svd", "item_item": "item_item", "content": "content", "buy_again": "buy_again"}


@dataclass
class BlendFit:
    """Outcome of a search: the weights (sum 1), whether they were fitted, and the evidence
    (validation nDCG of the fit, of the default weights and of each component alone, the users and
    evaluations it took, the chosen ``options`` and every candidate option set's outcome in ``trials``)."""

    weights: dict[str, float]
    fitted: bool
    reason: str
    validation_ndcg: float | None = None
    default_ndcg: float | None = None
    single_ndcg: dict[str, float] = field(default_factory=dict)
    n_users: int = 0
    evaluations: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    content_alone_ndcg: dict[str, float] = field(default_factory=dict)


def relevant_matrix(history: UserHistory, pairs: pd.DataFrame, exclude: sparse.csr_matrix | None) -> sparse.csr_matrix:
    """Users × items 0/1 matrix (float32) of ``pairs`` inside the history's universes, minus ``exclude``d cells."""
    users = pd.Index(history.user_ids).get_indexer(pd.Index(pairs["user_id"].astype(str).to_numpy()))
    items = pd.Index(history.item_ids).get_indexer(pd.Index(pairs["item_id"].astype(str).to_numpy()))
    ok = (users >= 0) & (items >= 0)
    ones = np.ones(int(ok.sum()), dtype=np.float32)
    rel = sparse.csr_matrix((ones, (users[ok], items[ok])), shape=history.shape)
    rel.sum_duplicates()
    rel.data[:] = 1.0
    if exclude is not None:
        rel = sparse.csr_matrix(rel - rel.multiply(exclude.astype(np.float32)))
        rel.eliminate_zeros()
    return rel


@dataclass
class _Parts:
    """The normalised component scores of the sampled users, stacked: ``stack[index[name]]`` is
    component ``name``'s float32 ``[users, items]`` block."""

    index: dict[str, int]
    stack: np.ndarray

    @classmethod
    def of(cls, parts: Mapping[str, np.ndarray]) -> _Parts:
        return cls({name: n for n, name in enumerate(parts)}, np.stack(list(parts.values())))


def _ndcg(
    weights: Mapping[str, float],
    parts: _Parts,
    relevant: sparse.csr_matrix,
    exclude: sparse.csr_matrix | None,
    rows: np.ndarray,
    k: int,
) -> float:
    """nDCG@k of ranking ``rows`` by the weighted sum of the normalised ``parts`` (summed in ``weights``
    order without being stored, :func:`recomart.ranking.scoring.weighted_top_k`)."""
    terms = [(parts.index[name], weight) for name, weight in weights.items() if weight > 0 and name in parts.index]
    kk = min(k, parts.stack.shape[2])
    idx = weighted_top_k(parts.stack, terms, kk, exclude=exclude, exclude_rows=None if exclude is None else rows)
    return float(ndcg_at_k(idx.astype(np.int64), relevant, kk))


def _coordinate_search(
    score: Any, available: list[str], single: Mapping[str, float], search: BlendSearch
) -> tuple[dict[str, float], float]:
    """Start from the best single component, then improve one weight at a time over the grid
    (``rounds`` passes, stop when a pass improves nothing); returns (weights, their figure)."""
    best_component = max(available, key=lambda c: (single[c], -available.index(c)))
    best = {c: (1.0 if c == best_component else 0.0) for c in COMPONENTS}
    best_value = single[best_component]
    for _ in range(search.rounds):
        improved = False
        for component in available:
            for value in search.weight_grid:
                if value == best[component]:
                    continue
                trial = {**best, component: float(value)}
                if sum(trial.values()) <= 0:
                    continue
                figure = score(trial)
                if figure > best_value + 1e-9:
                    best, best_value, improved = trial, figure, True
        if not improved:
            break
    return best, best_value


def _sample_users(candidates: np.ndarray, n_items: int, search: BlendSearch, seed: int) -> np.ndarray:
    """A seeded, sorted sample of the candidate user rows: at most ``max_users`` and ``max_cells`` cells
    per component, at least ``min_users``."""
    cap = max(search.min_users, min(search.max_users, search.max_cells // (max(n_items, 1) * len(COMPONENTS))))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=min(cap, len(candidates)), replace=False))


def fit_blend(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    catalogue: Catalogue,
    *,
    svd: BiasedSVD | None = None,
    exclude_seen: bool = True,
    options: Mapping[str, Any] | None = None,
    search: BlendSearch | None = None,
    k: int = 10,
    seed: int = 42,
    block_size: int = 1024,
    training: TrainingSet | None = None,
) -> BlendFit:
    """Coordinate search of the component weights maximising validation nDCG@``k`` for one option set.

    ``train``: the pairs before the validation window (``user_id, item_id`` and ``last_interaction_at``
    or ``event_timestamp``, optional ``purchases``); ``validation``: the ``user_id, item_id`` pairs of
    the window; ``svd`` must be fitted on ``train`` only (else ``cf`` is not searched).  Validation
    users are those of ``train`` with a relevant item, sampled as :class:`BlendSearch` says.
    ``exclude_seen``: every interacted item is excluded from ranking and relevance (else nothing).
    Components that do not exist (no SVD, no repeats) keep weight 0.  ``training``: ``train``'s
    :meth:`~recomart.model.catalogue.Catalogue.evaluation_set` when the caller has built it already.
    """
    search = search or BlendSearch()
    options = dict(options or {})
    training = catalogue.evaluation_set(train) if training is None else training
    hybrid = catalogue.hybrid(options=options, svd=svd, exclude_seen=exclude_seen).fit(training)
    history = training.entries
    exclude = history.exclusion(hybrid.exclude)
    relevant = relevant_matrix(history, validation, exclude)
    candidates = np.flatnonzero((np.diff(relevant.indptr) > 0) & history.has_history)
    if len(candidates) < search.min_users:
        reason = f"{len(candidates)} validation users < {search.min_users}: default weights"
        return BlendFit(DEFAULT_WEIGHTS.as_dict(), False, reason, options=options)
    rows = _sample_users(candidates, history.n_items, search, seed)
    parts = _Parts.of(hybrid.normalised_components(history, rows, block_size=block_size))
    sample_relevant = relevant[rows]
    available = [c for c in COMPONENTS if c in parts.index and (c != "cf" or svd is not None)]
    evaluations = 0

    def score(weights: Mapping[str, float]) -> float:
        nonlocal evaluations
        evaluations += 1
        return _ndcg(weights, parts, sample_relevant, exclude, rows, k)

    single = {c: score({c: 1.0}) for c in available}
    default_ndcg = score(DEFAULT_WEIGHTS.as_dict()) if svd is not None else None
    best, best_value = _coordinate_search(score, available, single, search)
    total = sum(best.values())
    return BlendFit(
        {c: round(best[c] / total, 6) for c in COMPONENTS},
        True,
        f"coordinate search on {len(rows)} validation users",
        validation_ndcg=best_value,
        default_ndcg=default_ndcg,
        single_ndcg=single,
        n_users=len(rows),
        evaluations=evaluations,
        options=options,
    )


def fit_blend_options(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    catalogue: Catalogue,
    *,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    search: BlendSearch | None = None,
    **kwargs: Any,
) -> BlendFit:
    """:func:`fit_blend` for each candidate option set (default: ``search.option_candidates`` of the
    catalogue's repeat policy), then, with item vectors, for the best set with each
    ``search.content_embedding_grid`` share; the fit with the best validation nDCG wins (ties: the
    earlier candidate, so TF-IDF alone wins a tie).  Every candidate's outcome is in ``trials``."""
    search = search or BlendSearch()
    candidates = search.option_candidates(catalogue.repeat_purchases) if candidates is None else candidates
    kwargs.setdefault("training", catalogue.evaluation_set(train))  # the same for every option set
    fits = [fit_blend(train, validation, catalogue, options=c, search=search, **kwargs) for c in candidates]
    best = _best(fits)
    if catalogue.item_vectors is not None and best.fitted:
        variants = [{**best.options, "content_embedding": share} for share in search.content_embedding_grid]
        fits += [fit_blend(train, validation, catalogue, options=c, search=search, **kwargs) for c in variants]
        best = _best(fits)
    best.trials = [
        {"options": f.options, "weights": f.weights, "validation_ndcg": f.validation_ndcg, "fitted": f.fitted}
        for f in fits
    ]
    best.content_alone_ndcg = {
        content_label(f.options): f.single_ndcg["content"] for f in fits if "content" in f.single_ndcg
    }
    return best


def _best(fits: Sequence[BlendFit]) -> BlendFit:
    return fits[max(range(len(fits)), key=lambda i: (fits[i].fitted, fits[i].validation_ndcg or 0.0, -i))]


def content_label(options: Mapping[str, Any]) -> str:
    """``tfidf``, ``embed`` (embeddings alone) or ``blend_<share>`` for a set of component options."""
    share = options.get("content_embedding")
    return "tfidf" if not share else "embed" if share >= 1.0 else f"blend_{share:g}"


def content_variants(fit: BlendFit) -> dict[str, Any]:
    """The validation evidence of the content component's variants: per variant (:func:`content_label`)
    the best blend's validation nDCG with it and the component's nDCG alone, and the chosen variant."""
    blended: dict[str, float] = {}
    for trial in fit.trials:
        label, value = content_label(trial["options"]), trial["validation_ndcg"]
        if value is not None and value > blended.get(label, -math.inf):
            blended[label] = value
    return {
        "chosen": content_label(fit.options),
        "blend_validation_ndcg": blended,
        "alone_validation_ndcg": dict(fit.content_alone_ndcg),
    }


def choose_blend(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    catalogue: Catalogue,
    *,
    svd: BiasedSVD | None,
    exclude_seen: bool = True,
    search: BlendSearch | None = None,
    k: int = 10,
    seed: int = 42,
) -> BlendFit:
    """The blend of a training round: :func:`fit_blend_options` on the validation window (``svd``
    fitted on ``train`` only), or the default 0.7 CF / 0.3 content with the default options (``{}``)
    and ``fitted=False`` when there is no validation window or too few validation users."""
    if validation.empty:
        return BlendFit(DEFAULT_WEIGHTS.as_dict(), False, "no validation window: default weights")
    fit = fit_blend_options(
        train, validation, catalogue, svd=svd, exclude_seen=exclude_seen, search=search, k=k, seed=seed
    )
    # nothing was chosen on validation: serve the default options, not the first candidate's
    return fit if fit.fitted else dataclasses.replace(fit, options={})


def blend_record(fit: BlendFit) -> dict[str, Any]:
    """JSON-safe evidence of a fit (stored with the model as ``metadata["blend"]``)."""

    def num(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else float(value)

    return {
        "weights": dict(fit.weights),
        "fitted": bool(fit.fitted),
        "reason": fit.reason,
        "validation_ndcg": num(fit.validation_ndcg),
        "default_validation_ndcg": num(fit.default_ndcg),
        "component_validation_ndcg": {COMPONENT_KEYS.get(c, c): num(v) for c, v in fit.single_ndcg.items()},
        "n_validation_users": int(fit.n_users),
        "evaluations": int(fit.evaluations),
        "options": dict(fit.options),
        "content": {
            key: ({k: num(v) for k, v in value.items()} if isinstance(value, dict) else value)
            for key, value in content_variants(fit).items()
        },
        "candidates": [
            {
                "options": dict(t["options"]),
                "weights": dict(t["weights"]),
                "validation_ndcg": num(t["validation_ndcg"]),
                "fitted": bool(t["fitted"]),
            }
            for t in fit.trials
        ],
    }
