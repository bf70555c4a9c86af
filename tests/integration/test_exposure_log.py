"""The API's exposure writer on a real Redis: batches appended, refused at the stream's cap, resumed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import redis

from recomart.config import Settings
from recomart.serving.exposures import FLUSH_AFTER_S, ExposureLog
from recomart.stream.events import stream_layout


def _exposure(n: int) -> dict[str, object]:
    return {"request_id": f"r{n}", "user_id": "u1", "item_ids": ["p1"]}


def test_exposures_stop_at_the_stream_cap_and_resume_once_the_worker_drained_it(
    test_settings: Settings, run_coroutine: Callable[[Coroutine[Any, Any, Any]], Any]
) -> None:
    s = replace(test_settings, stream_max_len=3, log_exposures=True)
    stream = stream_layout(s.db_prefix).stream
    client = redis.Redis.from_url(s.redis_url)
    client.delete(stream)

    async def logged(log: ExposureLog, *numbers: int) -> int:
        for n in numbers:
            log.log(_exposure(n))
        await asyncio.sleep(FLUSH_AFTER_S * 10)  # the writer's flush
        return client.xlen(stream)

    async def scenario() -> list[int]:
        log = ExposureLog(s)
        log.start()
        lengths = [await logged(log, 1, 2)]  # one batch
        client.xadd(stream, {"x": b"{}"})  # events fill the stream up to its cap
        lengths.append(await logged(log, 3))  # checked against the length after the last append (2)
        lengths.append(await logged(log, 4))  # at the cap: refused, counted as backlog
        client.delete(stream)  # the worker drained and trimmed it
        lengths.append(await logged(log, 5))  # read the length again: appended
        await log.aclose()
        return lengths

    try:
        assert run_coroutine(scenario()) == [2, 4, 4, 1]
    finally:
        client.delete(stream)
