"""Exposure logging: every recommendations response appends one exposure to the event stream.

Fire-and-forget, so a response waits for no Redis round trip: the handler encodes the exposure and
appends it to an in-process buffer (microseconds). One asyncio task per API process, on the same
event loop as the requests, wakes when the buffer has entries, lets :data:`FLUSH_AFTER_S` pass so
that the responses of that time share a batch, and appends the batch in one round trip: a pipeline
of ``XADD`` s ending with the stream's ``XLEN`` (redis-py's asyncio client). That length is the cap
check of the next batch; only when it was at the cap does the next batch read ``XLEN`` again first.
Each round trip costs the event loop a few hundred µs of redis-py, so fewer and larger batches leave
more of it to the requests. The writer runs on the event loop rather than in a
thread: a thread contends for the GIL with the loop (measured in ``benchmarks/serving.py``'s setup:
about 0.6 ms of server CPU per response, a third of the route's cost). The stream worker loads the
exposures into ``raw.exposures`` once per ``request_id`` (:mod:`recomart.stream.batch`).

An exposure is lost, and counted in ``recomart_api_exposures_dropped_total{reason}``, when the buffer
is full (``queue_full``), Redis fails (``unavailable``) or the stream is at its cap (``backlog``, as
``POST /v1/events`` refuses then; a batch may pass the cap by its own size when the stream filled up
since the previous append), and when the process dies with exposures still buffered (at most
:data:`FLUSH_AFTER_S` worth; a clean shutdown appends the buffer first). ``RECOMART_LOG_EXPOSURES=0``
turns logging off (no task, nothing buffered), e.g. to measure its cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis
import redis.asyncio

from recomart.config import Settings
from recomart.serving.metrics import EXPOSURES_DROPPED, EXPOSURES_LOGGED
from recomart.stream.events import stream_layout
from recomart.stream.exposures import encode_exposure

log = logging.getLogger(__name__)

MAX_QUEUE = 10_000
"""Most exposures buffered; more are dropped (``queue_full``) while Redis is slow."""
MAX_BATCH = 500
"""Most ``XADD`` s in one pipeline."""
FLUSH_AFTER_S = 0.02
"""How long the writer lets exposures gather after the first of a batch arrives."""


class ExposureLog:
    """The exposure buffer of one API process and its writer task (started on the server's loop)."""

    def __init__(self, s: Settings) -> None:
        self.stream = stream_layout(s.db_prefix).stream
        self.max_len = s.stream_max_len
        self.redis_url = s.redis_url
        self.enabled = s.log_exposures
        self.pending: list[dict[bytes, bytes]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._redis: redis.asyncio.Redis | None = None
        self._length: int | None = None  # the stream's length after the last append (None: not read yet)

    def start(self) -> None:
        """Start the writer on the running event loop (the server's lifespan)."""
        if not self.enabled:
            return
        self._redis = redis.asyncio.Redis.from_url(self.redis_url, socket_timeout=1.0, socket_connect_timeout=0.5)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="recomart-exposure-log")

    async def aclose(self) -> None:
        """Stop the writer, then append what is still buffered."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            while self.pending:
                await self._append_batch()
        if self._redis is not None:
            await self._redis.aclose()

    def log(self, exposure: dict[str, Any]) -> None:
        """Buffer ``exposure`` (:class:`recomart.stream.exposures.ExposureIn`'s fields); never blocks."""
        if not self.enabled:
            return
        if len(self.pending) >= MAX_QUEUE:
            EXPOSURES_DROPPED.labels("queue_full").inc()
            return
        self.pending.append(encode_exposure(exposure))
        self._arrived.set()

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            await asyncio.sleep(FLUSH_AFTER_S)
            self._arrived.clear()
            while self.pending:
                await self._append_batch()

    async def _append_batch(self) -> None:
        """Append up to :data:`MAX_BATCH` buffered exposures (dropped, and counted, when Redis fails)."""
        entries, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
        assert self._redis is not None
        try:
            if self._length is None or self._length >= self.max_len:
                self._length = await self._redis.xlen(self.stream)
                if self._length >= self.max_len:
                    EXPOSURES_DROPPED.labels("backlog").inc(len(entries))
                    return
            async with self._redis.pipeline(transaction=False) as pipe:
                for fields in entries:
                    pipe.xadd(self.stream, fields)  # type: ignore[arg-type]
                pipe.xlen(self.stream)
                *_, self._length = await pipe.execute()
        except redis.RedisError as exc:
            self._length = None
            EXPOSURES_DROPPED.labels("unavailable").inc(len(entries))
            log.warning("dropped %d exposures: Redis unavailable (%s)", len(entries), exc)
            return
        EXPOSURES_LOGGED.inc(len(entries))
