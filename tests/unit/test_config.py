"""Settings: defaults that work locally, overrides from the environment, derived tool variables."""

from __future__ import annotations

from pathlib import Path

from recomart.config import EMBEDDED_PG_PORT, load_settings
from recomart.environment import export_lines, service_env


def test_defaults_use_embedded_services(tmp_path: Path) -> None:
    s = load_settings({"RECOMART_STATE_DIR": str(tmp_path)})
    assert s.embedded_pg and s.embedded_redis
    assert s.pg_parts.port == EMBEDDED_PG_PORT
    assert s.landing_dir == tmp_path / "landing"
    assert s.all_databases == ("recomart", "recomart_airflow", "recomart_mlflow", "recomart_feast")


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
    assert env["FEAST_REGISTRY_URL"].endswith("/recomart_feast")
    assert "sqlite" not in " ".join(env.values())
    # secrets shared by every Airflow component are stable across calls
    assert service_env(s)["AIRFLOW__CORE__FERNET_KEY"] == env["AIRFLOW__CORE__FERNET_KEY"]
    assert "export PGHOST=db.internal" in export_lines(env)


def test_each_data_set_gets_its_own_databases_unless_told_otherwise() -> None:
    uci = load_settings({"RECOMART_DATASET": "uci"})
    assert uci.warehouse_db == "recomart_uci" and uci.feast_project == "recomart_uci"
    assert load_settings({"RECOMART_DATASET": "uci", "RECOMART_DB_PREFIX": "shop"}).warehouse_db == "shop"
