"""``QueryBatcher``: concurrent calls are encoded together, each caller gets its own vectors, and an
encoder error reaches every caller of its batch (a fake encoder, so the batching is deterministic)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from recomart.search.batching import QueryBatcher


class SlowEncoder:
    """Encodes a text as ``[len(text), first character code]``, taking ``delay_s`` per call."""

    name = "fake"
    inference = "test"

    def __init__(self, delay_s: float, fail_on: str | None = None) -> None:
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.calls.append(list(texts))
        time.sleep(self.delay_s)
        if self.fail_on in texts:
            raise ValueError(f"cannot encode {self.fail_on!r}")
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


def test_concurrent_calls_share_batches_and_get_their_own_vectors() -> None:
    encoder = SlowEncoder(delay_s=0.05)
    batcher = QueryBatcher(encoder)
    texts = [chr(ord("a") + i) * (i + 1) for i in range(12)]
    with ThreadPoolExecutor(len(texts)) as pool:
        results = list(pool.map(lambda t: batcher.encode([t]), texts))
    for text, vectors in zip(texts, results, strict=True):
        assert vectors.tolist() == [[len(text), ord(text[0])]]
    assert sorted(t for call in encoder.calls for t in call) == sorted(texts)  # each text encoded once
    assert len(encoder.calls) < len(texts)  # while one batch ran, the others queued into the next
    assert (batcher.batches, batcher.texts) == (len(encoder.calls), len(texts))


def test_a_lone_call_is_encoded_at_once_with_several_texts() -> None:
    encoder = SlowEncoder(delay_s=0.0)
    batcher = QueryBatcher(encoder)
    assert batcher.encode(["ab", "c"]).tolist() == [[2, 97], [1, 99]]
    assert encoder.calls == [["ab", "c"]]


def test_batches_respect_max_texts() -> None:
    encoder = SlowEncoder(delay_s=0.05)
    batcher = QueryBatcher(encoder, max_texts=2)
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda t: batcher.encode([t]), "abcdef"))
    assert max(len(call) for call in encoder.calls) <= 2


def test_an_encoder_error_reaches_the_callers_of_its_batch_and_later_calls_work() -> None:
    encoder = SlowEncoder(delay_s=0.05, fail_on="bad")
    batcher = QueryBatcher(encoder)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.encode, [t]) for t in ("x", "bad", "y", "z")]
    failed = [f for f in futures if f.exception() is not None]
    assert failed and all(isinstance(f.exception(), ValueError) for f in failed)
    assert futures[1] in failed
    assert batcher.encode(["ok"]).tolist() == [[2, ord("o")]]
