"""``./recomart rollback`` end to end: two real generations from two registered champions, then back.

Marts of planted tastes in this module's warehouse; round 1 trains on a third of the users (the
first champion), round 2 on everyone (promoted over it, as in test_promotion_gate); the nightly job
publishes after each.  The rollback must restore generation 1's rows in all three tables, mark it
live again in ``reco.generations``, move ``@champion`` back to version 1 and leave ``ops.rollbacks``
rows; a second rollback without a newer publish is refused and changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
import redis
from test_reco_writer import copy_frame  # tests/integration is on sys.path (rootdir import mode)
from test_served_model import _MARTS_DDL, _products, _rating_rows
from test_train import planted_ratings

from recomart.config import Settings
from recomart.model.config import TrainingConfig
from recomart.model.promotion import train_and_gate
from recomart.model.promotion_log import record_promotion
from recomart.model.registry import current_champion_version
from recomart.operations.rollback import RollbackRefused, rollback
from recomart.recommend.cache import cache_layout
from recomart.tasks.recommend import publish_recommendations

pytestmark = pytest.mark.integration

FAST = {"max_trials": 2, "tuning_budget_s": 30.0}
TINY_VALIDATION = {"valid_fraction": 0.02, "test_fraction": 0.2}
TABLES = {
    "user_recommendations": "user_id, rank",
    "similar_items": "item_id, kind, rank",
    "popular_items": "segment, rank",
}


def _snapshot(dsn: str, suffix: str = "") -> dict[str, list[tuple]]:
    with psycopg.connect(dsn) as conn:
        return {
            name: conn.execute(f"select * from reco.{name}{suffix} order by {order}").fetchall()
            for name, order in TABLES.items()
        }


def _train(s: Settings, ratings, config: TrainingConfig) -> str:
    outcome = train_and_gate(
        ratings,
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        artifact_dir=s.mlflow_artifacts_dir,
        config=config,
        feature_service="recommender_v1",
    )
    record_promotion(s.warehouse_url, outcome.summary(s.model_name))
    assert outcome.registered.promoted, outcome.registered.reason
    return outcome.registered.version


def _publish(s: Settings, force: bool = False) -> dict:
    """The recommend DAG's task: the swap, then the Redis copy the API serves from."""
    return publish_recommendations(s, s.warehouse_url, force=force)


def _redis_live(s: Settings) -> int:
    client = redis.Redis.from_url(s.redis_url)
    try:
        return int(client.get(cache_layout(s.db_prefix).live))
    finally:
        client.close()


@pytest.fixture(scope="module")
def published(test_settings: Settings) -> dict:
    """Two champions and two generations; the tables of generation 1 as it was served."""
    s = test_settings
    ratings = planted_ratings()
    as_of = ratings["event_timestamp"].max()
    users = sorted(ratings["user_id"].unique())
    with psycopg.connect(s.warehouse_url) as conn:
        # the warehouse's marts schema exists already (the reader's grants create it)
        conn.execute(_MARTS_DDL.replace("CREATE SCHEMA marts;", "CREATE SCHEMA IF NOT EXISTS marts;"))
        copy_frame(conn, "marts.dim_products", _products(sorted(ratings["item_id"].unique())))
        segments = [("vip" if n % 3 == 0 else "regular") for n in range(len(users))]
        conn.execute(
            "insert into marts.user_features select unnest(%s::text[]), unnest(%s::text[]), %s",
            (users, segments, as_of),
        )
        copy_frame(conn, "marts.user_item_ratings", _rating_rows(ratings, as_of))
    v1 = _train(s, ratings[ratings.user_id < "u0100"], TrainingConfig(**FAST, split_options=TINY_VALIDATION))
    first = _publish(s)
    served_first = _snapshot(s.warehouse_url)
    v2 = _train(s, ratings, TrainingConfig(**FAST))
    second = _publish(s)
    return {"v1": v1, "v2": v2, "first": first, "second": second, "served_first": served_first}


def _generations(dsn: str) -> dict[int, tuple[str, bool]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select generation_id, status, is_live from reco.generations").fetchall()
    return {g: (status, live) for g, status, live in rows}


def test_rollback_restores_the_previous_generation_and_champion(published, test_settings: Settings) -> None:
    s, first, second = test_settings, published["first"], published["second"]
    assert published["v2"] != published["v1"] and first["model_version"] == published["v1"]
    served_second = _snapshot(s.warehouse_url)
    assert served_second != published["served_first"]
    assert _redis_live(s) == second["generation_id"]

    result = rollback(
        s.warehouse_url,
        performed_by="tester",
        reason="bad generation",
        model=True,
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        redis_url=s.redis_url,
        db_prefix=s.db_prefix,
        log=lambda _: None,
    )

    assert (result.from_generation, result.to_generation) == (second["generation_id"], first["generation_id"])
    assert _redis_live(s) == first["generation_id"] == result.cache["generation_id"]
    assert _snapshot(s.warehouse_url) == published["served_first"]
    assert _snapshot(s.warehouse_url, "_previous") == served_second
    generations = _generations(s.warehouse_url)
    assert generations[first["generation_id"]] == ("live", True)
    assert generations[second["generation_id"]] == ("rolled_back", False)
    assert current_champion_version(s.mlflow_tracking_uri, s.model_name) == published["v1"]
    with psycopg.connect(s.warehouse_url) as conn:
        audit = conn.execute(
            "select kind, performed_by, reason, from_generation, to_generation, model_name, from_version, to_version"
            " from ops.rollbacks order by rollback_id"
        ).fetchall()
        enriched = conn.execute(
            "select count(*), min(generation_id) from reco.user_recommendations_enriched"
        ).fetchone()
        granted = conn.execute(
            "select has_table_privilege('recomart_reader', 'reco.user_recommendations', 'select')"
        ).fetchone()[0]
        details = conn.execute(
            "select details -> 'restored' ->> 'rollback_id' from reco.generations where generation_id = %s",
            (first["generation_id"],),
        ).fetchone()[0]
    assert audit == [
        ("generation", "tester", "bad generation", second["generation_id"], first["generation_id"], None, None, None),
        ("model", "tester", "bad generation", None, None, s.model_name, published["v2"], published["v1"]),
    ]
    assert details == str(result.rollback_id)
    assert enriched == (len(published["served_first"]["user_recommendations"]), first["generation_id"])
    assert granted


def test_a_second_rollback_without_a_newer_publish_is_refused(published, test_settings: Settings, tool_env) -> None:
    s = test_settings
    before = (_snapshot(s.warehouse_url), _generations(s.warehouse_url))
    with pytest.raises(RollbackRefused, match="second rollback would serve it again"):
        rollback(s.warehouse_url, performed_by="tester", log=lambda _: None)
    cli = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "rollback", "--reason", "again"],
        env={**os.environ, **tool_env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "rollback refused" in cli.stderr and "Publish a new generation" in cli.stderr
    assert (_snapshot(s.warehouse_url), _generations(s.warehouse_url)) == before


def test_after_a_newer_publish_the_rollback_is_allowed_but_not_a_second_model_rollback(
    published, test_settings: Settings
) -> None:
    s = test_settings
    # ranked by the restored champion v1; forced, as the restored generation already has v1 and these marts
    third = _publish(s, force=True)
    assert third["model_version"] == published["v1"]
    with pytest.raises(RollbackRefused, match="no model was promoted since"):
        rollback(
            s.warehouse_url,
            performed_by="tester",
            model=True,
            tracking_uri=s.mlflow_tracking_uri,
            model_name=s.model_name,
            log=lambda _: None,
        )
    assert _generations(s.warehouse_url)[third["generation_id"]] == ("live", True)  # refused before any swap
    result = rollback(s.warehouse_url, performed_by="tester", log=lambda _: None)
    assert (result.from_generation, result.to_generation) == (
        third["generation_id"],
        published["first"]["generation_id"],
    )
    assert _snapshot(s.warehouse_url) == published["served_first"]
