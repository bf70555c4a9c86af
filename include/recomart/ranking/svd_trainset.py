"""A surprise ``Trainset`` built from arrays, for :func:`recomart.ranking.svd.build_trainset` (kept apart so
that importing :mod:`recomart.ranking.svd` does not import surprise)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from surprise import Trainset


class PairsTrainset(Trainset):
    """surprise's ``Trainset`` over the pairs' arrays, for ``SVD.fit``, whose SGD reads only
    :meth:`all_ratings` (each epoch) and :attr:`global_mean`.

    :meth:`all_ratings` yields the ``(user, item, rating)`` inner-id triples in the order surprise's own
    trainset would (users by inner id, each user's items by inner id; a repeated pair's ratings by
    value, so that row order never matters) from three lists built once,
    instead of a generator over per-user lists; the per-user and per-item rating lists (``ur``,
    ``ir``) are not built, and :meth:`knows_user` / :meth:`knows_item` check the inner-id ranges.
    """

    def __init__(
        self,
        u_codes: np.ndarray,
        i_codes: np.ndarray,
        values: np.ndarray,
        users: pd.Index,
        items: pd.Index,
        scale: tuple[float, float],
    ) -> None:
        raw_users = dict(zip(users.tolist(), range(len(users)), strict=True))
        raw_items = dict(zip(items.tolist(), range(len(items)), strict=True))
        super().__init__({}, {}, len(users), len(items), len(values), scale, raw_users, raw_items)
        order = np.lexsort((values, i_codes, u_codes))  # a repeated pair's ratings in value order
        self._triples = (u_codes[order].tolist(), i_codes[order].tolist(), values[order].tolist())
        self._global_mean = np.mean(values[order])

    def all_ratings(self) -> Iterator[tuple[int, int, float]]:
        return zip(*self._triples, strict=True)

    def knows_user(self, uid: int) -> bool:
        return 0 <= uid < self.n_users

    def knows_item(self, iid: int) -> bool:
        return 0 <= iid < self.n_items
