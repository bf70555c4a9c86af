"""What the hybrid knows besides the interactions: products, user segments and the feed's policy.

Training fits hybrids on two universes:

- :meth:`Catalogue.evaluation_set`: the users and items of a training part only (items that first
  appear later cannot be evaluated), for the validation search and the test window;
- :meth:`Catalogue.serving_set`: every product and every user, for the registered recommender.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recomart.ranking.base import TrainingSet, default_products
from recomart.ranking.blend import COMPONENTS, BlendWeights
from recomart.ranking.embedding import ItemVectors
from recomart.ranking.history import ExcludePolicy, as_history
from recomart.ranking.hybrid import HybridRecommender
from recomart.ranking.svd import BiasedSVD


@dataclass(frozen=True)
class Catalogue:
    """``products`` (``item_id, title, description, category, brand, price`` and optional
    ``price_band``; ``None``: ids only), ``users`` (``user_id, segment``; ``None``: no segments) and
    ``repeat_purchases``: whether the feed allows buying an item again (enables buy-again and keeps
    bought items recommendable); ``item_vectors``: the products' text embeddings (``None``: none stored),
    which the content component may blend in (the ``content_embedding`` option, chosen on validation)."""

    products: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    repeat_purchases: bool = False
    item_vectors: ItemVectors | None = None

    def components(self) -> list[str]:
        """The components that exist for this feed (buy-again only when repeats are allowed)."""
        return [c for c in COMPONENTS if c != "buy_again" or self.repeat_purchases]

    def segments(self, history: pd.DataFrame) -> pd.DataFrame:
        """``user_id, segment`` of the users of ``history`` (segment unknown without a users frame)."""
        known = pd.DataFrame({"user_id": np.sort(history["user_id"].astype(str).unique())})
        if self.users is None:
            return known.assign(segment=None)
        return known.merge(self.users[["user_id", "segment"]].drop_duplicates("user_id"), on="user_id", how="left")

    def evaluation_set(self, train: pd.DataFrame) -> TrainingSet:
        """A :class:`TrainingSet` over the users and items of ``train`` only."""
        history = as_history(train)
        items = set(history["item_id"])
        products = default_products(sorted(items)) if self.products is None else self.products
        products = products[products["item_id"].astype(str).isin(items)]
        return TrainingSet.build(history, products, self.segments(history))

    def serving_set(self, history: pd.DataFrame) -> TrainingSet:
        """A :class:`TrainingSet` over every product and user (and every item and user of ``history``)."""
        return TrainingSet.build(history, self.products, self.users)

    def hybrid(
        self,
        *,
        weights: BlendWeights | None = None,
        options: Mapping[str, Any] | None = None,
        svd: BiasedSVD | None = None,
        exclude_seen: bool | None = None,
    ) -> HybridRecommender:
        """An unfitted hybrid for this feed: ``exclude_seen`` True / False excludes every interacted
        item / nothing (the evaluation's settings); ``None`` applies the feed's policy (served)."""
        exclude: ExcludePolicy | None = None
        if exclude_seen is not None:
            exclude = "interacted" if exclude_seen else "none"
        return HybridRecommender(
            weights=weights,
            options=options,
            repeat_purchases=self.repeat_purchases,
            exclude=exclude,
            svd=svd,
            item_vectors=self.item_vectors,
        )
