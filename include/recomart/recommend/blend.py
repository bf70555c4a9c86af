"""Blend weights fitted on a validation window: coordinate search on nDCG@k over the components.

The train step calls :func:`fit_blend_weights` with the ratings before the validation window, the
validation pairs and (optionally) a factor model fitted on that earlier part, and stores the result
in the registered model's metadata under ``"weights"``; the recommend step only applies them
(:meth:`recomart.recommend.hybrid.BlendWeights.from_meta`).  With too few validation users the
fixed default 0.7 CF / 0.3 content is returned.

Each component is scored once for a seeded sample of validation users and normalised per user
(as the nightly blend does), so every weight vector tried costs one weighted sum and one top-k.
:func:`fit_blend_options` also chooses the input options of :func:`build_inputs` (neighbour count,
popularity prior window, buy-again half-life) among a few candidates, by the same validation nDCG.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from recomart.recommend.hybrid import (
    COMPONENTS,
    BlendWeights,
    ExcludePolicy,
    HybridInputs,
    _excluded_cells,
    build_inputs,
    component_scores,
    minmax_rows,
)

if TYPE_CHECKING:
    from recomart.model.factors import FactorModel

DEFAULT_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.35, 0.5, 0.75, 1.0)
DEFAULT_WEIGHTS = BlendWeights()
#: candidate :func:`build_inputs` options: item-item neighbours, popularity prior window (days, None = all time)
OPTION_GRID: dict[str, tuple[Any, ...]] = {"top_n": (10, 50), "prior_days": (None, 30)}
#: for feeds with repeat purchases: the buy-again half-life (None = the history's 30 days)
REPEAT_OPTION_GRID: dict[str, tuple[Any, ...]] = {"buy_again_half_life_days": (None, 365.0)}


@dataclass
class BlendFit:
    """Outcome of :func:`fit_blend`: the weights (sum 1), whether they were fitted, and the evidence."""

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


def as_ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """A ratings-mart-like frame (``user_id, item_id, purchases, last_interaction_at``) from pairs that
    may carry ``event_timestamp`` instead of ``last_interaction_at`` and no ``purchases``."""
    out = frame.copy()
    out["user_id"] = out["user_id"].astype(str)
    out["item_id"] = out["item_id"].astype(str)
    if "last_interaction_at" not in out:
        out["last_interaction_at"] = out["event_timestamp"] if "event_timestamp" in out else pd.Timestamp(0, tz="UTC")
    out["last_interaction_at"] = pd.to_datetime(out["last_interaction_at"], utc=True)
    if "purchases" not in out:
        out["purchases"] = 0
    return out


def default_products(item_ids: Sequence[str]) -> pd.DataFrame:
    """A catalogue with ids only (content then has nothing to go on and scores zero)."""
    return pd.DataFrame(
        {"item_id": list(item_ids), "title": "", "description": "", "category": "", "brand": "", "price": np.nan}
    )


def relevant_matrix(inputs: HybridInputs, pairs: pd.DataFrame) -> sparse.csr_matrix:
    """Users × items 0/1 matrix of ``pairs`` inside the inputs' universes, minus excluded cells."""
    u = pd.Index(inputs.user_ids).get_indexer(pairs["user_id"].astype(str).to_numpy())
    i = pd.Index(inputs.item_ids).get_indexer(pairs["item_id"].astype(str).to_numpy())
    ok = (u >= 0) & (i >= 0)
    rel = sparse.csr_matrix(
        (np.ones(int(ok.sum()), dtype=np.float32), (u[ok], i[ok])), shape=(len(inputs.user_ids), len(inputs.item_ids))
    )
    rel.sum_duplicates()
    rel.data[:] = 1.0
    if inputs.exclude is not None:
        rel = sparse.csr_matrix(rel - rel.multiply(inputs.exclude.astype(np.float32)))
        rel.eliminate_zeros()
    return rel


def _normalised_components(
    inputs: HybridInputs, rows: np.ndarray, model: FactorModel | None, block_size: int
) -> dict[str, np.ndarray]:
    """Per-user min-max normalised component blocks of users ``rows`` (cf is 0 for users without factors)."""
    items_csc = inputs.items.tocsc()
    item_rows = None if model is None else np.asarray(model.item_index(inputs.item_ids), dtype=np.int64)
    model_rows = None if model is None else np.asarray(model.user_index(inputs.user_ids[rows]), dtype=np.int64)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(rows), block_size):
        r = rows[start : start + block_size]
        ex_r, ex_c = _excluded_cells(inputs.exclude, r)
        comps = component_scores(inputs, r, items_csc=items_csc)
        if model is not None:
            mr = model_rows[start : start + block_size]
            cf = np.zeros((len(r), len(inputs.item_ids)), dtype=np.float32)
            known = mr >= 0
            if known.any():
                cf[known] = component_scores(
                    inputs, r[known], model=model, model_rows=mr[known], item_rows=item_rows, needed={"cf": 1.0}
                )["cf"]
            comps["cf"] = cf
        for name, values in comps.items():
            parts.setdefault(name, []).append(minmax_rows(values, ex_r, ex_c))
    return {name: np.concatenate(blocks) for name, blocks in parts.items()}


def _ndcg(
    weights: dict[str, float],
    comps: dict[str, np.ndarray],
    relevant: sparse.csr_matrix,
    exclude: sparse.csr_matrix | None,
    rows: np.ndarray,
    k: int,
) -> float:
    from recomart.model.metrics import ndcg_at_k
    from recomart.model.scoring import top_k

    total = np.zeros(next(iter(comps.values())).shape, dtype=np.float32)
    for name, w in weights.items():
        if w > 0 and name in comps:
            total += np.float32(w) * comps[name]
    kk = min(k, total.shape[1])
    idx, _ = top_k(total, kk, exclude=exclude, exclude_rows=None if exclude is None else rows)
    return float(ndcg_at_k(idx.astype(np.int64), relevant, kk))


def fit_blend(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    products: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    *,
    model: FactorModel | None = None,
    repeat_purchases: bool = False,
    exclude: ExcludePolicy | None = None,
    k: int = 10,
    min_users: int = 50,
    max_users: int = 3000,
    max_cells: int = 60_000_000,
    grid: Sequence[float] = DEFAULT_GRID,
    rounds: int = 5,
    seed: int = 42,
    block_size: int = 1024,
    options: Mapping[str, Any] | None = None,
) -> BlendFit:
    """Coordinate search of the component weights maximising validation nDCG@``k``.

    ``train``: the pairs before the validation window (``user_id, item_id`` and ``last_interaction_at``
    or ``event_timestamp``, optional ``purchases``); ``validation``: the ``user_id, item_id`` pairs of
    the window.  ``model`` must be fitted on ``train`` only (else ``cf`` is not searched).  Validation
    users are those of ``train`` with a relevant item, sampled (seeded) to ``max_users`` and to at most
    ``max_cells`` user × item cells per component.  Components that do not exist (no model, no repeats)
    keep weight 0.  Returns the default 0.7 / 0.3 with ``fitted=False`` below ``min_users`` users.
    ``options`` are passed to :func:`build_inputs` (and kept in the result).
    """
    ratings = as_ratings(train)
    if products is None:
        products = default_products(sorted(ratings["item_id"].unique()))
    else:  # only items of the training data compete in the search
        products = products[products["item_id"].astype(str).isin(set(ratings["item_id"]))]
    if users is None:
        users = pd.DataFrame({"user_id": ratings["user_id"].unique(), "segment": None})
    options = dict(options or {})
    inputs = build_inputs(ratings, users, products, repeat_purchases=repeat_purchases, exclude=exclude, **options)
    relevant = relevant_matrix(inputs, validation)
    candidates = np.flatnonzero((np.diff(relevant.indptr) > 0) & inputs.has_history)
    default = DEFAULT_WEIGHTS.as_dict()
    if len(candidates) < min_users:
        return BlendFit(
            default, False, f"{len(candidates)} validation users < {min_users}: default weights", options=options
        )
    n_items = max(len(inputs.item_ids), 1)
    cap = max(min_users, min(max_users, max_cells // (n_items * len(COMPONENTS))))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(candidates, size=min(cap, len(candidates)), replace=False))
    comps = _normalised_components(inputs, rows, model, block_size)
    rel = relevant[rows]
    available = [c for c in COMPONENTS if c in comps and (c != "cf" or model is not None)]

    evaluations = 0

    def score(w: dict[str, float]) -> float:
        nonlocal evaluations
        evaluations += 1
        return _ndcg(w, comps, rel, inputs.exclude, rows, k)

    single = {c: score({c: 1.0}) for c in available}
    default_ndcg = score(default) if model is not None else None
    # start from the best single component, then improve one coordinate at a time
    best_c = max(available, key=lambda c: (single[c], -available.index(c)))
    best = {c: (1.0 if c == best_c else 0.0) for c in COMPONENTS}
    best_value = single[best_c]
    for _ in range(rounds):
        improved = False
        for c in available:
            for value in grid:
                if value == best[c]:
                    continue
                trial = {**best, c: float(value)}
                if sum(trial.values()) <= 0:
                    continue
                v = score(trial)
                if v > best_value + 1e-9:
                    best, best_value, improved = trial, v, True
        if not improved:
            break
    total = sum(best.values())
    weights = {c: round(best[c] / total, 6) for c in COMPONENTS}
    return BlendFit(
        weights,
        True,
        f"coordinate search on {len(rows)} validation users",
        validation_ndcg=best_value,
        default_ndcg=default_ndcg,
        single_ndcg=single,
        n_users=len(rows),
        evaluations=evaluations,
        options=options,
    )


def option_candidates(repeat_purchases: bool) -> list[dict[str, Any]]:
    """Every combination of :data:`OPTION_GRID` (and :data:`REPEAT_OPTION_GRID` for repeat feeds)."""
    grid = {**OPTION_GRID, **(REPEAT_OPTION_GRID if repeat_purchases else {})}
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def fit_blend_options(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    products: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    *,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    repeat_purchases: bool = False,
    **kwargs: Any,
) -> BlendFit:
    """:func:`fit_blend` for each candidate option set (default :func:`option_candidates`); the fit with
    the best validation nDCG wins (ties: the earlier candidate).  Every candidate's outcome is in ``trials``."""
    candidates = option_candidates(repeat_purchases) if candidates is None else candidates
    fits = [
        fit_blend(train, validation, products, users, repeat_purchases=repeat_purchases, options=c, **kwargs)
        for c in candidates
    ]
    best = fits[max(range(len(fits)), key=lambda i: (fits[i].fitted, fits[i].validation_ndcg or 0.0, -i))]
    best.trials = [
        {"options": f.options, "weights": f.weights, "validation_ndcg": f.validation_ndcg, "fitted": f.fitted}
        for f in fits
    ]
    return best


def fit_blend_weights(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    products: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """The weights of :func:`fit_blend` (keys ``cf, item_item, content, buy_again, popularity``, sum 1)."""
    return fit_blend(train, validation, products, users, **kwargs).weights
