"""The last few results of a deterministic fit, kept in the process by a digest of its inputs.

A training round fits the same component on the same window more than once (for the blend, for the
ranker's candidates, for each option set of the blend search); a fit that is a function of its inputs
alone is then computed once.  Keys are digests (:func:`digest`) of everything the fit reads.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


def digest(*parts: np.ndarray | str) -> str:
    """A 128-bit digest of arrays (their bytes, dtype and shape) and strings, in order."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, str):
            h.update(b"s" + part.encode())
        else:
            array = np.ascontiguousarray(part)
            h.update(f"a{array.dtype.str}{array.shape}".encode())
            h.update(array.tobytes())
    return h.hexdigest()


class Kept(Generic[T]):
    """The last ``size`` results by key (least recently used dropped first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.results: OrderedDict[str, T] = OrderedDict()

    def get(self, key: str, compute: Callable[[], T]) -> T:
        """The kept result of ``key``, or ``compute()`` kept under it."""
        if key in self.results:
            self.results.move_to_end(key)
            return self.results[key]
        result = self.results[key] = compute()
        while len(self.results) > self.size:
            self.results.popitem(last=False)
        return result

    def put(self, key: str, result: T) -> None:
        """Keep ``result`` under ``key`` (computed elsewhere, e.g. by another process)."""
        self.get(key, lambda: result)
