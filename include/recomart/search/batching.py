"""Encode the queries that arrive together in one forward pass (micro-batching, no cache).

An API process answers queries in many threads at once.  Encoding a short query is dominated by
reading the model's 42 MB of weights (a 10-token query multiplies each weight 10 times), so two
queries encoded together cost little more than one.  :class:`QueryBatcher` lets the first waiting
thread (the leader) encode every query queued so far in one :meth:`MiniLMEncoder.encode` call and hand
each thread its vector; queries that arrive meanwhile wait for the next batch, whose leader is the
first of them.  A lone query is encoded at once, as without the batcher.  Nothing is remembered
between batches: every query is encoded.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class TextEncoder(Protocol):
    name: str
    inference: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class _Slot:
    """One waiting call: its texts, then its vectors (or the error), or the leader's turn."""

    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: np.ndarray | None = None
    error: BaseException | None = None
    lead: bool = False


class QueryBatcher:
    """A thread-safe :class:`TextEncoder` that encodes concurrent calls together (see the module doc).

    ``max_texts`` bounds one batch (the rest wait for the next one).
    """

    def __init__(self, encoder: TextEncoder, *, max_texts: int = 64) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.inference = encoder.inference
        self._max_texts = max_texts
        self._lock = threading.Lock()
        self._queue: list[_Slot] = []
        self._busy = False
        self.batches = 0  # batches encoded, and texts in them (for benchmarks: texts / batches)
        self.texts = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``len(texts) x dim`` float32 unit rows, as the wrapped encoder's ``encode``."""
        slot = _Slot(list(texts))
        with self._lock:
            self._queue.append(slot)
            slot.lead = not self._busy
            self._busy = True
        if not slot.lead:
            slot.done.wait()
            if slot.lead:  # the previous leader handed this thread the next batch
                slot.done.clear()
                self._lead()
        else:
            self._lead()
        if slot.error is not None:
            raise slot.error
        assert slot.vectors is not None
        return slot.vectors

    def _lead(self) -> None:
        """Encode the queued calls (up to ``max_texts`` texts), answer them, then pass the lead on."""
        with self._lock:
            batch, size = [], 0
            while self._queue and (not batch or size + len(self._queue[0].texts) <= self._max_texts):
                size += len(self._queue[0].texts)
                batch.append(self._queue.pop(0))
        try:
            vectors = self.encoder.encode([t for s in batch for t in s.texts])
        except BaseException as exc:  # every caller of this batch sees the encoder's error
            for s in batch:
                s.error = exc
        else:
            start = 0
            for s in batch:
                s.vectors, start = vectors[start : start + len(s.texts)], start + len(s.texts)
        with self._lock:
            self.batches, self.texts = self.batches + 1, self.texts + size
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._busy = False
            else:
                successor.lead = True
        for s in batch:
            s.done.set()
        if successor is not None:
            successor.done.set()
