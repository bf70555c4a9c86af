"""The hybrid in the train path: fit its blend on validation, score blends on the test window.

The weights and the :func:`recomart.recommend.hybrid.build_inputs` options (item-item neighbours,
popularity prior window, buy-again half-life) are chosen with
:func:`recomart.recommend.blend.fit_blend_options` (coordinate search on the validation window's
nDCG@k, SVD fitted on the part before it), the same search the accuracy benchmark runs.  On the test
window every blend is ranked with the recommend DAG's own code
(:func:`recomart.recommend.evaluation.top_items`: per-user min-max normalised components, weighted
sum, top-k) over inputs built with its own options, for exactly the users and catalogue of
:func:`recomart.model.evaluate.eval_set`, so its figures sit next to SVD's and popularity's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recomart.model.evaluate import CURVE_KS, EvalSet, metric_ks, ranking_summary
from recomart.recommend.blend import DEFAULT_WEIGHTS, BlendFit, as_ratings, default_products, fit_blend_options
from recomart.recommend.evaluation import top_items
from recomart.recommend.hybrid import COMPONENTS, BlendWeights, HybridInputs, build_inputs

if TYPE_CHECKING:
    from recomart.model.factors import FactorModel

#: metric key of each component ranked alone (``popularity`` alone is the popularity baseline: its
#: prior ``log(1 + distinct users)`` orders items as the baseline's training counts do)
COMPONENT_KEYS = {"cf": "svd", "item_item": "item_item", "content": "content", "buy_again": "buy_again"}


@dataclass(frozen=True)
class Catalogue:
    """What the blend knows besides the ratings: products (text for content), user segments, feed policy."""

    products: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    repeat_purchases: bool = False

    @classmethod
    def from_warehouse(cls, dsn: str, *, repeat_purchases: bool = False) -> Catalogue:
        """``marts.dim_products`` (+ ``item_features.price_band``) and ``marts.user_features.segment``,
        read as the recommend DAG reads them; a missing mart leaves that part empty."""
        import psycopg

        from recomart.recommend.run import ITEM_FEATURES_SQL, PRODUCTS_SQL, USERS_SQL, read_frame

        def exists(conn: psycopg.Connection, relation: str) -> bool:
            return conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]

        with psycopg.connect(dsn) as conn:
            products = read_frame(conn, PRODUCTS_SQL) if exists(conn, "marts.dim_products") else None
            users = read_frame(conn, USERS_SQL) if exists(conn, "marts.user_features") else None
            if products is not None and exists(conn, "marts.item_features"):
                bands = read_frame(conn, ITEM_FEATURES_SQL).drop_duplicates("item_id")
                products = products.merge(bands, on="item_id", how="left")
        return cls(products, users, repeat_purchases)

    def components(self) -> list[str]:
        """The components that exist for this feed (buy-again only when repeats are allowed)."""
        return [c for c in COMPONENTS if c != "buy_again" or self.repeat_purchases]

    def inputs(
        self, train: pd.DataFrame, *, exclude_seen: bool, options: Mapping[str, Any] | None = None
    ) -> HybridInputs:
        """:class:`HybridInputs` over the users and items of ``train`` only (the evaluation's universes),
        built with the :func:`build_inputs` ``options`` given (default: its defaults)."""
        ratings = as_ratings(train)
        items = set(ratings["item_id"])
        products = default_products(sorted(items)) if self.products is None else self.products
        products = products[products["item_id"].astype(str).isin(items)]
        users = self.segments(ratings)
        return build_inputs(
            ratings,
            users,
            products,
            repeat_purchases=self.repeat_purchases,
            exclude="interacted" if exclude_seen else "none",
            **dict(options or {}),
        )

    def segments(self, ratings: pd.DataFrame) -> pd.DataFrame:
        """``user_id, segment`` of the users of ``ratings`` (segment unknown without a users mart)."""
        known = pd.DataFrame({"user_id": np.sort(ratings["user_id"].unique())})
        if self.users is None:
            return known.assign(segment=None)
        return known.merge(self.users[["user_id", "segment"]].drop_duplicates("user_id"), on="user_id", how="left")


def fit_weights(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    model: FactorModel | None,
    catalogue: Catalogue,
    *,
    exclude_seen: bool = True,
    k: int = 10,
    seed: int = 42,
) -> BlendFit:
    """Blend weights and input options fitted on the validation window (``model`` fitted on ``train``
    only), over the option candidates of the catalogue's repeat-purchase policy
    (:func:`recomart.recommend.blend.option_candidates`); every candidate's figure is in ``trials``.
    The default 0.7 CF / 0.3 content with default options (``{}``) and ``fitted=False`` when there is
    no validation window or too few validation users."""
    if valid.empty:
        return BlendFit(DEFAULT_WEIGHTS.as_dict(), False, "no validation window: default weights")
    ratings = as_ratings(train)
    fit = fit_blend_options(
        ratings,
        valid,
        catalogue.products,
        catalogue.segments(ratings),
        model=model,
        repeat_purchases=catalogue.repeat_purchases,
        exclude="interacted" if exclude_seen else "none",
        k=k,
        seed=seed,
    )
    # nothing was chosen on validation: serve build_inputs' defaults, not the first candidate's options
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


def single_component(name: str) -> BlendWeights:
    """Weights that rank by component ``name`` alone."""
    return BlendWeights(**{c: float(c == name) for c in COMPONENTS})


@dataclass(frozen=True)
class Contender:
    """A blend ranked on the test window: weights, factors (``None``: no SVD) and :func:`build_inputs` options."""

    weights: BlendWeights
    model: FactorModel | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def evaluate_blends(
    train: pd.DataFrame,
    es: EvalSet,
    blends: dict[str, Contender],
    catalogue: Catalogue,
    *,
    k: int = 10,
    exclude_seen: bool = True,
    block_size: int = 1024,
    curve_ks: tuple[int, ...] = CURVE_KS,
) -> dict[str, Any]:
    """Ranking metrics and curves of each named :class:`Contender` on ``es``'s test users.

    ``train`` must be the part ``es`` was built from: the blends rank the same users over the same
    catalogue, with the same items excluded, as :func:`recomart.model.evaluate.evaluate_models`.
    Inputs are built once per distinct option set.
    """
    built: dict[tuple, HybridInputs] = {}
    users = es.eval_user_ids
    ks, k_max = metric_ks(k, curve_ks), max(max(curve_ks), k)
    out: dict[str, Any] = {"metrics": {}, "curves": {}}
    for name, contender in blends.items():
        key = tuple(sorted(contender.options.items()))
        if key not in built:
            built[key] = catalogue.inputs(train, exclude_seen=exclude_seen, options=contender.options)
            if not np.array_equal(built[key].item_ids.astype(str), es.items.to_numpy().astype(str)):
                raise ValueError("the blend's catalogue differs from the evaluation's")
        ids = top_items(built[key], users, contender.weights, k_max, model=contender.model, block_size=block_size)
        top = es.items.get_indexer(ids.ravel()).reshape(ids.shape)  # None (no pick) -> -1
        metrics, curve = ranking_summary(top, es.relevant, len(es.items), k, ks, curve_ks)
        out["metrics"][name], out["curves"][name] = metrics, curve
    return out
