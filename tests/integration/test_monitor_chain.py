"""The monitor DAG after the whole chain on a small generated shop (real Airflow ``dag.test()``):
it measures the live generation, and the lists are personal enough (issue 16, point 6: the demo
report's three sample users seemed to share about half of their top 10)."""

from __future__ import annotations

import itertools

import psycopg
import pytest

from recomart import processes
from recomart.chain_progress import run_dags_with_progress
from recomart.config import Settings
from recomart.datasets.generator import generate
from recomart.demo import run_chain
from recomart.report import sample_recommendations
from recomart.stack import start_catalog_api
from recomart.tools import airflow_migrate

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # 115 s: the chain, then the monitor DAG


@pytest.fixture(scope="module")
def monitored_shop(test_settings: Settings):
    """A small generated shop through the five DAGs, then one run of the monitor DAG."""
    s = test_settings
    generate(s.landing_dir / "generated", users=500, items=150, days=21, seed=11)
    airflow_migrate(s)
    start_catalog_api(s)
    try:
        run_chain(s)
    finally:
        processes.stop(s, "catalog-api")
    run_dags_with_progress(s, [{"dag_id": "monitor", "conf": None}])
    return s


def _metrics(dsn: str) -> dict[str, float]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select metric_key, value from ops.monitoring_metrics where metric_key like 'reco.%'")
        return dict(rows.fetchall())


def test_monitor_dag_measures_the_live_generation(monitored_shop: Settings) -> None:
    metrics = _metrics(monitored_shop.warehouse_url)
    print("generated-shop health:", {k: round(v, 4) for k, v in sorted(metrics.items()) if v is not None})
    assert metrics["reco.users"] > 0
    assert 0 < metrics["reco.coverage"] <= 1
    with psycopg.connect(monitored_shop.warehouse_url) as conn:
        model_rows = conn.execute("select count(*) from ops.monitoring_metrics where metric_key like 'model.%'")
        assert model_rows.fetchone()[0] > 0


def test_the_lists_are_personal_enough(monitored_shop: Settings) -> None:
    s = monitored_shop
    personalization = _metrics(s.warehouse_url)["reco.personalization"]
    samples = sample_recommendations(s.warehouse_url)
    overlaps = [len({r[1] for r in a} & {r[1] for r in b}) / 10 for a, b in itertools.combinations(samples.values(), 2)]
    print(f"personalization {personalization:.4f}; the report's sample users' pairwise overlaps {overlaps}")
    assert personalization >= s.monitoring.personalization_min
