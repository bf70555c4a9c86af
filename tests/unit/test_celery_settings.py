"""CeleryExecutor settings: LocalExecutor by default; with RECOMART_EXECUTOR=celery the broker is the
project's Redis on a database of its own (keys under the deployment's prefix) or a named RabbitMQ, results
go to the Airflow metadata database; `up --workers` and the compose services follow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recomart.celery_workers import flower_env, node_name, worker_args
from recomart.config import SettingError, load_settings
from recomart.environment import service_env

ROOT = Path(__file__).resolve().parents[2]
EXTERNAL = {
    "RECOMART_PG_URL": "postgresql://alice:s3cret@db.internal:6543/postgres",
    "RECOMART_REDIS_URL": "redis://:r3dis@cache.internal:6380/3",
}


def test_local_executor_is_the_default_and_sets_no_celery_variables(tmp_path: Path) -> None:
    env = service_env(load_settings({**EXTERNAL, "RECOMART_STATE_DIR": str(tmp_path)}))
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not [key for key in env if key.startswith("AIRFLOW__CELERY")]


def test_celery_broker_is_the_next_redis_database_with_the_deployment_prefix(tmp_path: Path) -> None:
    s = load_settings({**EXTERNAL, "RECOMART_STATE_DIR": str(tmp_path), "RECOMART_EXECUTOR": "celery"})
    env = service_env(s)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:r3dis@cache.internal:6380/4"
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] == "recomart:"
    assert "AIRFLOW__OPERATORS__DEFAULT_QUEUE" not in env  # the keys are prefixed: the queue keeps its name
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == (
        "db+postgresql+psycopg2://alice:s3cret@db.internal:6543/recomart_airflow"
    )
    assert env["AIRFLOW__CELERY__FLOWER_HOST"] == "127.0.0.1"
    # the Flower login is in Flower's environment only, never on a command line or in other tools' env
    assert "AIRFLOW__CELERY__FLOWER_BASIC_AUTH" not in env
    login = flower_env(s)["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"]
    assert login == f"admin:{(tmp_path / 'secrets' / 'flower_password').read_text().strip()}"
    assert (tmp_path / "secrets" / "flower_password").stat().st_mode & 0o077 == 0
    args = worker_args(s, 2)
    assert args[1:3] == ["celery", "worker"] and node_name(s, 2) in args and "--skip-serve-logs" in args


def test_rabbitmq_broker_named_by_a_setting_has_no_redis_key_prefix(tmp_path: Path) -> None:
    url = "amqp://reco:pw@127.0.0.1:5672/recomart"
    s = load_settings(
        {
            **EXTERNAL,
            "RECOMART_STATE_DIR": str(tmp_path),
            "RECOMART_EXECUTOR": "celery",
            "RECOMART_CELERY_BROKER_URL": url,
        }
    )
    env = service_env(s)
    assert env["AIRFLOW__CELERY__BROKER_URL"] == url
    assert "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX" not in env
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "recomart"  # its own queue on a shared vhost


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("RECOMART_EXECUTOR", "kubernetes", "local (default: LocalExecutor) or celery"),
        ("RECOMART_CELERY_BROKER_URL", "http://broker:5672", "an amqp:// or redis:// URL"),
        ("RECOMART_CELERY_REDIS_DB", "3", "a database other than the online store's (3)"),
        ("RECOMART_CELERY_REDIS_DB", "16", "an integer from 0 to 15"),
        ("RECOMART_CELERY_WORKERS", "0", "an integer from 1"),
    ],
)
def test_a_bad_celery_setting_is_refused_naming_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingError) as raised:
        load_settings({**EXTERNAL, name: value})
    assert str(raised.value).startswith(f"{name}={value}: expected ") and expected in str(raised.value)


def test_up_workers_needs_the_celery_executor(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "RECOMART_STATE_DIR": str(tmp_path), "RECOMART_EXECUTOR": "local", **EXTERNAL}
    result = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "up", "--workers", "2"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "RECOMART_EXECUTOR=celery" in result.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "up", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--workers N" in help_text and "Flower" in help_text


def test_compose_file_is_valid_and_the_worker_scales() -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
        + [str(ROOT / "docker-compose.yaml")],
        check=True,
        capture_output=True,
    )
    services = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]
    worker, flower = services["airflow-worker"], services["flower"]
    # --scale airflow-worker=N: no fixed container name and no published port that N copies would share
    assert "container_name" not in worker and "ports" not in worker
    assert "airflow celery worker" in " ".join(worker["command"])
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "FLOWER_BASIC_AUTH" in " ".join(flower["command"])
    assert worker["profiles"] == flower["profiles"] == ["celery"]
