"""Prometheus metrics of the API (``GET /metrics``), across uvicorn's worker processes.

``recomart serve`` points prometheus_client's ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the
workers start, so every worker's counters and histograms are summed at scrape time. The events
router's counters (``recomart.stream.intake``) live in the same registry and appear here too.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUEST_SECONDS = Histogram(
    "recomart_api_request_seconds", "Time to answer a request, per route.", ["route", "status"], buckets=LATENCY_BUCKETS
)
LIST_READS = Counter(
    "recomart_api_list_reads",
    "Where a list came from: redis (the precompute), memory (this process's copy of an earlier Redis read),"
    " postgres (fallback) or cold_start (user or item not in it).",
    ["route", "source"],
)
RERANKED = Counter("recomart_api_reranked", "Recommendation responses re-ranked with fresh session events.")
SESSION_READ_ERRORS = Counter("recomart_api_session_read_errors", "Session-feature reads that failed (served nightly).")
EXPOSURES_LOGGED = Counter(
    "recomart_api_exposures_logged", "Exposures (one per recommendations response) appended to the event stream."
)
EXPOSURES_DROPPED = Counter(
    "recomart_api_exposures_dropped",
    "Exposures not logged, by reason: queue_full (the writer is behind), unavailable (Redis error) or "
    "backlog (the stream at its cap: the worker is behind).",
    ["reason"],
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def registry(multiproc_dir: str | None) -> CollectorRegistry:
    """The registry to scrape: all workers' files in ``multiproc_dir``, else this process's metrics."""
    if not multiproc_dir:
        return DEFAULT_REGISTRY
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=multiproc_dir)
    return merged


def _total(reg: CollectorRegistry, name: str, keep: Callable[[dict[str, str]], bool]) -> float:
    return sum(
        sample.value
        for family in reg.collect()
        for sample in family.samples
        if sample.name == f"{name}_total" and keep(sample.labels)
    )


def fallback_share(reg: CollectorRegistry) -> float:
    """Share of list reads answered by the Postgres fallback (0 before any read)."""
    total = _total(reg, "recomart_api_list_reads", lambda labels: True)
    fallback = _total(reg, "recomart_api_list_reads", lambda labels: labels.get("source") == "postgres")
    return fallback / total if total else 0.0


def exposition(reg: CollectorRegistry, extra_gauges: dict[str, tuple[str, float | None]]) -> bytes:
    """The text format of ``reg`` plus gauges computed at scrape time (``{name: (help, value)}``)."""
    lines = [generate_latest(reg).decode()]
    for name, (help_text, value) in extra_gauges.items():
        if value is None:
            continue
        lines.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n{name} {value}\n")
    return "".join(lines).encode()
