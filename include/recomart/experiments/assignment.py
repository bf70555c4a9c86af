"""Deterministic assignment: a user's bucket is ``blake2b(salt + ":" + user_id)`` mod 10,000.

The same salt and user give the same bucket in every process, replica and restart (no state, no
Python ``hash()``, which is salted per process). Variants take the buckets in order: a variant of
share 0.3 after one of 0.5 holds buckets 5,000 to 7,999.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

import numpy as np

from recomart.experiments.definitions import BUCKETS, Experiment, Variant


def bucket(salt: str, user_id: str) -> int:
    """The user's bucket in ``[0, 10,000)`` under ``salt``."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@functools.lru_cache(maxsize=64)
def bounds(experiment: Experiment) -> tuple[int, ...]:
    """The first bucket after each variant (cumulative shares times 10,000, rounded; the last is 10,000)."""
    edges = np.rint(np.cumsum([variant.share for variant in experiment.variants]) * BUCKETS).astype(np.int64)
    edges[-1] = BUCKETS
    return tuple(int(edge) for edge in edges)


def assign(experiment: Experiment, user_id: str) -> Variant:
    """The variant ``user_id`` sees in ``experiment``, for the experiment's whole life."""
    slot = bucket(experiment.salt, user_id)
    return next(v for v, edge in zip(experiment.variants, bounds(experiment), strict=True) if slot < edge)


def assign_many(experiment: Experiment, user_ids: Iterable[str]) -> list[str]:
    """The variant names of ``user_ids`` (same as :func:`assign`, one per user)."""
    edges = bounds(experiment)
    buckets = np.fromiter((bucket(experiment.salt, user) for user in user_ids), dtype=np.int64)
    return [experiment.variants[i].name for i in np.searchsorted(np.asarray(edges), buckets, side="right")]
