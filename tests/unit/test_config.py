"""Settings: defaults that work locally, overrides from the environment, derived tool variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from recomart.config import EMBEDDED_PG_PORT, SettingError, load_settings
from recomart.environment import export_lines, reader_env, service_env


def test_defaults_use_embedded_services(tmp_path: Path) -> None:
    s = load_settings({"RECOMART_STATE_DIR": str(tmp_path)})
    assert s.embedded_pg and s.embedded_redis
    assert s.pg_parts.port == EMBEDDED_PG_PORT
    assert s.landing_dir == tmp_path / "landing"
    assert s.all_databases == (
        "recomart",
        "recomart_airflow",
        "recomart_mlflow",
        "recomart_feast",
        "recomart_mlflow_auth",
    )
    assert s.bind_host == "127.0.0.1"


def test_external_services_and_prefix_from_environment() -> None:
    s = load_settings(
        {
            "RECOMART_PG_URL": "postgresql://alice:s3cret@db.internal:6543/postgres",
            "RECOMART_REDIS_URL": "redis://cache.internal:6380/3",
            "RECOMART_DB_PREFIX": "shop",
        }
    )
    assert not s.embedded_pg and not s.embedded_redis
    assert s.warehouse_url == "postgresql://alice:s3cret@db.internal:6543/shop"
    assert s.pg_url(s.mlflow_db).endswith("/shop_mlflow")
    assert s.mlflow_tracking_uri.startswith("postgresql+psycopg2://alice:s3cret@db.internal:6543/shop_mlflow")


def test_empty_values_count_as_unset() -> None:
    assert load_settings({"RECOMART_PG_URL": ""}).embedded_pg


def test_service_env_points_every_tool_at_the_same_services(tmp_path: Path) -> None:
    s = load_settings(
        {
            "RECOMART_PG_URL": "postgresql://alice:s3cret@db.internal:6543/postgres",
            "RECOMART_REDIS_URL": "redis://cache.internal:6380/3",
            "RECOMART_STATE_DIR": str(tmp_path),
        }
    )
    env = service_env(s)
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == (
        "db.internal",
        "6543",
        "alice",
        "recomart",
    )
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@db.internal:6543/recomart_airflow")
    assert env["AIRFLOW_CONN_RECOMART_WAREHOUSE"] == "postgres://alice:s3cret@db.internal:6543/recomart"
    assert env["FEAST_REDIS_CONNECTION"] == "cache.internal:6380,db=3"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"
    assert env["FEAST_REGISTRY_URL"].endswith("/recomart_feast")
    assert "sqlite" not in " ".join(env.values())
    # secrets shared by every Airflow component are stable across calls
    assert service_env(s)["AIRFLOW__CORE__FERNET_KEY"] == env["AIRFLOW__CORE__FERNET_KEY"]
    assert "export PGHOST=db.internal" in export_lines(env)


def test_each_data_set_gets_its_own_databases_unless_told_otherwise() -> None:
    uci = load_settings({"RECOMART_DATASET": "uci"})
    assert uci.warehouse_db == "recomart_uci" and uci.feast_project == "recomart_uci"
    assert load_settings({"RECOMART_DATASET": "uci", "RECOMART_DB_PREFIX": "shop"}).warehouse_db == "shop"


# --- embedded services: generated credentials in <state>/secrets --------------------------------------
def test_embedded_services_carry_generated_passwords_kept_at_mode_0600(tmp_path: Path) -> None:
    s = load_settings({"RECOMART_STATE_DIR": str(tmp_path)})
    secrets = tmp_path / "secrets"
    pg_password = (secrets / "postgres_password").read_text()
    redis_password = (secrets / "redis_password").read_text()
    assert len(pg_password) >= 32 and pg_password != redis_password
    assert secrets.stat().st_mode & 0o777 == 0o700
    for path in secrets.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert s.pg_server_url == f"postgresql://postgres:{pg_password}@127.0.0.1:54329/postgres"
    assert s.redis_url == f"redis://:{redis_password}@127.0.0.1:63799/0"
    # stable: a second load (another process, an Airflow task) reads the same files
    assert load_settings({"RECOMART_STATE_DIR": str(tmp_path)}) == s

    env = service_env(s)
    assert env["PGPASSWORD"] == pg_password
    assert env["FEAST_REDIS_CONNECTION"] == f"127.0.0.1:63799,db=0,password={redis_password}"
    assert f"postgres:{pg_password}@127.0.0.1:54329/recomart_feast" in env["FEAST_REGISTRY_URL"]
    assert f"postgres:{pg_password}@" in env["MLFLOW_TRACKING_URI"]
    assert f"postgres:{pg_password}@" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert f"postgres:{pg_password}@" in env["AIRFLOW_CONN_RECOMART_WAREHOUSE"]
    assert "RECOMART_PG_URL" not in env  # tasks read the password from the secrets folder themselves


def test_embedded_ports_and_bind_host_are_settings(tmp_path: Path) -> None:
    s = load_settings(
        {
            "RECOMART_STATE_DIR": str(tmp_path),
            "RECOMART_EMBEDDED_PG_PORT": "55432",
            "RECOMART_EMBEDDED_REDIS_PORT": "56379",
            "RECOMART_BIND_HOST": "0.0.0.0",
        }
    )
    assert (s.pg_parts.hostname, s.pg_parts.port) == ("127.0.0.1", 55432)  # clients use loopback
    assert s.redis_url.endswith("@127.0.0.1:56379/0")
    assert s.mlflow_url == "http://127.0.0.1:5000"
    env = service_env(s)
    assert (env["RECOMART_EMBEDDED_PG_PORT"], env["RECOMART_EMBEDDED_REDIS_PORT"]) == ("55432", "56379")
    assert env["AIRFLOW__API__HOST"] == "0.0.0.0"
    assert load_settings({**env, "RECOMART_STATE_DIR": str(tmp_path)}).pg_server_url == s.pg_server_url


def test_external_redis_password_reaches_feast_and_the_reader_env_uses_the_reader_role(tmp_path: Path) -> None:
    s = load_settings(
        {
            "RECOMART_STATE_DIR": str(tmp_path),
            "RECOMART_PG_URL": "postgresql://postgres@127.0.0.1:5432/postgres",
            "RECOMART_REDIS_URL": "rediss://:p%40ss@cache:6380/2",
        }
    )
    assert service_env(s)["FEAST_REDIS_CONNECTION"] == "cache:6380,db=2,password=p@ss,ssl=true"
    reader = reader_env(s)
    assert (reader["PGUSER"], reader["PGDATABASE"], reader["PGPORT"]) == ("recomart_reader", "recomart", "5432")
    assert reader["PGPASSWORD"] == (tmp_path / "secrets" / "reader_password").read_text()


# --- validation: one line naming the variable, the value (secret masked) and what was expected ---------
@pytest.mark.parametrize(
    ("name", "value", "shown", "expected"),
    [
        ("RECOMART_PG_URL", "mysql://root:hunter2@db:3306/shop", "mysql://root:***@db:3306/shop", "postgresql://"),
        ("RECOMART_PG_URL", "not-a-url", "not-a-url", "postgresql://"),
        ("RECOMART_PG_URL", "postgresql://u:hunter2@db:port/x", "postgresql://u:***@db:port/x", "integer port"),
        ("RECOMART_PG_URL", "postgresql:///postgres", "postgresql:///postgres", "a host"),
        ("RECOMART_REDIS_URL", "http://cache:6379", "http://cache:6379", "redis://"),
        ("RECOMART_REDIS_URL", "redis://:hunter2@cache:63x79/0", "redis://:***@cache:63x79/0", "integer port"),
        ("RECOMART_REDIS_URL", "redis://cache:6379/zero", "redis://cache:6379/zero", "database number"),
        ("RECOMART_AIRFLOW_PORT", "eighty", "eighty", "an integer from 1 to 65535"),
        ("RECOMART_EMBEDDED_PG_PORT", "70000", "70000", "an integer from 1 to 65535"),
        ("RECOMART_EMBEDDED_REDIS_PORT", "6379.5", "6379.5", "an integer from 1 to 65535"),
        ("RECOMART_USERS", "many", "many", "an integer from 1"),
        ("RECOMART_GATE_MARGIN", "ten percent", "ten percent", "a number"),
        ("RECOMART_RECOMMEND_SHARDS", "0", "0", "an integer from 1 to 256"),
    ],
)
def test_a_bad_setting_names_the_variable_the_masked_value_and_the_expectation(
    tmp_path: Path, name: str, value: str, shown: str, expected: str
) -> None:
    with pytest.raises(SettingError) as raised:
        load_settings({"RECOMART_STATE_DIR": str(tmp_path), name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}={shown}: expected ")
    assert expected in message
    assert "hunter2" not in message and "\n" not in message


def test_the_shard_count_reaches_the_airflow_tasks(tmp_path: Path) -> None:
    assert load_settings({"RECOMART_STATE_DIR": str(tmp_path)}).recommend_shards == 4
    s = load_settings({"RECOMART_STATE_DIR": str(tmp_path), "RECOMART_RECOMMEND_SHARDS": "16"})
    assert s.recommend_shards == 16
    assert load_settings(service_env(s)).recommend_shards == 16
