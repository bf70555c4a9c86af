"""Exposure logging: every recommendations response appends one exposure to the event stream.

Fire-and-forget, so a response waits for no Redis round trip: the handler encodes the exposure and
puts it on a bounded in-process queue (microseconds); one writer thread per API process drains the
queue and appends what it holds with one ``XLEN`` and one pipelined batch of ``XADD`` s. The stream
worker loads them into ``raw.exposures`` once per ``request_id`` (:mod:`recomart.stream.batch`).

An exposure is lost, and counted in ``recomart_api_exposures_dropped_total{reason}``, when the queue
is full (``queue_full``), Redis fails (``unavailable``) or the stream is at its cap (``backlog``, as
``POST /v1/events`` refuses then), and when the process dies with exposures still queued (at most a
few milliseconds' worth; a clean shutdown drains the queue first). ``RECOMART_LOG_EXPOSURES=0`` turns
logging off (no thread, nothing queued), e.g. to measure its cost.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import redis

from recomart.config import Settings
from recomart.serving.metrics import EXPOSURES_DROPPED, EXPOSURES_LOGGED
from recomart.stream.events import stream_layout
from recomart.stream.exposures import encode_exposure

log = logging.getLogger(__name__)

MAX_QUEUE = 10_000
MAX_BATCH = 500
STOP_WAIT_S = 5.0
_STOP = object()


class ExposureLog:
    """The exposure queue of one API process and its writer thread."""

    def __init__(self, s: Settings) -> None:
        self.stream = stream_layout(s.db_prefix).stream
        self.max_len = s.stream_max_len
        self.redis = redis.Redis.from_url(s.redis_url, socket_timeout=1.0, socket_connect_timeout=0.5)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=MAX_QUEUE)
        self.enabled = s.log_exposures
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="recomart-exposure-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Append what is queued (waits up to :data:`STOP_WAIT_S`), then stop the thread."""
        if self._thread is not None:
            self.queue.put(_STOP)
            self._thread.join(timeout=STOP_WAIT_S)
        self.redis.close()

    def log(self, exposure: dict[str, Any]) -> None:
        """Queue ``exposure`` (:class:`recomart.stream.exposures.ExposureIn`'s fields); never blocks."""
        if not self.enabled:
            return
        try:
            self.queue.put_nowait(encode_exposure(exposure))
        except queue.Full:
            EXPOSURES_DROPPED.labels("queue_full").inc()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self.queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(entry is _STOP for entry in batch)
            entries = [entry for entry in batch if entry is not _STOP]
            if entries:
                self._append(entries)

    def _append(self, entries: list[dict[bytes, bytes]]) -> None:
        try:
            if self.redis.xlen(self.stream) >= self.max_len:
                EXPOSURES_DROPPED.labels("backlog").inc(len(entries))
                return
            with self.redis.pipeline(transaction=False) as pipe:
                for fields in entries:
                    pipe.xadd(self.stream, fields)  # type: ignore[arg-type]
                pipe.execute()
        except redis.RedisError as exc:
            EXPOSURES_DROPPED.labels("unavailable").inc(len(entries))
            log.warning("dropped %d exposures: Redis unavailable (%s)", len(entries), exc)
            return
        EXPOSURES_LOGGED.inc(len(entries))
