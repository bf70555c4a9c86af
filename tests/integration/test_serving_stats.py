"""Serving figures in ``ops.serving_stats`` and the Grafana dashboard against live endpoints.

A real uvicorn (2 workers, the deployment of ``test_serving``) flushing its per-minute aggregates
every second, and a real stream worker process (``./recomart stream``) with its Prometheus endpoint.
Every metric name the dashboard's Prometheus panels query must appear in one of the two live
``/metrics`` outputs, and every SQL panel must run on the warehouse (containers cannot run here).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from test_serving import _recs, _wait, deployment  # noqa: F401 (deployment is a fixture used below)

from recomart.config import PROJECT_ROOT, Settings
from recomart.serving.server import server_env, uvicorn_args

pytestmark = pytest.mark.integration

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "recomart.json"
ROUTE = "/v1/users/{user_id}/recommendations"


def _process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen, log: Path) -> None:
    process.terminate()
    process.wait(timeout=30)
    print(log.read_text()[-2000:], file=sys.stderr)


@pytest.fixture(scope="module")
def api(deployment) -> Iterator[httpx.Client]:  # noqa: F811
    """The API as ``recomart serve`` starts it, flushing its serving stats every second."""
    s, overrides = deployment
    env = {**server_env(s, s.api_port), **overrides, "RECOMART_SERVING_STATS_FLUSH_S": "1"}
    log = s.state_dir / "api-stats.log"
    process = _process(uvicorn_args(s, "127.0.0.1", s.api_port, 2), env, log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{s.api_port}", timeout=10)
    try:
        _wait(lambda: client.get("/readyz").status_code == 200, 90, "the API to become ready")
        yield client
    finally:
        client.close()
        _stop(process, log)


@pytest.fixture(scope="module")
def worker_metrics(deployment, free_port) -> Iterator[str]:  # noqa: F811
    """A real stream worker process; the URL of its Prometheus endpoint."""
    s, overrides = deployment
    port = free_port()
    env = {**os.environ, **overrides, "RECOMART_STREAM_METRICS_PORT": str(port)}
    log = s.state_dir / "stream.log"
    process = _process([sys.executable, "-m", "recomart.cli", "stream"], env, log)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        _wait(lambda: httpx.get(url).status_code == 200, 90, "the stream worker's metrics")
        yield url
    finally:
        _stop(process, log)


def _served(s: Settings) -> dict[str, float]:
    with psycopg.connect(s.warehouse_url) as conn:
        row = conn.execute(
            "select coalesce(sum(requests), 0), coalesce(sum(errors), 0), max(p95_ms), max(fallback_share),"
            " count(distinct worker) from ops.serving_stats where route = %s",
            (ROUTE,),
        ).fetchone()
    return dict(zip(("requests", "errors", "p95_ms", "fallback_share", "workers"), row, strict=True))


def test_requests_reach_ops_serving_stats_within_seconds(api: httpx.Client, deployment) -> None:  # noqa: F811
    s, _ = deployment
    before = _served(s)["requests"]
    for n in range(40):
        _recs(api, f"u{n % 50:03d}")
    _wait(lambda: _served(s)["requests"] >= before + 40, 15, "40 requests in ops.serving_stats")
    served = _served(s)
    assert served["requests"] == before + 40 and served["errors"] == 0
    assert 0 < served["p95_ms"] < 10_000
    assert served["fallback_share"] == 0.0  # Redis holds the generation: no list came from Postgres


def _panels(kind: str) -> list[dict]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [p for p in panels if p["datasource"]["type"] == kind]


def test_every_metric_the_dashboard_queries_is_exposed_live(api: httpx.Client, worker_metrics: str) -> None:
    _recs(api, "u001")
    live = api.get("/metrics").text + httpx.get(worker_metrics).text
    exposed = {line.split("{")[0].split(" ")[0] for line in live.splitlines() if line and not line.startswith("#")}
    queried = {
        name
        for panel in _panels("prometheus")
        for target in panel["targets"]
        for name in re.findall(r"\b(recomart_[a-z0-9_]+)", target["expr"])
    }
    assert {"recomart_api_request_seconds_bucket", "recomart_stream_worker_lag_seconds"} <= queried
    assert queried - exposed == set()


def test_every_sql_panel_runs_on_the_warehouse(deployment) -> None:  # noqa: F811
    s, _ = deployment
    queries = [t["rawSql"] for p in _panels("grafana-postgresql-datasource") for t in p["targets"]]
    assert len(queries) >= 4
    with psycopg.connect(s.warehouse_url) as conn:
        for query in queries:
            conn.execute(re.sub(r"\$__timeFilter\((\w+)\)", r"\1 > now() - interval '6 hours'", query))
