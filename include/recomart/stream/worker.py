"""``./recomart stream``: the consumer-group worker of the event stream (long-running).

Loop: reclaim entries another consumer left pending for ``stream_claim_idle_s`` (``XAUTOCLAIM``,
e.g. after a ``kill -9``), else read new ones (``XREADGROUP ... BLOCK``: a micro-batch is whatever
arrived, up to ``stream_batch_size``); store and push the batch (:mod:`recomart.stream.batch`);
``XACK`` it; about once a second trim the stream with ``XTRIM MINID`` up to the oldest entry any
group has not acknowledged (:func:`recomart.stream.lag.safe_trim_id`). A failing batch (Postgres
or Redis down, the feature store not applied yet) is retried with backoff until it succeeds, and
is not acknowledged before: nothing accepted is lost. SIGTERM/SIGINT stop after the current batch.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

import psycopg
import redis

from recomart.config import Settings
from recomart.credentials import secrets_dir
from recomart.ingest.erasure import read_erasure_key
from recomart.stream.batch import BatchResult, Entry, push_sessions, store_batch
from recomart.stream.events import GROUP, stream_layout
from recomart.stream.lag import safe_trim_id
from recomart.stream.metrics import PUSH_SECONDS, RETRIES, count_batch, serve_metrics
from recomart.stream.tables import ensure_stream_tables

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger("recomart.stream")

PROCESS_NAME = "stream"
BLOCK_MS = 200
TRIM_EVERY_S = 1.0
CLAIM_EVERY_S = 1.0
SUMMARY_EVERY_S = 10.0
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _entries(raw: list) -> list[Entry]:
    return [Entry(entry_id.decode(), fields) for entry_id, fields in raw]


class StreamWorker:
    """One consumer of the group ``workers`` (name ``<host>-<pid>`` unless given)."""

    def __init__(self, s: Settings, consumer: str | None = None) -> None:
        self.s = s
        self.layout = stream_layout(s.db_prefix)
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.redis = redis.Redis.from_url(s.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
        self.conn: psycopg.Connection | None = None
        self.store: FeatureStore | None = None
        self.stopping = False
        self._claim_cursor = "0-0"
        self._last = {"claim": 0.0, "trim": 0.0, "summary": time.monotonic()}
        self.totals: dict[str, float] = dict.fromkeys(
            ("batches", "read", "loaded", "duplicates", "rejected", "erased", "store_s", "push_s"), 0
        )

    # --- connections ---------------------------------------------------------------------------
    def _postgres(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.s.warehouse_url, connect_timeout=5)
            ensure_stream_tables(self.conn)
            self.conn.commit()
        return self.conn

    def _feature_store(self) -> FeatureStore:
        if self.store is None:
            from recomart.features import feature_store
            from recomart.tools import tool_env

            self.store = feature_store(self.s.feature_repo_dir, tool_env(self.s))
        return self.store

    def _reset(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _ensure_group(self) -> None:
        """Create the group at the stream's start ("0": events accepted before any worker ran count too)."""
        try:
            self.redis.xgroup_create(self.layout.stream, GROUP, id="0", mkstream=True)
            log.info("created consumer group %s on %s", GROUP, self.layout.stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- reading -------------------------------------------------------------------------------
    def _claim(self) -> list[Entry]:
        """Entries pending longer than the claim idle time (a crashed consumer's), now ours."""
        idle_ms = int(self.s.stream_claim_idle_s * 1000)
        reply = self.redis.xautoclaim(
            self.layout.stream, GROUP, self.consumer, idle_ms, start_id=self._claim_cursor,
            count=self.s.stream_batch_size,
        )  # fmt: skip
        cursor, claimed = reply[0], reply[1]
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        entries = _entries(claimed)
        if entries:
            log.info("reclaimed %d pending entries (idle >= %d ms)", len(entries), idle_ms)
        return entries

    def next_batch(self) -> list[Entry]:
        """Reclaimed entries if there are, else the new ones (waits up to ``BLOCK_MS``)."""
        now = time.monotonic()
        if now - self._last["claim"] >= CLAIM_EVERY_S:
            self._last["claim"] = now
            claimed = self._claim()
            if claimed:
                return claimed
        try:
            reply = self.redis.xreadgroup(
                GROUP, self.consumer, {self.layout.stream: ">"}, count=self.s.stream_batch_size, block=BLOCK_MS
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_group()  # the stream was deleted (or Redis lost it): start again
            return []
        return _entries(reply[0][1]) if reply else []

    # --- processing ----------------------------------------------------------------------------
    def process(self, entries: list[Entry]) -> BatchResult:
        """Store, push and acknowledge one batch (raises on any failure; nothing acknowledged then)."""
        conn = self._postgres()
        erasure_key = read_erasure_key(secrets_dir(self.s.state_dir))
        result = store_batch(conn, self.layout.stream, entries, erasure_key)
        pushed = time.perf_counter()
        push_sessions(self._feature_store(), result.frame)
        push_s = time.perf_counter() - pushed
        PUSH_SECONDS.observe(push_s)
        self.totals["push_s"] += push_s
        self.totals["store_s"] += result.seconds
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(self.layout.stream, GROUP, *[entry.stream_id for entry in entries])
            for name in ("read", "loaded", "duplicates", "rejected", "erased"):
                pipe.hincrby(self.layout.stats, name, getattr(result, name))
            pipe.hincrby(self.layout.stats, "batches", 1)
            pipe.execute()
        return result

    def process_until_done(self, entries: list[Entry]) -> BatchResult | None:
        """:meth:`process`, retried with backoff until it succeeds (None if asked to stop first)."""
        attempt = 0
        while not self.stopping:
            try:
                return self.process(entries)
            except Exception as exc:  # Postgres, Redis, Feast: retry the same entries, never drop them
                wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                log.warning(
                    "micro-batch of %d entries (%s..%s) failed, retrying in %.1f s: %s: %s",
                    len(entries), entries[0].stream_id, entries[-1].stream_id, wait, type(exc).__name__,
                    str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "",
                )  # fmt: skip
                if isinstance(exc, psycopg.Error):
                    self._reset()
                RETRIES.inc()
                attempt += 1
                time.sleep(wait)
        return None

    def housekeeping(self) -> None:
        """Trim acknowledged entries (never past an unacknowledged one) and log a summary now and then."""
        now = time.monotonic()
        if now - self._last["trim"] >= TRIM_EVERY_S:
            self._last["trim"] = now
            minid = safe_trim_id(self.redis, self.layout.stream)
            if minid is not None:
                self.redis.xtrim(self.layout.stream, minid=minid, approximate=True)
        if now - self._last["summary"] >= SUMMARY_EVERY_S:
            self._last["summary"] = now
            log.info("totals since start: %s", self._totals_text())

    def _totals_text(self) -> str:
        """``batches 12, read 3400, ..., store_s 1.9, push_s 2.4`` (seconds spent in Postgres and in Feast)."""
        return ", ".join(f"{k} {round(v, 1) if k.endswith('_s') else int(v)}" for k, v in self.totals.items())

    def _count(self, result: BatchResult) -> None:
        count_batch(result)
        self.totals["batches"] += 1
        for name in ("read", "loaded", "duplicates", "rejected", "erased"):
            self.totals[name] += getattr(result, name)
        log.debug(
            "batch %s: read %d, loaded %d, duplicates %d, rejected %d, users %d, %.0f ms",
            result.load_id, result.read, result.loaded, result.duplicates, result.rejected, result.users,
            result.seconds * 1000,
        )  # fmt: skip

    def run(self) -> None:
        """Consume until SIGTERM/SIGINT; Redis outages are waited out with backoff."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        log.info("stream worker %s on %s (group %s)", self.consumer, self.layout.stream, GROUP)
        try:
            self._feature_store()  # import Feast and read the registry before the first batch
        except Exception as exc:  # Postgres (the registry) down: the first batch retries it
            log.warning("feature store not ready yet: %s", str(exc).splitlines()[0][:300] if str(exc) else exc)
        failures = 0
        group_ready = False
        while not self.stopping:
            try:
                if not group_ready:
                    self._ensure_group()
                    group_ready = True
                entries = self.next_batch()
                if entries:
                    result = self.process_until_done(entries)
                    if result is not None:
                        self._count(result)
                self.housekeeping()
                failures = 0
            except redis.RedisError as exc:
                wait = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                log.warning("Redis unavailable (%s), retrying in %.1f s", exc, wait)
                failures += 1
                group_ready = False
                time.sleep(wait)
        log.info("stopped; totals: %s", self._totals_text())
        self._reset()
        self.redis.close()


def run_worker(s: Settings) -> int:
    """Run one worker in the foreground (``./recomart stream``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = StreamWorker(s)
    try:
        serve_metrics(s.bind_host, s.stream_metrics_port, worker.redis, worker.layout)
        log.info("Prometheus metrics on http://%s:%d/metrics", s.client_host, s.stream_metrics_port)
    except OSError as exc:  # the port is taken: consume anyway, the API still exposes the stream's lag
        log.warning("no Prometheus endpoint on port %d: %s", s.stream_metrics_port, exc)
    worker.run()
    return 0


def worker_args() -> list[str]:
    """The command line of ``./recomart stream`` run by this interpreter."""
    return [sys.executable, "-m", "recomart.cli", "stream"]


def group_problem(s: Settings) -> str | None:
    """None once the worker's consumer group exists on the stream (``up``'s health check), else why not."""
    try:
        with redis.Redis.from_url(s.redis_url, socket_timeout=2.0) as client:
            groups = client.xinfo_groups(stream_layout(s.db_prefix).stream)
    except redis.RedisError as exc:
        return f"no consumer group yet ({exc})"
    return None if any(g["name"] in (GROUP, GROUP.encode()) for g in groups) else "no consumer group yet"
