"""The recommend DAG fanned out (`prepare` -> `rank_shard` mapped -> `publish`, `discard_unpublished`
teardown), in a real Airflow (`dag.test()` through :mod:`recomart.airflow_runner`) on a small generated shop.

- A 3-shard run publishes the same rows as a 1-shard run and as the single-process run
  (:func:`recomart.recommend.run.generate_recommendations`): business checksums of
  ``reco.user_recommendations``.
- A shard whose first attempt fails (a real error from Postgres: a row trigger on the generation's
  table raising once) is retried by Airflow and the generation has no duplicate; a shard run twice
  after its first attempt committed (a worker lost after the commit) replaces its rows.
- A shard that fails on every attempt leaves the previous generation live, its own marked failed and
  its tables dropped.

The two tests that wait for Airflow's retries are ``slow``; the CI run keeps the checksum test and the
retry of a shard whose rows were committed.
"""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from psycopg import sql

from recomart import processes
from recomart.chain_progress import run_dags_with_progress
from recomart.checksums import table_checksums
from recomart.config import Settings
from recomart.datasets.generator import generate
from recomart.demo import run_chain
from recomart.recommend.run import generate_recommendations
from recomart.recommend.shards import begin_sharded_generation, publish_sharded_generation, rank_shard
from recomart.stack import start_catalog_api
from recomart.tasks.common import store_features_at
from recomart.tools import ToolError, airflow_migrate

pytestmark = pytest.mark.integration

RECS = "reco.user_recommendations"

# A row trigger on every table a sharded run creates for its recommendations, raising on the row of
# one user while a sequence is below a limit: that shard's COPY fails (rolled back) on its first
# ``limit`` attempts.  Event triggers need a superuser, as the test server's role is.
_FAULT_SQL = """
create sequence public.shard_fault_attempts;
create function public.shard_fault() returns trigger language plpgsql as $$
begin
    if NEW.user_id = {user} then
        if nextval('public.shard_fault_attempts') <= {limit} then
            raise exception 'injected fault: COPY of user % refused', NEW.user_id;
        end if;
    end if;
    return NEW;
end $$;
create function public.attach_shard_fault() returns event_trigger language plpgsql as $$
declare obj record;
begin
    for obj in select * from pg_event_trigger_ddl_commands() loop
        if obj.object_identity like 'reco.user\\_recommendations\\_\\_g%' then
            execute format('create trigger shard_fault before insert on %s for each row'
                           ' execute function public.shard_fault()', obj.object_identity);
        end if;
    end loop;
end $$;
create event trigger shard_fault on ddl_command_end when tag in ('CREATE TABLE')
    execute function public.attach_shard_fault();
"""
_NO_FAULT_SQL = """
drop event trigger if exists shard_fault;
drop function if exists public.attach_shard_fault();
drop function if exists public.shard_fault() cascade;
drop sequence if exists public.shard_fault_attempts;
"""


def _scalar(dsn: str, query: str, params: tuple | None = None):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()[0]


def _recommend(s: Settings, shards: int) -> None:
    """One forced run of the recommend DAG with ``shards`` shard tasks."""
    run_dags_with_progress(
        dataclasses.replace(s, recommend_shards=shards), [{"dag_id": "recommend", "conf": {"force": True}}]
    )


def _live(dsn: str) -> tuple[int, dict]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select generation_id, details from reco.generations where is_live").fetchone()


@pytest.fixture(scope="module")
def shop(test_settings: Settings):
    """A small shop through the whole chain (its recommend run with 3 shards): settings and checksum."""
    s = dataclasses.replace(test_settings, recommend_shards=3)
    generate(s.landing_dir / "generated", users=400, items=120, days=14, seed=5)
    airflow_migrate(s)
    start_catalog_api(s)
    try:
        run_chain(s)
        yield s, table_checksums(s.warehouse_url)[RECS]
    finally:
        processes.stop(s, "catalog-api")


@pytest.fixture
def fault(shop):
    """Install the fault for a user of the middle shard: ``fault(limit)``; removed after the test."""
    s, _ = shop

    def install(limit: int) -> str:
        user = _scalar(
            s.warehouse_url,
            'select user_id from reco.user_recommendations order by user_id collate "C" limit 1 offset 200',
        )
        with psycopg.connect(s.warehouse_url, autocommit=True) as conn:
            conn.execute(sql.SQL(_FAULT_SQL).format(user=sql.Literal(user), limit=sql.Literal(limit)))
        return user

    yield install
    with psycopg.connect(s.warehouse_url, autocommit=True) as conn:
        conn.execute(_NO_FAULT_SQL)


def _store_features(s: Settings):
    """The feature-store reader the recommend tasks give a champion that ranks through the learned ranker."""
    return lambda service: store_features_at(s, service)


def test_three_shards_publish_the_rows_of_one_shard_and_of_the_single_task(shop) -> None:
    s, sharded = shop
    first, details = _live(s.warehouse_url)
    assert details["shards"] == 3 and details["weights_source"] == "champion"
    assert _scalar(s.warehouse_url, "select count(distinct user_id) from reco.user_recommendations") > 300
    _recommend(s, 1)
    one, details = _live(s.warehouse_url)
    assert one > first and details["shards"] == 1
    assert table_checksums(s.warehouse_url)[RECS] == sharded
    single = generate_recommendations(
        s.warehouse_url,
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        log=lambda _: None,
        store_features=_store_features(s),
    )
    assert single.generation_id > one
    assert table_checksums(s.warehouse_url)[RECS] == sharded
    # no generation table is left behind, and every generation of these runs is live or superseded
    leftovers = _scalar(
        s.warehouse_url, "select count(*) from pg_tables where schemaname = 'reco' and tablename like '%\\_\\_g%'"
    )
    assert leftovers == 0
    assert (
        _scalar(s.warehouse_url, "select count(*) from reco.generations where status not in ('live', 'superseded')")
        == 0
    )


@pytest.mark.slow  # 82 s: Airflow's retry delay and a second try of the shard
def test_a_shard_retried_by_airflow_leaves_no_duplicate(shop, fault) -> None:
    s, sharded = shop
    user = fault(limit=1)
    before, _ = _live(s.warehouse_url)
    _recommend(s, 3)
    after, _ = _live(s.warehouse_url)
    assert after > before
    rows = _scalar(s.warehouse_url, "select count(*) from reco.user_recommendations where user_id = %s", (user,))
    # the first attempt refused the user's first row; the retry loaded all of them; then this call
    assert _scalar(s.warehouse_url, "select nextval('public.shard_fault_attempts')") == 1 + rows + 1
    duplicates = _scalar(
        s.warehouse_url,
        "select count(*) from (select 1 from reco.user_recommendations group by user_id, rank having count(*) > 1) d",
    )
    assert duplicates == 0
    assert table_checksums(s.warehouse_url)[RECS] == sharded


def test_a_shard_run_again_after_its_rows_were_committed_replaces_them(shop) -> None:
    """The worker of a shard is lost after its COPY committed (Airflow never heard of it): the retry
    deletes that attempt's rows before loading its own."""
    s, sharded = shop
    options = {
        "tracking_uri": s.mlflow_tracking_uri,
        "model_name": s.model_name,
        "log": lambda _: None,
        "store_features": _store_features(s),
    }
    shards = begin_sharded_generation(s.warehouse_url, 2, tracking_uri=s.mlflow_tracking_uri, model_name=s.model_name)
    first = rank_shard(s.warehouse_url, shards[0], **options)
    again = rank_shard(s.warehouse_url, shards[0], **options)
    other = rank_shard(s.warehouse_url, shards[1], **options)
    assert first["rows"] == again["rows"] > 0
    table = f"reco.user_recommendations__g{shards[0].generation_id}"
    assert _scalar(s.warehouse_url, f"select count(*) from {table}") == again["rows"] + other["rows"]
    publish_sharded_generation(s.warehouse_url, shards, log=lambda _: None)
    assert table_checksums(s.warehouse_url)[RECS] == sharded


@pytest.mark.slow  # 110 s: three tries of the shard with their retry delays
def test_a_failed_shard_publishes_nothing_and_the_previous_generation_stays_live(shop, fault) -> None:
    s, sharded = shop
    fault(limit=1000)
    before, _ = _live(s.warehouse_url)
    with pytest.raises(ToolError, match="recommend"):
        _recommend(s, 3)
    assert _live(s.warehouse_url)[0] == before
    assert table_checksums(s.warehouse_url)[RECS] == sharded
    status, error = _scalar(
        s.warehouse_url,
        "select array[status, details->>'error'] from reco.generations order by generation_id desc limit 1",
    )
    assert status == "failed" and "not published" in error
    leftovers = _scalar(
        s.warehouse_url, "select count(*) from pg_tables where schemaname = 'reco' and tablename like '%\\_\\_g%'"
    )
    assert leftovers == 0
