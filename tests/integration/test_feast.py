"""The Feast feature store against real Postgres (offline + SQL registry) and Redis (online).

The marts are created by hand here (dbt is tested elsewhere); the Feast project is the
run's private one, so its Redis keys cannot collide with another run's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import redis

from recomart.config import Settings
from recomart.features import (
    FeatureStoreConfigError,
    apply,
    feast_command,
    feature_store,
    historical_features,
    load_repo_config,
    materialize_window,
    online_features,
    plan,
    rematerialize_entities,
    rematerialize_window,
    resolve_config_text,
)

pytestmark = pytest.mark.integration

WINDOW_START = datetime(2025, 1, 1, tzinfo=UTC)
WINDOW_END = datetime(2025, 4, 1, tzinfo=UTC)
LATER_END = datetime(2025, 6, 1, tzinfo=UTC)

MARTS_DDL = """
create schema if not exists marts;
create table marts.user_features_history (
    user_id text not null,
    event_timestamp timestamptz not null,
    recency_days float8,
    frequency integer,
    monetary numeric(12, 2),
    distinct_items integer,
    favourite_category text,
    country text,
    segment text,
    days_since_first_seen float8
);
create table marts.item_features_history (
    item_id text not null,
    event_timestamp timestamptz not null,
    pop_7d integer,
    pop_30d integer,
    pop_90d bigint,
    distinct_buyers integer,
    revenue numeric(14, 2),
    price numeric(10, 2),
    price_band text,
    category text,
    brand text,
    content_text text,
    first_seen_at timestamptz
);
insert into marts.user_features_history values
    ('u1', '2025-03-01 00:00:00+00', 2, 10, 123.45, 7, 'books', 'GB', 'loyal', 300),
    ('u2', '2025-02-01 00:00:00+00', 30, 3, 20.00, 2, 'toys', 'FR', 'new', 40),
    ('u2', '2025-03-15 12:30:00+00', 1, 9, 80.50, 5, 'toys', 'FR', 'regular', 82),
    ('u3', '2025-03-10 00:00:00+00', 5, 4, 10.00, 3, 'garden', 'DE', 'regular', 120),
    ('u4', '2025-05-01 00:00:00+00', 0, 1, 5.00, 1, 'books', 'ES', 'new', 0),
    ('u5', '2025-03-05 00:00:00+00', null, 0, 0.00, 0, null, 'IT', 'new', 60.25),
    ('u6', '2025-03-20 00:00:00+00', 3.5, 2, 15.00, 2, 'toys', 'NL', 'new', 10);
insert into marts.item_features_history values
    ('i1', '2025-03-01 00:00:00+00', 4, 12, 30, 9, 450.00, 19.99, 'low', 'books', 'acme',
     'A book about gardens', '2024-06-01 00:00:00+00'),
    ('i2', '2025-03-02 00:00:00+00', 1, 2, 2, 1, 89.00, 89.00, 'high', 'garden', 'leafy',
     'A rake', '2024-09-15 08:00:00+00');
"""


@pytest.fixture(scope="module")
def feast_env(tool_env: dict[str, str]) -> dict[str, str]:
    return tool_env


@pytest.fixture(scope="module")
def repo_dir(test_settings: Settings) -> Path:
    return test_settings.feature_repo_dir


@pytest.fixture(scope="module")
def marts(warehouse_dsn: str) -> None:
    """Hand-made marts (the columns of docs/architecture.md, types as dbt would make them)."""
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(MARTS_DDL)


@pytest.fixture(scope="module")
def applied(marts: None, repo_dir: Path, feast_env: dict[str, str]) -> str:
    return apply(repo_dir, feast_env)


@pytest.fixture(scope="module")
def store(applied: str, repo_dir: Path, feast_env: dict[str, str]):
    return feature_store(repo_dir, feast_env)


@pytest.fixture(scope="module")
def materialized(store, repo_dir: Path, feast_env: dict[str, str]):
    return materialize_window(repo_dir, feast_env, WINDOW_START, WINDOW_END)


@pytest.fixture(scope="module")
def redis_client(test_settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(test_settings.redis_url)


def _project_snapshot(client: redis.Redis, project: str) -> dict[bytes, dict[bytes, bytes]]:
    """Every Feast hash of ``project`` in Redis (keys end with the project name)."""
    keys = sorted(client.scan_iter(match=b"*" + project.encode(), count=1000))
    return {key: client.hgetall(key) for key in keys}


def _set_monetary(dsn: str, user_id: str, value: float) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("update marts.user_features_history set monetary = %s where user_id = %s", (value, user_id))


# --- configuration ---------------------------------------------------------------
def test_yaml_resolves_from_explicit_env(repo_dir: Path, test_settings: Settings, feast_env) -> None:
    env = {**feast_env, "PGPASSWORD": ""}
    config = load_repo_config(repo_dir, env)
    assert config.project == test_settings.feast_project
    assert config.registry.registry_type == "sql"
    assert config.registry.path.startswith("postgresql+psycopg://")
    assert config.registry.path.endswith(f"/{test_settings.feast_registry_db}")
    assert config.offline_store.password == ""  # empty, not null: trust auth keeps working
    assert config.offline_store.sslmode == "disable"
    assert config.offline_store.database == test_settings.warehouse_db
    assert config.online_store.connection_string == feast_env["FEAST_REDIS_CONNECTION"]
    assert config.entity_key_serialization_version == 3
    assert config.materialization_config.online_write_batch_size == 10_000

    without_registry = {k: v for k, v in env.items() if k != "FEAST_REGISTRY_URL"}
    with pytest.raises(FeatureStoreConfigError, match="FEAST_REGISTRY_URL"):
        resolve_config_text(repo_dir, without_registry)


def test_apply_registers_definitions(store, test_settings: Settings) -> None:
    assert store.project == test_settings.feast_project
    assert {e.name for e in store.list_entities()} >= {"user", "item"}
    views = {fv.name: fv for fv in store.list_feature_views()}
    assert set(views) == {"user_features", "item_features", "user_session_features"}
    assert [f.name for f in views["user_features"].features] == [
        "recency_days",
        "frequency",
        "monetary",
        "distinct_items",
        "favourite_category",
        "country",
        "segment",
        "days_since_first_seen",
    ]
    assert views["item_features"].ttl == timedelta(days=90)
    service = store.get_feature_service("recommender_v1")
    assert {p.name for p in service.feature_view_projections} == {"user_features", "item_features"}


def test_feast_plan_from_a_plain_shell(materialized, repo_dir: Path, feast_env: dict[str, str]) -> None:
    """`eval "$(... export_lines(service_env(settings())))"` is all a shell needs for the feast CLI; on the
    unchanged repository (already materialized, so the registry holds materialization intervals) it
    reports no changes and finds the repository's Project."""
    shell_env = {k: v for k, v in feast_env.items() if not k.startswith(("PG", "FEAST_", "RECOMART_FEAST"))}
    printer = (
        "from recomart.config import settings; "
        "from recomart.environment import export_lines, service_env; "
        "print(export_lines(service_env(settings())))"
    )
    feast_bin = Path(sys.executable).parent / "feast"
    script = f'eval "$("{sys.executable}" -c "{printer}")" && cd "{repo_dir}" && "{feast_bin}" plan'
    result = subprocess.run(
        ["bash", "-c", script], env=shell_env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "No changes to registry" in result.stdout, result.stdout
    assert "No project found" not in result.stdout, result.stdout


def test_plan_shows_a_real_change_and_apply_leaves_the_registry_alone(
    materialized, repo_dir: Path, feast_env, test_settings: Settings, tmp_path: Path
) -> None:
    """Materialization intervals are ignored when comparing definitions, nothing else is; and a
    re-apply of the unchanged repository does not rewrite the registered views."""
    changed = tmp_path / "feature_repo"
    shutil.copytree(repo_dir, changed, ignore=shutil.ignore_patterns("__pycache__"))
    views = changed / "feature_views.py"
    views.write_text(views.read_text().replace("FEATURE_TTL = timedelta(days=90)", "FEATURE_TTL = timedelta(days=30)"))
    output = plan(changed, feast_env)
    assert "Updated feature view user_features" in output and "ttl" in output, output

    def registered_views() -> dict[str, tuple[int, bytes]]:
        with psycopg.connect(test_settings.pg_url(test_settings.feast_registry_db)) as conn:
            rows = conn.execute(
                "select feature_view_name, last_updated_timestamp, feature_view_proto from feature_views "
                "where project_id = %s",
                (test_settings.feast_project,),
            ).fetchall()
        return {name: (updated, proto) for name, updated, proto in rows}

    before = registered_views()
    assert set(before) == {"user_features", "item_features", "user_session_features"}
    # `feast apply` itself (recomart.features.apply would also drop this module's cached store)
    subprocess.run(feast_command("apply"), cwd=repo_dir, env=feast_env, capture_output=True, check=True, timeout=300)
    assert registered_views() == before


def test_feast_is_imported_without_typeguard_instrumentation(feast_env) -> None:
    """import_feast (used by every feature_store() call and by `recomart features`) skips typeguard's
    import-time rewrite of Feast's classes; a plain `import feast` still instruments them."""
    probe = (
        "import sys; {setup}import feast.feature_view as fv; "
        "names = fv.FeatureView.__init__.__code__.co_names; "
        "print('instrumented' if 'check_argument_types_internal' in names else 'plain')"
    )

    def run(setup: str) -> str:
        command = [sys.executable, "-c", probe.format(setup=setup)]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout.strip()

    assert run("") == "instrumented"
    assert run("from recomart.features.feast_import import import_feast; import_feast(); ") == "plain"


# --- materialization -------------------------------------------------------------
def test_online_lookup_equals_the_latest_row_in_window(materialized, repo_dir: Path, feast_env) -> None:
    assert set(materialized.feature_views) == {"user_features", "item_features"}
    u1 = online_features(repo_dir, feast_env, "user", "u1", now=datetime(2025, 3, 2, tzinfo=UTC))
    assert u1["found"] is True
    assert u1["features"] == {
        "recency_days": 2.0,
        "frequency": 10,
        "monetary": pytest.approx(123.45),
        "distinct_items": 7,
        "favourite_category": "books",
        "country": "GB",
        "segment": "loyal",
        "days_since_first_seen": 300.0,
    }
    assert u1["event_timestamp"] == datetime(2025, 3, 1, tzinfo=UTC)

    u2 = online_features(repo_dir, feast_env, "user", "u2", now=WINDOW_END)
    assert u2["features"]["frequency"] == 9  # the later of u2's two rows
    assert u2["event_timestamp"] == datetime(2025, 3, 15, 12, 30, tzinfo=UTC)

    u5 = online_features(repo_dir, feast_env, "user", "u5", now=WINDOW_END)
    assert u5["found"] and u5["features"]["favourite_category"] is None
    assert u5["features"]["recency_days"] is None and u5["features"]["days_since_first_seen"] == 60.25

    i1 = online_features(repo_dir, feast_env, "item", "i1", now=WINDOW_END)
    assert i1["features"]["pop_90d"] == 30 and i1["features"]["pop_7d"] == 4
    assert i1["features"]["price"] == pytest.approx(19.99)
    assert i1["features"]["price_band"] == "low"
    assert i1["features"]["content_text"] == "A book about gardens"
    first_seen = pd.Timestamp(i1["features"]["first_seen_at"])
    first_seen = first_seen.tz_localize(UTC) if first_seen.tzinfo is None else first_seen
    assert first_seen == pd.Timestamp("2024-06-01", tz=UTC)


def test_rows_after_the_window_wait_for_their_window(materialized, repo_dir: Path, feast_env) -> None:
    before = online_features(repo_dir, feast_env, "user", "u4", now=WINDOW_END)
    assert before["found"] is False and before["features"]["frequency"] is None
    materialize_window(repo_dir, feast_env, WINDOW_END, LATER_END, feature_views=["user_features"])
    after = online_features(repo_dir, feast_env, "user", "u4", now=LATER_END)
    assert after["found"] and after["features"]["frequency"] == 1


def test_rematerializing_a_window_changes_nothing(
    materialized, repo_dir: Path, feast_env, redis_client, test_settings: Settings
) -> None:
    before = _project_snapshot(redis_client, test_settings.feast_project)
    assert len(before) >= 7  # u1 u2 u3 u5 u6 i1 i2 at least
    again = materialize_window(repo_dir, feast_env, WINDOW_START, WINDOW_END)
    assert again.start == WINDOW_START and again.end == WINDOW_END
    assert _project_snapshot(redis_client, test_settings.feast_project) == before


def test_explicit_windows_only(repo_dir: Path, feast_env) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        materialize_window(repo_dir, feast_env, datetime(2025, 1, 1), datetime(2025, 2, 1))
    with pytest.raises(ValueError, match="ends before it starts"):
        materialize_window(repo_dir, feast_env, WINDOW_END, WINDOW_START)


def test_correction_with_same_event_time_reaches_redis(
    materialized, repo_dir: Path, feast_env, warehouse_dsn: str
) -> None:
    def read(entity: str, entity_id: str) -> dict:
        return online_features(repo_dir, feast_env, entity, entity_id, now=WINDOW_END)

    assert read("user", "u3")["features"]["monetary"] == pytest.approx(10.0)
    other_before = read("user", "u1")
    _set_monetary(warehouse_dsn, "u3", 99.5)  # same event_timestamp

    # The trap: a plain re-materialization skips the row, its event time is not newer.
    materialize_window(repo_dir, feast_env, WINDOW_START, WINDOW_END, feature_views=["user_features"])
    assert read("user", "u3")["features"]["monetary"] == pytest.approx(10.0)

    result = rematerialize_entities(repo_dir, feast_env, "user", ["u3"], WINDOW_START, WINDOW_END)
    assert result.invalidated_entities == 1 and result.feature_views == ("user_features",)
    corrected = read("user", "u3")
    assert corrected["features"]["monetary"] == pytest.approx(99.5)
    assert corrected["event_timestamp"] == datetime(2025, 3, 10, tzinfo=UTC)
    assert read("user", "u1") == other_before  # other entities untouched
    assert read("item", "i2")["features"]["brand"] == "leafy"


def test_rebuilt_snapshot_is_rewritten_by_rematerialize_window(
    materialized, repo_dir: Path, feast_env, warehouse_dsn: str
) -> None:
    """A whole-snapshot correction (dbt rebuilt with the same as_of): overwrite the point window."""
    as_of = datetime(2025, 3, 20, tzinfo=UTC)

    def read(user_id: str) -> dict:
        return online_features(repo_dir, feast_env, "user", user_id, now=WINDOW_END)

    assert read("u6")["features"]["segment"] == "new"
    u1_before = read("u1")
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute("update marts.user_features_history set segment = 'vip' where user_id = 'u6'")
    materialize_window(repo_dir, feast_env, as_of, as_of, feature_views=["user_features"])
    assert read("u6")["features"]["segment"] == "new"  # skipped: same event time

    result = rematerialize_window(repo_dir, feast_env, as_of, as_of, feature_views=["user_features"])
    assert result.start == result.end == as_of
    assert read("u6")["features"]["segment"] == "vip"
    assert read("u6")["event_timestamp"] == as_of
    assert read("u1") == u1_before  # outside the point window: not rewritten


# --- reading ---------------------------------------------------------------------
def test_stale_flag_follows_the_view_ttl(materialized, repo_dir: Path, feast_env) -> None:
    fresh = online_features(repo_dir, feast_env, "user", "u1", now=datetime(2025, 3, 2, tzinfo=UTC))
    assert fresh["stale"] is False
    assert fresh["age_seconds"] == pytest.approx(86400)
    assert fresh["ttl_seconds"] == pytest.approx(90 * 86400)
    edge = online_features(repo_dir, feast_env, "user", "u1", now=datetime(2025, 5, 30, tzinfo=UTC))
    assert edge["stale"] is False  # exactly 90 days old
    old = online_features(repo_dir, feast_env, "user", "u1", now=datetime(2025, 7, 1, tzinfo=UTC))
    assert old["stale"] is True
    assert old["features"]["frequency"] == 10  # Feast still serves it: the flag is ours
    assert fresh["freshness"] == "fresh" and old["freshness"] == "stale"
    missing = online_features(repo_dir, feast_env, "user", "nobody", now=WINDOW_END)
    assert missing["found"] is False and missing["freshness"] == "missing"
    assert missing["stale"] is True  # absent is never reported as fresh
    assert missing["event_timestamp"] is None
    assert set(missing["features"].values()) == {None}
    with pytest.raises(ValueError, match="unknown entity"):
        online_features(repo_dir, feast_env, "shop", "x")


def test_historical_features_are_point_in_time(store, repo_dir: Path, feast_env) -> None:
    labels = pd.DataFrame(
        {
            "user_id": ["u2", "u2", "u1", "u2"],
            "item_id": ["i1", "i1", "i2", "i1"],
            "event_timestamp": pd.to_datetime(["2025-03-01", "2025-03-20", "2025-02-15", "2025-07-01"], utc=True),
            "label": [1.0, 2.0, 3.0, 4.0],
        }
    )
    out = historical_features(repo_dir, feast_env, labels).sort_values("label").reset_index(drop=True)
    assert len(out) == 4
    # u2 changed on 2025-03-15: the label of 2025-03-01 sees the old value, 2025-03-20 the new one
    assert out.loc[0, "frequency"] == 3 and out.loc[0, "segment"] == "new"
    assert out.loc[1, "frequency"] == 9 and out.loc[1, "segment"] == "regular"
    assert out.loc[0, "pop_30d"] == 12
    # u1's and i2's first rows come after the label time: nothing leaks from the future
    assert pd.isna(out.loc[2, "frequency"]) and pd.isna(out.loc[2, "brand"])
    # older than the 90-day ttl at the label time: not joined
    assert pd.isna(out.loc[3, "frequency"])

    with pytest.raises(ValueError, match="item_id"):
        historical_features(repo_dir, feast_env, labels.drop(columns=["item_id"]))


def test_feature_store_is_reused(store, repo_dir: Path, feast_env) -> None:
    assert feature_store(repo_dir, feast_env) is store
    assert feature_store(repo_dir, {**feast_env, "UNRELATED": "1"}) is store
