"""Concurrent single-key reads share batched reads (``recomart.serving.batching.Coalescer``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from recomart.serving.batching import Coalescer


class Store:
    """A batched read that records its batches and holds each one until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail_next = False

    async def fetch_many(self, keys: list[str]) -> list[str]:
        self.batches.append(keys)
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("store down")
        return [key.upper() for key in keys]


def test_reads_arriving_while_a_batch_is_in_flight_go_out_together_in_the_next(
    run_coroutine: Callable[[Coroutine[Any, Any, Any]], Any],
) -> None:
    async def scenario() -> None:
        store = Store()
        reads = Coalescer(store.fetch_many)
        first = asyncio.ensure_future(reads.get("a"))
        await asyncio.sleep(0)  # the first batch leaves at once, alone
        await asyncio.sleep(0)
        later = [asyncio.ensure_future(reads.get(key)) for key in ("b", "c", "d")]
        await asyncio.sleep(0)
        store.release.set()
        assert await first == "A"
        assert await asyncio.gather(*later) == ["B", "C", "D"]
        assert store.batches == [["a"], ["b", "c", "d"]]

    run_coroutine(scenario())


def test_a_failed_batch_fails_each_of_its_reads_and_the_next_batch_reads_again(
    run_coroutine: Callable[[Coroutine[Any, Any, Any]], Any],
) -> None:
    async def scenario() -> None:
        store = Store()
        store.fail_next = True
        store.release.set()
        reads = Coalescer(store.fetch_many)
        failed = await asyncio.gather(reads.get("a"), reads.get("b"), return_exceptions=True)
        assert [type(error) for error in failed] == [ConnectionError, ConnectionError]
        assert await reads.get("c") == "C"
        assert store.batches == [["a", "b"], ["c"]]

    run_coroutine(scenario())


def test_a_cancelled_read_leaves_the_others_of_its_batch_answered(
    run_coroutine: Callable[[Coroutine[Any, Any, Any]], Any],
) -> None:
    async def scenario() -> None:
        store = Store()
        reads = Coalescer(store.fetch_many)
        gone, kept = asyncio.ensure_future(reads.get("a")), asyncio.ensure_future(reads.get("b"))
        await asyncio.sleep(0)
        gone.cancel()
        store.release.set()
        assert await kept == "B"
        with pytest.raises(asyncio.CancelledError):
            await gone

    run_coroutine(scenario())


def test_a_batched_read_returning_the_wrong_number_of_values_fails_its_reads(
    run_coroutine: Callable[[Coroutine[Any, Any, Any]], Any],
) -> None:
    async def short(keys: list[str]) -> list[str]:
        return keys[:1]

    async def scenario() -> None:
        reads = Coalescer(short)
        results = await asyncio.gather(reads.get("a"), reads.get("b"), return_exceptions=True)
        assert all(isinstance(result, ValueError) for result in results)

    run_coroutine(scenario())


def test_batches_hold_at_most_max_batch_keys(run_coroutine: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
    async def scenario() -> None:
        store = Store()
        store.release.set()
        reads = Coalescer(store.fetch_many, max_batch=2)
        assert await asyncio.gather(*(reads.get(key) for key in "abcde")) == list("ABCDE")
        assert [len(batch) for batch in store.batches] == [2, 2, 1]

    run_coroutine(scenario())
