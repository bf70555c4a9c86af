"""``./recomart forget user <id>`` end to end, on a warehouse built by the DAGs' task functions.

A small generated shop goes through the chain without Airflow (catalogue, events and users loaded,
dbt build, feast apply and materialize, training, two nightly publishes), with one malformed record of
the user in a landing file (quarantined) and one of a user whose id merely contains theirs.  After the
command (run as a subprocess, as a user would) the user must be gone from raw, quarantine, every mart
and the feature history, the Feast online store, ``reco.*`` and ``reco.*_previous``; the model version
holding their factors is tagged and listed; the audit row counts every place without the id.  Then an
old date's file is delivered again and the warehouse rebuilt and retrained: the user stays out, and
the load counts the records it left out.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from mlflow import MlflowClient

from recomart import processes
from recomart.config import Settings
from recomart.credentials import secrets_dir
from recomart.datasets.generator import generate
from recomart.features import online_features
from recomart.ingest.erasure import ErasureKeyError, key_id, read_erasure_key, user_key
from recomart.ingest.feeds import GENERATED_EVENTS
from recomart.ingest.load import load_feed_date
from recomart.model.registry import versions_holding_users
from recomart.recommend.cache import cache_layout
from recomart.stack import start_catalog_api
from recomart.tasks.ingest_catalog import ingest_catalog_snapshot
from recomart.tasks.ingest_events import ingest_landing_files
from recomart.tasks.recommend import publish_recommendations
from recomart.tasks.train import train_and_register
from recomart.tasks.transform import apply_feature_repo, build_warehouse_models, materialize_features

pytestmark = pytest.mark.integration

DAYS = 14


def _busiest_users(paths: list[Path]) -> list[str]:
    counts: Counter[str] = Counter()
    for path in paths:
        with path.open(newline="") as handle:
            counts.update(row["user_id"] for row in csv.DictReader(handle))
    return [user for user, _ in counts.most_common()]


def _records_of(path: Path, user: str, position: int) -> int:
    with path.open(newline="") as handle:
        return sum(1 for row in csv.reader(handle) if len(row) > position and row[position] == user)


def _rebuild(s: Settings, dsn: str) -> None:
    build_warehouse_models(s)
    apply_feature_repo(s)
    materialize_features(s, dsn, [])


def _user_rows(dsn: str, user: str, kind: str = "BASE TABLE") -> dict[str, int]:
    """Rows of ``user`` per relation of raw, the dbt schemas and reco with a ``user_id`` column (base
    tables, or ``kind="VIEW"``), and their quarantined records (by the record's user field)."""
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "select c.table_schema, c.table_name from information_schema.columns c"
            " join information_schema.tables t using (table_schema, table_name)"
            " where c.column_name = 'user_id' and t.table_type = %s"
            " and c.table_schema in ('raw', 'marts', 'intermediate', 'snapshots', 'reco', 'staging') order by 1, 2",
            (kind,),
        ).fetchall()
        counts = {
            f"{schema}.{table}": conn.execute(
                f'select count(*) from "{schema}"."{table}" where user_id = %s', (user,)
            ).fetchone()[0]
            for schema, table in tables
        }
        counts["quarantine.events"] = conn.execute(
            "select count(*) from quarantine.events where split_part(raw_record, ',', 3) = %s", (user,)
        ).fetchone()[0]
    return counts


def _cached_lists(s: Settings, user: str) -> int:
    """The user's lists in the Redis copy the API serves from (every generation kept there)."""
    client = redis.Redis.from_url(s.redis_url)
    try:
        return sum(1 for _ in client.scan_iter(match=f"{cache_layout(s.db_prefix).namespace}:g:*:u:{user}"))
    finally:
        client.close()


@pytest.fixture(scope="module")
def world(test_settings: Settings, tool_env: dict[str, str]) -> dict:
    s, dsn = test_settings, test_settings.warehouse_url
    summary = generate(s.landing_dir / "generated", users=300, items=80, days=DAYS, seed=5)
    days = [summary.start_date + timedelta(days=n) for n in range(DAYS)]
    events_dir = s.landing_dir / "generated" / "events"
    user = _busiest_users(sorted(events_dir.glob("*.csv")))[0]
    lookalike = user + "9"  # contains the user's id: its records must survive
    first_file = events_dir / f"{days[0]:%Y-%m-%d}.csv"
    with first_file.open("a") as handle:  # quarantined: no such event type
        handle.write(f"bad-1,{days[0]} 10:00:00,{user},P00001,teleport,1,1.00\n")
        handle.write(f"bad-2,{days[0]} 10:00:00,{lookalike},P00001,teleport,1,1.00\n")
    start_catalog_api(s)
    try:
        ingest_catalog_snapshot(dsn, s.catalog_api_url, full_refresh=True)
    finally:
        processes.stop(s, "catalog-api")
    ingest_landing_files(dsn, s, days)
    _rebuild(s, dsn)
    trained = train_and_register(s, dsn)
    publish_recommendations(s, dsn)
    publish_recommendations(s, dsn, force=True)  # unchanged inputs: forced, so the user is in reco.*_previous too
    before = _user_rows(dsn, user)
    cached_before = _cached_lists(s, user)
    online_before = online_features(s.feature_repo_dir, tool_env, "user", user)
    forget = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "forget", "user", user, "--reason", "ticket 42"],
        env=tool_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert forget.returncode == 0, forget.stdout + forget.stderr
    return {
        "user": user,
        "lookalike": lookalike,
        "days": days,
        "first_file": first_file,
        "version": trained["model_version"],
        "before": before,
        "online_before": online_before,
        "cached_before": cached_before,
        "stdout": forget.stdout,
    }


def test_the_user_was_everywhere_before(world) -> None:
    before = world["before"]
    for place in (
        "raw.events",
        "raw.users",
        "quarantine.events",
        "marts.user_features",
        "marts.user_features_history",
        "marts.user_item_ratings",
        "reco.user_recommendations",
        "reco.user_recommendations_previous",
    ):
        assert before.get(place, 0) > 0, place
    assert world["online_before"]["found"]
    assert world["cached_before"] == 2  # the live and the previous generation


def test_forget_removes_the_user_everywhere(world, test_settings: Settings, tool_env) -> None:
    s, user = test_settings, world["user"]
    after = _user_rows(s.warehouse_url, user)
    assert after == dict.fromkeys(after, 0)
    views = _user_rows(s.warehouse_url, user, "VIEW")
    assert "marts.user_item_events" in views and "intermediate.int_users" in views
    assert views == dict.fromkeys(views, 0)
    with psycopg.connect(s.warehouse_url) as conn:
        lookalike = conn.execute(
            "select count(*) from quarantine.events where raw_record like %s", (f"%,{world['lookalike']},%",)
        ).fetchone()[0]
        assert (
            conn.execute("select count(*) from marts.user_item_events where user_id = %s", (user,)).fetchone()[0] == 0
        )
        others = conn.execute("select count(*) from reco.user_recommendations").fetchone()[0]
    assert lookalike == 1, "a record of a user whose id merely contains the erased one was deleted"
    assert others > 0
    online = online_features(s.feature_repo_dir, tool_env, "user", user)
    assert (online["found"], online["freshness"]) == (False, "missing")
    assert _cached_lists(s, user) == 0


def test_the_audit_row_counts_every_place_and_keeps_no_id(world, test_settings: Settings) -> None:
    s, user, before = test_settings, world["user"], world["before"]
    with psycopg.connect(s.warehouse_url) as conn:
        row = conn.execute(
            "select status, requested_by, reason, counts, finished_at is not null, to_jsonb(e)::text"
            " from ops.erasures e"
        ).fetchone()
        erased_users = conn.execute("select count(*), string_agg(user_key, ',') from ops.erased_users").fetchone()
        marked = conn.execute("select model_name, model_version from ops.erased_model_versions").fetchall()
    status, requested_by, reason, counts, finished, text = row
    assert (status, reason, finished) == ("completed", "ticket 42", True) and requested_by
    for place, count in before.items():
        if count:
            assert counts[place] == count, place
    assert counts["online_store.user_keys"] == 1 and counts["model_versions"] == 1
    # the item history's carried counts held the user: rewound to before their first day
    assert counts["marts.item_features_history (rewound)"] > 0
    assert counts["redis.reco_cache_keys"] == world["cached_before"]
    assert user not in text and user not in erased_users[1]
    assert erased_users[0] >= 1
    assert marked == [(s.model_name, world["version"])]
    tags = (
        MlflowClient(s.mlflow_tracking_uri, s.mlflow_tracking_uri)
        .get_model_version(s.model_name, world["version"])
        .tags
    )
    assert tags["erased_user_data"] == "1"
    assert "erasure 1" in world["stdout"] and "raw.events" in world["stdout"]


def test_a_reloaded_old_date_and_the_next_training_keep_the_user_out(world, test_settings: Settings) -> None:
    s, dsn, user, day = test_settings, test_settings.warehouse_url, world["user"], world["days"][0]
    expected = _records_of(world["first_file"], user, 2)  # their events of that day and the quarantined one
    in_users_file = _records_of(s.landing_dir / "generated" / "users.csv", user, 0)  # the snapshot loads too
    with world["first_file"].open("a") as handle:  # re-delivered with one more record: loaded again
        handle.write(f"late-1,{day} 23:00:00,{world['lookalike']},P00001,view,1,1.00\n")
    totals = ingest_landing_files(dsn, s, [day])
    assert totals["records_erased"] == expected + in_users_file and in_users_file == 1
    with psycopg.connect(dsn) as conn:
        ledger = conn.execute(
            "select records_read, records_loaded, records_rejected, records_erased from ops.loaded_files"
            " where feed = 'generated_events' and logical_date = %s and is_live",
            (day,),
        ).fetchone()
    read, loaded, rejected, erased = ledger
    assert erased == expected and read == loaded + rejected + erased
    _rebuild(s, dsn)
    retrained = train_and_register(s, dsn)
    publish_recommendations(s, dsn)
    after = _user_rows(dsn, user)
    assert after == dict.fromkeys(after, 0)
    assert _cached_lists(s, user) == 0
    assert versions_holding_users(s.mlflow_tracking_uri, s.model_name, {user}) == [world["version"]]
    assert retrained["model_version"] != world["version"]


def test_a_load_without_the_erasure_key_refuses_rather_than_reload_the_user(world, test_settings: Settings) -> None:
    s, day = test_settings, world["days"][1]
    with pytest.raises(ErasureKeyError, match="has no erasure key"):
        load_feed_date(s.warehouse_url, GENERATED_EVENTS, s.landing_dir, day)
    with pytest.raises(ErasureKeyError, match="another erasure key"):
        load_feed_date(s.warehouse_url, GENERATED_EVENTS, s.landing_dir, day, erasure_key=bytes(32))


def test_a_load_meeting_a_newer_erasure_prepares_its_file_again(world, test_settings: Settings) -> None:
    """An erasure committed while a load is in flight: the load read the list before, waits at its
    commit for the erasure, sees the list changed and leaves the newly erased user out too."""
    s, dsn, day = test_settings, test_settings.warehouse_url, world["days"][2]
    path = s.landing_dir / "generated" / "events" / f"{day:%Y-%m-%d}.csv"
    other = next(u for u in _busiest_users([path]) if u != world["user"])
    expected = _records_of(path, other, 2) + _records_of(path, world["user"], 2)  # both are erased now
    with path.open("a") as handle:  # re-delivered, so it is loaded again
        handle.write(f"late-2,{day} 23:00:00,{world['lookalike']},P00001,view,1,1.00\n")
    key = read_erasure_key(secrets_dir(s.state_dir))
    assert key is not None
    loaded: dict = {}

    def load() -> None:
        loaded["result"] = load_feed_date(dsn, GENERATED_EVENTS, s.landing_dir, day, erasure_key=key)

    with psycopg.connect(dsn) as erasing, psycopg.connect(dsn, autocommit=True) as watcher:
        erasing.execute(
            "insert into ops.erased_users (user_key, key_id, erasure_id) values (%s, %s, 0)",
            (user_key(key, other), key_id(key)),
        )
        thread = threading.Thread(target=load)
        thread.start()
        deadline = time.monotonic() + 120
        while not watcher.execute(
            "select exists (select from pg_locks where relation = 'ops.erased_users'::regclass and not granted)"
        ).fetchone()[0]:
            assert thread.is_alive() and time.monotonic() < deadline, "the load never waited for the erasure"
            time.sleep(0.05)
        erasing.commit()
    thread.join(120)
    assert loaded["result"].records_erased == expected > _records_of(path, world["user"], 2) > 0
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select count(*) from raw.events where _logical_date = %s and user_id = %s", (day, other)
        ).fetchone()[0]
    assert rows == 0
