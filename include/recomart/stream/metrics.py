"""Prometheus metrics of the stream worker (``./recomart stream``), served on
``RECOMART_STREAM_METRICS_PORT`` (``GET /metrics``; bound to ``RECOMART_BIND_HOST``).

Counters and a histogram per micro-batch, and the stream's lag read from Redis at scrape time (the
same figures as the API's ``recomart_stream_*`` gauges, so the worker's own endpoint tells its lag
while the API is down).
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from recomart.stream.batch import BatchResult
from recomart.stream.events import StreamLayout
from recomart.stream.lag import stream_lag

REGISTRY = CollectorRegistry()
EVENTS = Counter(
    "recomart_stream_worker_events",
    "Stream entries the worker handled, by outcome: loaded, duplicates (redeliveries), rejected, erased.",
    ["outcome"],
    registry=REGISTRY,
)
OUTCOMES = ("loaded", "duplicates", "rejected", "erased")
for _outcome in OUTCOMES:  # every series exists from the start (a dashboard's rate() needs a first sample)
    EVENTS.labels(_outcome)
BATCHES = Counter("recomart_stream_worker_batches", "Micro-batches committed.", registry=REGISTRY)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_SECONDS = Histogram(
    "recomart_stream_worker_batch_seconds",
    "Time to store one micro-batch (COPY, session rows, ledger) in Postgres.",
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)
PUSH_SECONDS = Histogram(
    "recomart_stream_worker_push_seconds",
    "Time to push one micro-batch's session rows to the online store (Feast push).",
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)
STORE_PHASE_SECONDS = Counter(
    "recomart_stream_worker_store_phase_seconds",
    "Seconds spent in each step of storing the micro-batches (parse, locks, events, exposures, session, ledger,"
    " commit).",
    ["phase"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "recomart_stream_worker_retries", "Micro-batch attempts that failed and were retried.", registry=REGISTRY
)


def count_batch(result: BatchResult) -> None:
    """Add one committed micro-batch to the counters."""
    BATCHES.inc()
    BATCH_SECONDS.observe(result.seconds)
    for phase, seconds in result.phases.items():
        STORE_PHASE_SECONDS.labels(phase).inc(seconds)
    for outcome in OUTCOMES:
        EVENTS.labels(outcome).inc(getattr(result, outcome))


class LagCollector(Collector):
    """``recomart_stream_worker_lag_seconds`` and ``..._pending`` read from Redis at each scrape."""

    def __init__(self, client: redis.Redis, layout: StreamLayout) -> None:
        self.client, self.layout = client, layout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            lag = stream_lag(self.client, self.layout)
        except redis.RedisError:
            return
        yield GaugeMetricFamily(
            "recomart_stream_worker_lag_seconds", "Age of the oldest event not yet acknowledged.", value=lag.behind_s
        )
        yield GaugeMetricFamily(
            "recomart_stream_worker_pending", "Entries delivered, not acknowledged.", value=lag.pending
        )


def serve_metrics(host: str, port: int, client: redis.Redis, layout: StreamLayout) -> None:
    """Serve :data:`REGISTRY` (with the lag) over HTTP on ``host:port`` in a daemon thread."""
    REGISTRY.register(LagCollector(client, layout))
    start_http_server(port, addr=host, registry=REGISTRY)
