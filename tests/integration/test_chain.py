"""The whole chain in a real Airflow (`airflow dags test`), on a small generated shop, run twice.

ingest_catalog -> ingest_events -> transform (dbt build, feast apply, materialize) -> train -> recommend,
against this module's private databases and Feast project (Redis key prefix).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import psycopg
import pytest

from recomart import processes
from recomart.checksums import EXCLUDED_TABLES, RUN_METADATA_COLUMNS, table_checksums
from recomart.config import Settings
from recomart.datasets.generator import generate
from recomart.demo import run_chain
from recomart.reader_access import READER_ROLE, reader_url
from recomart.stack import start_catalog_api
from recomart.tools import airflow_migrate

pytestmark = pytest.mark.integration


def _csv_records(path: Path) -> int:
    with path.open(newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


@pytest.fixture(scope="module")
def chain(test_settings: Settings):
    """Generate a small shop, run the five DAGs once, and hand over the settings and first checksums."""
    s = test_settings
    summary = generate(s.landing_dir / "generated", users=500, items=150, days=21, seed=11)
    airflow_migrate(s)
    start_catalog_api(s)
    try:
        timings = run_chain(s)
        yield s, summary, table_checksums(s.warehouse_url), timings
    finally:
        processes.stop(s, "catalog-api")


def _scalar(dsn: str, query: str, params: tuple = ()):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()[0]


def test_raw_row_counts_match_the_files_counted_independently(chain) -> None:
    s, summary, _, _ = chain
    landing = s.landing_dir / "generated"
    events_in_files = sum(_csv_records(p) for p in (landing / "events").glob("*.csv"))
    assert events_in_files == summary.events
    assert _scalar(s.warehouse_url, "select count(*) from raw.events") == events_in_files
    assert _scalar(s.warehouse_url, "select count(*) from quarantine.events") == 0
    assert _scalar(s.warehouse_url, "select count(*) from raw.users") == _csv_records(landing / "users.csv")
    assert _scalar(s.warehouse_url, "select count(*) from raw.products") == _csv_records(landing / "products.csv")


def test_every_known_user_gets_ten_recommendations_never_an_item_they_bought(chain) -> None:
    s, _, _, _ = chain
    with psycopg.connect(s.warehouse_url) as conn:
        users_without_ten = conn.execute(
            "select count(*) from marts.user_features u left join "
            "(select user_id, count(*) n from reco.user_recommendations group by user_id) r using (user_id) "
            "where coalesce(r.n, 0) <> 10"
        ).fetchone()[0]
        bought_again = conn.execute(
            "select count(*) from reco.user_recommendations r join raw.events e "
            "on e.user_id = r.user_id and e.item_id = r.item_id and e.event_type = 'purchase'"
        ).fetchone()[0]
        strategies = dict(
            conn.execute("select strategy, count(*) from reco.user_recommendations group by strategy").fetchall()
        )
        enriched = conn.execute("select count(*), count(title) from reco.user_recommendations_enriched").fetchone()
        # the blend's lists are labelled hybrid, the learned ranker's ranker: whichever validation chose
        [chosen] = conn.execute(
            "select blend->>'strategy' from ops.model_promotions where decision = 'promoted'"
            " order by decided_at desc limit 1"
        ).fetchone()
    assert users_without_ten == 0
    assert bought_again == 0
    assert strategies.get({"blend": "hybrid"}.get(chosen, chosen), 0) > 0, (chosen, strategies)
    assert enriched[0] == enriched[1] > 0  # every recommended item has a product title


def test_model_is_registered_as_champion_and_beats_popularity(chain) -> None:
    from mlflow import MlflowClient

    s, _, _, timings = chain
    version = MlflowClient(s.mlflow_tracking_uri, s.mlflow_tracking_uri).get_model_version_by_alias(
        s.model_name, "champion"
    )
    assert str(version.version) == "1"
    # the version names the DAG run that trained it, and the inputs it was trained on
    assert version.tags["airflow_run_id"] == timings.runs["train"]["run_id"]
    assert len(version.tags["inputs_digest"]) == 64
    # the DAG's mapped trials logged one nested run each under the run the version was logged into
    client = MlflowClient(s.mlflow_tracking_uri, s.mlflow_tracking_uri)
    parent = client.get_run(version.run_id)
    trials = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{version.run_id}'")
    assert sorted(int(run.data.tags["trial_index"]) for run in trials) == list(range(6))
    assert parent.data.params["tuning_trials"] == "6"
    with psycopg.connect(s.warehouse_url) as conn:
        decision, metrics = conn.execute(
            "select decision, metrics from ops.model_promotions order by decided_at desc limit 1"
        ).fetchone()
    assert decision == "promoted"
    assert metrics["model"]["ndcg_at_10"] > metrics["popularity"]["ndcg_at_10"]
    with psycopg.connect(s.warehouse_url) as conn:
        served = conn.execute("select distinct model_version from reco.user_recommendations").fetchall()
    assert served == [("1",)]


def test_feast_online_lookup_equals_the_latest_history_row(chain) -> None:
    """The online store holds each user's latest row of the feature history (Feast's offline source)."""
    from recomart.features import online_features
    from recomart.tools import tool_env

    s, _, _, _ = chain
    with psycopg.connect(s.warehouse_url) as conn:
        cur = conn.execute(
            "select * from marts.user_features_history where user_id = (select min(user_id) from marts.user_features)"
            " order by event_timestamp desc limit 1"
        )
        row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
    online = online_features(s.feature_repo_dir, tool_env(s), "user", row["user_id"])
    assert online["found"]
    assert online["event_timestamp"] == row["event_timestamp"]
    for name, value in online["features"].items():
        expected = row[name]
        if isinstance(expected, float) or isinstance(value, float):
            assert value == pytest.approx(float(expected)), name
        else:
            assert value == expected, name


def test_second_full_run_on_unchanged_data_registers_and_publishes_nothing(chain) -> None:
    """Re-running the unchanged ingest and the whole chain: ingest loads nothing new, transform rebuilds
    the same marts, train finds the inputs of version 1 (no new version), recommend finds the live
    generation ranked with that version from the same marts (no new generation)."""
    from mlflow import MlflowClient

    from recomart.report import own_decision

    s, _, first, _ = chain
    generations = _scalar(s.warehouse_url, "select count(*) from reco.generations")
    second_run = run_chain(s)
    second = table_checksums(s.warehouse_url)
    assert set(second) == set(first)
    changed = {name: (first[name], second[name]) for name in first if first[name] != second[name]}
    assert not changed, f"tables whose business columns changed on a re-run: {changed}"
    assert {"reco.generations", "ops.model_promotions"} == EXCLUDED_TABLES
    assert "generation_id" in RUN_METADATA_COLUMNS["reco.user_recommendations"]
    # the ingests emitted no asset event (nothing was queued for transform), train emitted none either
    assert chain[3].runs["transform"]["consumed_events"] == 2  # first run: products and events
    assert second_run.runs["transform"]["consumed_events"] == 0
    assert second_run.runs["recommend"]["consumed_events"] == 0
    # no new model version, no new decision, no new generation
    client = MlflowClient(s.mlflow_tracking_uri, s.mlflow_tracking_uri)
    assert [str(v.version) for v in client.search_model_versions(f"name = '{s.model_name}'")] == ["1"]
    assert _scalar(s.warehouse_url, "select count(*) from ops.model_promotions") == 1
    assert _scalar(s.warehouse_url, "select count(*) from reco.generations") == generations
    assert _scalar(s.warehouse_url, "select count(*) from reco.generations where status = 'live'") == 1
    # the report says the second run's train registered nothing, and why
    decision, heading = own_decision(s.warehouse_url, second_run.runs["train"]["run_id"])
    assert decision is not None and decision["version"] == "1"
    assert "registered no version: inputs unchanged since version 1" in heading


def _readme_sql_queries() -> list[str]:
    """Every statement of the README's ```sql blocks (``--`` comments removed: they may contain ``;``)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = "".join(re.sub(r"--[^\n]*", "", block) for block in re.findall(r"```sql\n(.*?)```", readme, re.S))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


def test_every_readme_query_runs_as_the_reader_role_which_cannot_read_raw(chain) -> None:
    """After two full runs (dbt rebuilt the marts twice; the second had nothing new to publish) the analysts' role still
    reads everything the README queries, with its own login, and nothing in raw or quarantine."""
    s, _, _, _ = chain
    queries = _readme_sql_queries()
    assert len(queries) >= 6
    with psycopg.connect(reader_url(s), autocommit=True) as conn:
        assert conn.execute("select current_user").fetchone()[0] == READER_ROLE
        for query in queries:
            conn.execute(query).fetchall()
        for table in ("raw.events", "raw.products", "quarantine.events", "staging.stg_shop__events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select 1 from {table} limit 1")
