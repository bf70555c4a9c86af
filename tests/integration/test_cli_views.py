"""``./recomart recommend user`` and ``./recomart status`` against a warehouse with a published generation.

The generation is ranked by the real ``HybridRecommender`` and published by the nightly code, as in
test_serving (its ``_marts`` and ``publish``); a model version is registered in MLflow's registry and
made ``@champion`` (a placeholder artifact: only the alias is read here). The commands run as a user
runs them, in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest
from test_serving import USERS, _marts, live_lists, publish  # tests/integration is on sys.path

from recomart.config import Settings
from recomart.environment import service_env
from recomart.model.registry import _client, set_champion
from recomart.recommend.cache import OVERALL_SEGMENT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def published(test_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    s = test_settings
    _marts(s.warehouse_url)
    generation_id = publish(s, seed=3)
    client = _client(s.mlflow_tracking_uri)
    client.create_registered_model(s.model_name)
    source = tmp_path_factory.mktemp("placeholder-model")
    version = client.create_model_version(s.model_name, source=str(source), run_id=None).version
    set_champion(s.mlflow_tracking_uri, s.model_name, version)
    return {"generation_id": generation_id, "version": str(version)}


def _recomart(s: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **service_env(s), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "recomart.cli", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_recommend_user_shows_the_live_list_with_reasons(published: dict, test_settings: Settings) -> None:
    user = USERS[0]
    generation_id, expected = live_lists(test_settings, user)
    assert generation_id == published["generation_id"]

    as_json = _recomart(test_settings, "recommend", "user", user, "--json")
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["generation_id"] == generation_id and body["strategy"] != "popular_cold_start"
    assert [item["item_id"] for item in body["items"]] == expected
    assert all(item["reasons"] for item in body["items"]), "every item says why"

    table = _recomart(test_settings, "recommend", "user", user)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"user {user}: generation {generation_id}, strategy {body['strategy']}")
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == len(expected)
    for rank, (row, item_id) in enumerate(zip(rows, expected, strict=True), 1):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[:2] == [str(rank), item_id]
        assert cells[-1] != "-" and any(name in cells[-1] for name in body["items"][0]["reasons"])


def test_an_unknown_user_gets_the_labelled_cold_start_list(published: dict, test_settings: Settings) -> None:
    result = _recomart(test_settings, "recommend", "user", "nobody-like-this", "-k", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"user nobody-like-this is not in generation {published['generation_id']}: cold-start list "
        "(popular_cold_start, segment: all users)"
    )
    with psycopg.connect(test_settings.warehouse_url) as conn:
        query = "select item_id from reco.popular_items where segment = %s order by rank limit 5"
        popular = [r[0] for r in conn.execute(query, (OVERALL_SEGMENT,))]
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [[c.strip() for c in row.strip("│").split("│")][1] for row in rows] == popular


def test_status_shows_processes_services_generation_and_champion(published: dict, test_settings: Settings) -> None:
    result = _recomart(test_settings, "status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for name in ("airflow-api-server", "airflow-scheduler", "mlflow-ui", "catalog-api", "api"):
        assert f"│ {name} " in out
    assert "│ Postgres │ up (" in out and "│ Redis    │ up" in out
    assert (
        f"Last run per DAG: unknown: the Airflow api-server does not answer at http://127.0.0.1:{test_settings.airflow_port}"
        in out
    )
    assert "│ live generation " in out and f"{published['generation_id']} (model none, built 20" in out
    assert f"│ {test_settings.model_name}@champion │ v{published['version']} " in out
