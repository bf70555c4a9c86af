"""The simulator's shoppers read the generator's planted tastes: they must be the ones its events follow."""

from __future__ import annotations

import numpy as np

from recomart.datasets.generator import later_days, planted_tastes


def test_planted_tastes_are_the_ones_the_events_follow() -> None:
    tastes = planted_tastes(users=300, items=120, days=10, seed=5)
    assert tastes.taste.shape[0] == len(tastes.user_ids) == 300 and len(tastes.item_ids) == 120
    np.testing.assert_allclose(tastes.taste.sum(axis=1), 1.0)
    day = next(later_days(users=300, items=120, days=10, seed=5))
    user_index = {user: n for n, user in enumerate(tastes.user_ids)}
    item_index = {item: n for n, item in enumerate(tastes.item_ids)}
    views = day.filter(day["event_type"].to_numpy(zero_copy_only=False) == "view").to_pydict()
    users = np.array([user_index[u] for u in views["user_id"]])
    items = np.array([item_index[i] for i in views["item_id"]])
    seen = np.array([tastes.affinity(u, np.array([i]))[0] for u, i in zip(users, items, strict=True)])
    everything = np.array([tastes.affinity(u, np.arange(len(tastes.item_ids))).mean() for u in users])
    # viewed items are in the viewers' favoured clusters far more than a random item is
    assert seen.mean() > 3 * everything.mean()
