"""Per-minute serving figures in ``ops.serving_stats``, without a Postgres write per request.

Each worker process aggregates in memory: :meth:`ServingStats.observe` (called by the latency
middleware) appends the request's time to its UTC minute and route, and counts 5xx answers. A
background thread wakes at every multiple of ``flush_s`` seconds (60: each minute boundary) and
upserts every minute it holds (one ``executemany``; a minute still running is written again at the
next flush, replacing its row), then forgets the minutes that have ended. The fallback share of a
minute is the share of list reads answered by the Postgres fallback, from this process's
``recomart_api_list_reads`` counters between two flushes. When Postgres is unreachable the minutes
are kept (at most :data:`MAX_PENDING_MINUTES`) and written by a later flush.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import psycopg

from recomart.serving.metrics import LIST_READS

log = logging.getLogger(__name__)

MAX_PENDING_MINUTES = 60
_UPSERT = (
    "INSERT INTO ops.serving_stats (minute, route, worker, requests, errors, p50_ms, p95_ms, p99_ms, fallback_share)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (minute, route, worker) DO UPDATE SET"
    " requests = excluded.requests, errors = excluded.errors, p50_ms = excluded.p50_ms,"
    " p95_ms = excluded.p95_ms, p99_ms = excluded.p99_ms,"
    " fallback_share = coalesce(excluded.fallback_share, ops.serving_stats.fallback_share)"
)


def _list_read_totals() -> dict[tuple[str, str], float]:
    """This process's list reads so far, ``{(route label, source): count}``."""
    return {
        (sample.labels["route"], sample.labels["source"]): sample.value
        for family in LIST_READS.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


class ServingStats:
    """One worker's per-minute aggregates (thread-safe: requests observe, the flusher drains)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: dict[tuple[int, str], list[float]] = defaultdict(list)
        self._errors: dict[tuple[int, str], int] = defaultdict(int)
        self._reads: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0.0, 0.0])  # [postgres, all]
        self._last_totals: dict[tuple[str, str], float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker = ""

    def observe(self, route: str, status: int, seconds: float, now: float | None = None) -> None:
        """Count one answered request of ``route`` (its template) that took ``seconds``."""
        key = (int((time.time() if now is None else now) // 60), route)
        with self._lock:
            self._latencies[key].append(seconds)
            if status >= 500:
                self._errors[key] += 1

    def _count_list_reads(self, minute: int) -> None:
        """Add the list reads since the last call to ``minute``'s counts, per route label."""
        totals = _list_read_totals()
        before, self._last_totals = self._last_totals, totals
        if before is None:
            return
        for (route, source), value in totals.items():
            counts = self._reads[(minute, route)]
            added = value - before.get((route, source), 0.0)
            counts[1] += added
            counts[0] += added if source == "postgres" else 0.0

    def _fallback_share(self, minute: int, route: str) -> float | None:
        for (m, label), (postgres, reads) in self._reads.items():
            if m == minute and reads > 0 and route.rstrip("/").endswith("/" + label):
                return postgres / reads
        return None

    def rows(self, now: float | None = None) -> tuple[list[tuple], list[int]]:
        """(the upsert rows of every minute held, the minutes held that have ended)."""
        now = time.time() if now is None else now
        with self._lock:
            self._count_list_reads(int((now - 1e-3) // 60))
            held = {key: np.asarray(values) * 1000.0 for key, values in self._latencies.items()}
            errors = dict(self._errors)
        rows = []
        for (minute, route), ms in held.items():
            p50, p95, p99 = np.percentile(ms, [50, 95, 99])
            stamp = datetime.fromtimestamp(minute * 60, UTC)
            share = self._fallback_share(minute, route)
            rows.append((stamp, route, self.worker, ms.size, errors.get((minute, route), 0), p50, p95, p99, share))
        return rows, sorted({minute for minute, _ in held if minute < int(now // 60)})

    def _forget(self, minutes: list[int]) -> None:
        gone = set(minutes)
        with self._lock:
            for table in (self._latencies, self._errors, self._reads):
                for key in [k for k in table if k[0] in gone]:
                    del table[key]

    def flush(self, dsn: str, now: float | None = None) -> int:
        """Upsert every minute held into ``ops.serving_stats`` and forget the ended ones. Returns the rows
        written; 0 when Postgres failed (the minutes are kept, at most :data:`MAX_PENDING_MINUTES`)."""
        rows, ended = self.rows(now)
        if not rows:
            return 0
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn, conn.cursor() as cur:
                cur.executemany(_UPSERT, rows)
        except psycopg.Error as exc:
            log.warning("serving stats not written (kept for the next flush): %s", exc)
            self._forget(ended[:-MAX_PENDING_MINUTES])
            return 0
        self._forget(ended)
        return len(rows)

    def start(self, dsn: str, flush_s: float = 60.0) -> None:
        """Flush in a daemon thread at every multiple of ``flush_s`` seconds (this worker's rows)."""
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._stop.clear()
        self._count_list_reads(0)  # the counters' baseline

        def loop() -> None:
            while not self._stop.wait(flush_s - time.time() % flush_s):
                self.flush(dsn)

        self._thread = threading.Thread(target=loop, name="recomart-serving-stats", daemon=True)
        self._thread.start()

    def stop(self, dsn: str) -> None:
        """Stop the thread and write what is held (the minute in progress included)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush(dsn)


SERVING_STATS = ServingStats()
"""This worker process's aggregates (the middleware observes into it; ``create_app`` starts its flusher)."""
