"""The API's per-minute aggregates (recomart.serving.stats) before any Postgres write."""

from __future__ import annotations

import numpy as np
import pytest

from recomart.serving.stats import ServingStats

ROUTE = "/v1/users/{user_id}/recommendations"


def test_rows_hold_percentiles_errors_per_minute_and_route_and_name_the_ended_minutes() -> None:
    stats = ServingStats()
    minute = 29_000_000 * 60.0
    latencies = np.linspace(0.001, 0.100, 100)  # 1..100 ms
    for n, seconds in enumerate(latencies):
        stats.observe(ROUTE, 500 if n < 3 else 200, seconds, now=minute + n * 0.1)
    stats.observe("/v1/items/{item_id}/similar", 200, 0.004, now=minute + 61)  # the next minute
    rows, ended = stats.rows(now=minute + 70)
    by_key = {(row[0].timestamp(), row[1]): row for row in rows}
    first = by_key[(minute, ROUTE)]
    assert first[3:5] == (100, 3)
    assert first[5:8] == pytest.approx(tuple(np.percentile(latencies * 1000, [50, 95, 99])))
    assert by_key[(minute + 60, "/v1/items/{item_id}/similar")][3] == 1
    assert ended == [int(minute // 60)]  # the minute still running is written again at the next flush
