"""``./recomart simulate --rate 200 --minutes 2``: shop behaviour sent through ``POST /v1/events``.

The events are the generated shop's next days (:func:`recomart.datasets.generator.later_days`: the
same users, items and planted tastes as ``./recomart generate`` with the deployment's settings), sent
in their order at ``rate`` events per second in batches every :data:`TICK_S`, stamped with the send
time and given run-unique event ids. A 503 (Redis down, stream at its cap) is retried after its
``Retry-After``; the summary counts what was accepted, refused and retried.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import httpx
import numpy as np

from recomart.config import Settings
from recomart.datasets.generator import later_days
from recomart.stream.intake import API_KEY_HEADER, EVENTS_PATH, api_key

TICK_S = 0.1
MAX_RETRIES = 20


@dataclass
class SimulationSummary:
    """What a run sent: events accepted, requests retried (503) or refused (other 4xx/5xx), latencies."""

    rate: float
    seconds: float
    accepted: int = 0
    retried: int = 0
    refused: int = 0
    achieved_rate: float = 0.0
    post_p50_ms: float | None = None
    post_p99_ms: float | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "latencies_ms"}


def shop_events(s: Settings, run_id: str) -> Iterator[dict]:
    """Events of the generated shop's later days, in time order, with run-unique ids (no ``event_time``)."""
    for table in later_days(users=s.generator_users, items=s.generator_items, days=s.generator_days, seed=s.seed):
        columns = table.select(["event_id", "user_id", "item_id", "event_type", "quantity"]).to_pydict()
        for event_id, user, item, kind, quantity in zip(*columns.values(), strict=True):
            yield {
                "event_id": f"sim-{run_id}-{event_id}",
                "event_type": kind,
                "user_id": user,
                "item_id": item,
                "quantity": quantity,
            }


def _post(client: httpx.Client, batch: list[dict], summary: SimulationSummary) -> None:
    """Send one batch (retrying 503s after Retry-After); stamp the events with the send time."""
    now = datetime.now(UTC).isoformat()
    body = {"events": [{**event, "event_time": now} for event in batch]}
    for _ in range(MAX_RETRIES):
        began = time.perf_counter()
        response = client.post(EVENTS_PATH, json=body)
        summary.latencies_ms.append((time.perf_counter() - began) * 1000)
        if response.status_code == 202:
            summary.accepted += len(batch)
            return
        if response.status_code != 503:
            summary.refused += 1
            print(f"refused ({response.status_code}): {response.text[:300]}", flush=True)
            return
        summary.retried += 1
        time.sleep(float(response.headers.get("Retry-After", "1")))
    summary.refused += 1


def simulate(s: Settings, rate: float, seconds: float, url: str | None = None) -> SimulationSummary:
    """Send ``rate`` events/s for ``seconds`` to the API at ``url`` (default: the deployment's)."""
    summary = SimulationSummary(rate, seconds)
    events = shop_events(s, uuid.uuid4().hex[:8])
    headers = {API_KEY_HEADER: api_key(s)}
    began = time.monotonic()
    with httpx.Client(base_url=url or s.api_url, headers=headers, timeout=10) as client:
        tick = 0
        while time.monotonic() - began < seconds:
            tick += 1
            target = int(rate * TICK_S * tick) - int(rate * TICK_S * (tick - 1))
            batch = [next(events) for _ in range(target)]
            if batch:
                _post(client, batch, summary)
            due = tick * TICK_S - (time.monotonic() - began)
            if due > 0:
                time.sleep(due)
    elapsed = time.monotonic() - began
    summary.achieved_rate = round(summary.accepted / elapsed, 1) if elapsed else 0.0
    if summary.latencies_ms:
        summary.post_p50_ms, summary.post_p99_ms = (
            round(float(v), 2) for v in np.percentile(summary.latencies_ms, [50, 99])
        )
    return summary


def print_summary(summary: SimulationSummary) -> None:
    print(json.dumps(summary.as_dict(), indent=2), flush=True)
