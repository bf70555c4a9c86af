"""The learned factors of a biased SVD, detached from surprise, with raw-id lookups and an array form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp


def _as_id_array(ids: Any) -> np.ndarray:
    """Raw ids as a numpy array of Python ``str`` objects (ids are text in the warehouse)."""
    return np.asarray(pd.Series(ids, dtype=object).astype(str).to_numpy(), dtype=object)


@dataclass(eq=False)
class FactorModel:
    """``mu + bu[u] + bi[i] + pu[u]·qi[i]`` for raw user / item ids (row i of each array = id i)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    global_mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    _user_index: pd.Index | None = field(default=None, init=False, repr=False)
    _item_index: pd.Index | None = field(default=None, init=False, repr=False)
    _item_aug: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_ids = _as_id_array(self.user_ids)
        self.item_ids = _as_id_array(self.item_ids)
        self.global_mean = float(self.global_mean)
        self.user_bias = np.ascontiguousarray(self.user_bias, dtype=np.float32)
        self.item_bias = np.ascontiguousarray(self.item_bias, dtype=np.float32)
        self.user_factors = np.ascontiguousarray(self.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(self.item_factors, dtype=np.float32)
        n_u, n_i = len(self.user_ids), len(self.item_ids)
        if self.user_bias.shape != (n_u,) or self.user_factors.shape[0] != n_u:
            raise ValueError("user_bias / user_factors do not match user_ids")
        if self.item_bias.shape != (n_i,) or self.item_factors.shape[0] != n_i:
            raise ValueError("item_bias / item_factors do not match item_ids")
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise ValueError("user and item factors have different ranks")

    # --- shape ---------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_factors(self) -> int:
        return int(self.user_factors.shape[1])

    # --- lookups ---------------------------------------------------------------
    def user_index(self, ids: Any) -> np.ndarray:
        """Row of each raw user id in the factor arrays, ``-1`` for unknown users (int64)."""
        if self._user_index is None:
            self._user_index = pd.Index(self.user_ids)
        return self._user_index.get_indexer(pd.Index(_as_id_array(ids))).astype(np.int64)

    def item_index(self, ids: Any) -> np.ndarray:
        """Row of each raw item id in the factor arrays, ``-1`` for unknown items (int64)."""
        if self._item_index is None:
            self._item_index = pd.Index(self.item_ids)
        return self._item_index.get_indexer(pd.Index(_as_id_array(ids))).astype(np.int64)

    def item_matrix_augmented(self) -> np.ndarray:
        """``[qi, bi, 1]`` (n_items × (k+2), float32): one GEMM then yields pu·qi + bi + (mu + bu)."""
        if self._item_aug is None:
            ones = np.ones((self.n_items, 1), dtype=np.float32)
            self._item_aug = np.ascontiguousarray(
                np.hstack([self.item_factors, self.item_bias[:, None], ones]), dtype=np.float32
            )
        return self._item_aug

    # --- construction and array form -------------------------------------------------
    @classmethod
    def from_surprise(cls, algo: Any, trainset: Any) -> FactorModel:
        """Copy the factors of a fitted ``surprise.SVD(biased=True)`` with the raw ids of ``trainset``."""
        if not getattr(algo, "biased", True):
            raise ValueError("only biased SVD is supported (mu + bu + bi + pu·qi)")
        user_ids = [trainset.to_raw_uid(u) for u in range(trainset.n_users)]
        item_ids = [trainset.to_raw_iid(i) for i in range(trainset.n_items)]
        return cls(
            user_ids=np.asarray(user_ids, dtype=object),
            item_ids=np.asarray(item_ids, dtype=object),
            global_mean=float(trainset.global_mean),
            user_bias=np.asarray(algo.bu),
            item_bias=np.asarray(algo.bi),
            user_factors=np.asarray(algo.pu),
            item_factors=np.asarray(algo.qi),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The model as plain arrays (ids as unicode, no Python objects): what an artifact stores."""
        return {
            "user_ids": self.user_ids.astype(str),
            "item_ids": self.item_ids.astype(str),
            "global_mean": np.asarray(self.global_mean, dtype=np.float64),
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> FactorModel:
        """The model of :meth:`to_arrays`."""
        return cls(
            user_ids=np.asarray(arrays["user_ids"]).astype(object),
            item_ids=np.asarray(arrays["item_ids"]).astype(object),
            global_mean=float(arrays["global_mean"]),
            user_bias=arrays["user_bias"],
            item_bias=arrays["item_bias"],
            user_factors=arrays["user_factors"],
            item_factors=arrays["item_factors"],
        )

    def interactions(self, user_ids: Any, item_ids: Any) -> sp.csr_matrix:
        """CSR (model users × model items) marking the given pairs; pairs with unknown ids are dropped."""
        users = self.user_index(user_ids)
        items = self.item_index(item_ids)
        known = (users >= 0) & (items >= 0)
        data = np.ones(int(known.sum()), dtype=np.int8)
        matrix = sp.csr_matrix((data, (users[known], items[known])), shape=(self.n_users, self.n_items))
        matrix.sum_duplicates()
        matrix.data[:] = 1
        return matrix
