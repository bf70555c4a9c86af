"""The generated shop as frames, and the hybrid fitted on it, for the serving benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recomart.datasets.generator import generate
from recomart.ranking.base import TrainingSet
from recomart.ranking.hybrid import HybridRecommender


@dataclass(frozen=True)
class Shop:
    events: pd.DataFrame  # event_id, event_time (UTC), user_id, item_id, event_type, ...
    users: pd.DataFrame  # user_id, segment
    products: pd.DataFrame  # item_id, title, description, category, brand, price


def generated_shop(folder: Path, users: int, items: int, days: int, seed: int) -> Shop:
    """Generate the shop into ``folder`` (seeded) and read it back."""
    generate(folder, users=users, items=items, days=days, seed=seed)
    events = pd.concat(
        [
            pd.read_csv(path, dtype={"user_id": str, "item_id": str})
            for path in sorted((folder / "events").glob("*.csv"))
        ]
    )
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True)
    people = pd.read_csv(folder / "users.csv", dtype={"user_id": str})[["user_id", "segment"]]
    products = pd.read_csv(folder / "products.csv", dtype={"item_id": str})
    return Shop(events.sort_values("event_time", kind="mergesort").reset_index(drop=True), people, products)


def history_of(events: pd.DataFrame) -> pd.DataFrame:
    """The ranking history contract (one row per user × item) of ``events``."""
    flagged = events.assign(purchase=(events["event_type"] == "purchase").astype("int64"))
    history = (
        flagged.groupby(["user_id", "item_id"], sort=False)
        .agg(purchases=("purchase", "sum"), last_interaction_at=("event_time", "max"))
        .reset_index()
    )
    history["rating"] = 1.0
    return history


def fit_hybrid(history: pd.DataFrame, shop: Shop) -> HybridRecommender:
    """The hybrid without SVD factors (item-to-item, content, popularity), fitted on ``history``."""
    products = shop.products[["item_id", "title", "description", "category", "brand", "price"]]
    return HybridRecommender(personalised=True).fit(TrainingSet.build(history, products, shop.users))
