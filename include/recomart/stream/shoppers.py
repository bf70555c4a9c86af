"""``./recomart simulate --shoppers``: simulated users who fetch their recommendations and buy from them.

Each user of the generated shop (the deployment's generator settings: same users, items and planted
tastes as ``./recomart generate``) visits ``Poisson(visits x activity)`` times, their planted relative
activity. A visit is ``GET /v1/users/{id}/recommendations?k=10``; each item shown is bought with
probability ``min(1, buy_rate x affinity)``, the user's planted affinity for the item's taste cluster
(1 = an indifferent user's; :meth:`recomart.datasets.generator.PlantedTastes.affinity`), and each
purchase is sent through ``POST /v1/events`` with the response's ``request_id`` and the item's price.
Nothing here reads the response's ``experiment`` or ``variant``: whatever a variant shows, the users
react to it only through their tastes, so an experiment's result measures the policies.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import numpy as np

from recomart.config import Settings
from recomart.datasets.generator import PlantedTastes, planted_tastes
from recomart.stream.intake import API_KEY_HEADER, EVENTS_PATH, api_key

K = 10
THREADS = 4


@dataclass
class ShopperSummary:
    """What a run did: users who visited, visits (recommendation requests), purchases sent."""

    users: int = 0
    visits: int = 0
    purchases: int = 0
    failed_requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _visit(
    client: httpx.Client, tastes: PlantedTastes, index: dict[str, int], user: int, rng: np.random.Generator,
    buy_rate: float,
) -> list[dict[str, Any]] | None:  # fmt: skip
    """One visit of ``user``: the purchases it makes (event dicts), or None when the request failed."""
    user_id = tastes.user_ids[user]
    response = client.get(f"/v1/users/{user_id}/recommendations", params={"k": K})
    if response.status_code != 200:
        return None
    body = response.json()
    shown = [item for item in body["items"] if item["item_id"] in index]
    if not shown:
        return []
    affinity = tastes.affinity(user, np.array([index[item["item_id"]] for item in shown]))
    bought = rng.random(len(shown)) < np.minimum(1.0, buy_rate * affinity)
    run = uuid.uuid4().hex[:12]
    return [
        {
            "event_id": f"shopper-{run}-{n}",
            "event_type": "purchase",
            "user_id": user_id,
            "item_id": item["item_id"],
            "quantity": 1,
            "unit_price": item["price"],
            "request_id": body["request_id"],
        }  # fmt: skip
        for n, (item, buy) in enumerate(zip(shown, bought, strict=True))
        if buy
    ]


def _shop(
    s: Settings, url: str, tastes: PlantedTastes, users: list[int], visits: np.ndarray, seed: int, buy_rate: float
) -> ShopperSummary:
    """Visit ``users`` (each ``visits[n]`` times) and post their purchases; returns a summary."""
    summary = ShopperSummary()
    index = {item: n for n, item in enumerate(tastes.item_ids)}
    with httpx.Client(base_url=url, headers={API_KEY_HEADER: api_key(s)}, timeout=10) as client:
        for user, count in zip(users, visits, strict=True):
            rng = np.random.default_rng([seed, user])
            summary.users += count > 0
            for _ in range(count):
                summary.visits += 1
                events = _visit(client, tastes, index, user, rng, buy_rate)
                if events is None:
                    summary.failed_requests += 1
                elif events:
                    posted = client.post(EVENTS_PATH, json={"events": events})
                    summary.purchases += len(events) if posted.status_code == 202 else 0
                    summary.failed_requests += posted.status_code != 202
    return summary


def simulate_shoppers(
    s: Settings, visits: float = 3.0, buy_rate: float = 0.005, users: int | None = None, seed: int = 7,
    url: str | None = None,
) -> ShopperSummary:  # fmt: skip
    """Run the shoppers (the first ``users`` of the shop, all by default) against the API at ``url``."""
    tastes = planted_tastes(users=s.generator_users, items=s.generator_items, days=s.generator_days, seed=s.seed)
    chosen = np.arange(len(tastes.user_ids))[: users or None]
    counts = np.random.default_rng(seed).poisson(visits * tastes.activity[chosen])
    parts = [(chosen[n::THREADS].tolist(), counts[n::THREADS]) for n in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda part: _shop(s, url or s.api_url, tastes, *part, seed, buy_rate), parts))
    total = ShopperSummary()
    for part in results:
        for name, value in part.as_dict().items():
            setattr(total, name, getattr(total, name) + int(value))
    return total
