"""The environment that dbt, Feast, MLflow, psql and Airflow need, derived from :class:`Settings`.

``recomart env`` prints these as ``export`` lines; the CLI, the tests and the
Airflow processes all start their subprocesses with them, so every tool talks
to the same services.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from recomart.config import Settings
from recomart.credentials import persistent_secret


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def redis_host_port_db(s: Settings) -> tuple[str, int, int]:
    parts = urlsplit(s.redis_url)
    db = int(parts.path.strip("/") or 0)
    return parts.hostname or "127.0.0.1", parts.port or 6379, db


def feast_redis_connection(s: Settings) -> str:
    """Feast's ``host:port,db=N[,password=…][,ssl=true]`` form of ``s.redis_url``."""
    host, port, db = redis_host_port_db(s)
    parts = urlsplit(s.redis_url)
    connection = f"{host}:{port},db={db}"
    if parts.password:
        connection += f",password={unquote(parts.password)}"
    if parts.username and parts.username != "default":
        connection += f",username={unquote(parts.username)}"
    if parts.scheme == "rediss":
        connection += ",ssl=true"
    return connection


# The scoring alternates OpenBLAS's GEMM and numba's (OpenMP) top-k on the same cores.  By default
# each pool's threads keep spinning after their work and steal the cores from the other pool; with
# these both yield (libgomp threads sleep, OpenBLAS threads spin 2**4 cycles instead of 2**28).
# benchmarks/scoring.py (100k users x 20k items, idle 2-core machine): 2.46 s with them, 4.34 s without.
THREAD_POOL_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


def service_env(s: Settings) -> dict[str, str]:
    """Every variable a tool needs to reach this deployment's services."""
    pg = s.pg_parts
    user = unquote(pg.username or "postgres")
    password = unquote(pg.password or "")
    host, port = pg.hostname or "127.0.0.1", str(pg.port or 5432)
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    secrets_dir = s.state_dir / "secrets"
    airflow_api = f"http://{s.airflow_api_host}:{s.airflow_port}"
    env = {
        **THREAD_POOL_ENV,
        # RecoMart itself
        "RECOMART_STATE_DIR": str(s.state_dir),
        "RECOMART_DB_PREFIX": s.db_prefix,
        "RECOMART_DATASET": s.dataset,
        "RECOMART_LANDING_DIR": str(s.landing_dir),
        "RECOMART_UCI_DIR": str(s.uci_dir),
        "RECOMART_CATALOG_HOST": s.catalog_api_host,
        "RECOMART_CATALOG_PORT": str(s.catalog_api_port),
        "RECOMART_CATALOG_FULL_SNAPSHOT_HOURS": str(s.catalog_full_snapshot_hours),
        "RECOMART_MODEL_NAME": s.model_name,
        "RECOMART_FEAST_PROJECT": s.feast_project,
        "RECOMART_TRAIN_MODE": s.train_mode,
        "RECOMART_TRAIN_SPLIT": s.train_split,
        "RECOMART_GATE_METRIC": s.gate_metric,
        "RECOMART_GATE_MARGIN": str(s.gate_margin),
        "RECOMART_AIRFLOW_API_HOST": s.airflow_api_host,
        "RECOMART_AIRFLOW_PORT": str(s.airflow_port),
        "RECOMART_MLFLOW_PORT": str(s.mlflow_port),
        "RECOMART_BIND_HOST": s.bind_host,
        "RECOMART_EMBEDDED_PG_PORT": str(s.embedded_pg_port),
        "RECOMART_EMBEDDED_REDIS_PORT": str(s.embedded_redis_port),
        "RECOMART_RECOMMEND_SHARDS": str(s.recommend_shards),
        # libpq: psql, dbt's profiles.yml and Feast's feature_store.yaml read these
        "PGHOST": host,
        "PGPORT": port,
        "PGUSER": user,
        "PGPASSWORD": password,
        "PGDATABASE": s.warehouse_db,
        # dbt
        "DBT_PROFILES_DIR": str(s.dbt_project_dir),
        "DBT_PROJECT_DIR": str(s.dbt_project_dir),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        # Feast
        "FEAST_REGISTRY_URL": f"postgresql+psycopg://{auth}@{host}:{port}/{s.feast_registry_db}",
        "FEAST_REDIS_CONNECTION": feast_redis_connection(s),
        "FEAST_USAGE": "False",
        # MLflow
        "MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
        "MLFLOW_REGISTRY_URI": s.mlflow_tracking_uri,
        # Airflow
        "AIRFLOW_HOME": str(s.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(s.dags_dir),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(s.project_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": s.airflow_executor,
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": persistent_secret(secrets_dir / "fernet_key", _fernet_key),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(secrets_dir / "airflow_passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (f"postgresql+psycopg2://{auth}@{host}:{port}/{s.airflow_db}"),
        "AIRFLOW__API__HOST": s.bind_host,
        "AIRFLOW__API__PORT": str(s.airflow_port),
        "AIRFLOW__API__SECRET_KEY": persistent_secret(secrets_dir / "api_secret", secrets.token_hex),
        "AIRFLOW__API_AUTH__JWT_SECRET": persistent_secret(secrets_dir / "jwt_secret", secrets.token_hex),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": s.bind_host,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(s.airflow_home / "logs"),
        "AIRFLOW_CONN_RECOMART_WAREHOUSE": f"postgres://{auth}@{host}:{port}/{s.warehouse_db}",
        "AIRFLOW_CONN_RECOMART_CATALOG_API": f"http://{s.catalog_api_host}:{s.catalog_api_port}",
        # telemetry off
        "DO_NOT_TRACK": "true",
        "SCARF_ANALYTICS": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    if s.executor == "celery":
        env.update(celery_env(s))
    if not s.embedded_pg:
        env["RECOMART_PG_URL"] = s.pg_server_url
    if not s.embedded_redis:
        env["RECOMART_REDIS_URL"] = s.redis_url
    return env


def broker_transport_options(s: Settings) -> dict[str, str]:
    """Kombu transport options: on Redis every broker key and channel carries the deployment's prefix
    (``<db_prefix>:``), so deployments (and test runs) sharing a broker database never see each other's
    tasks; on RabbitMQ the deployment's tasks go to a queue named after the prefix
    (:func:`celery_env`), and its URL's virtual host can separate it further. A task unacknowledged
    for ``visibility_timeout`` seconds is redelivered (a lost worker's task is retried long before, by
    the scheduler's ``[scheduler] task_instance_heartbeat_timeout``)."""
    options = {"visibility_timeout": "86400"}  # the provider's default, set so it does not warn on every start
    if urlsplit(s.celery_broker_url).scheme.startswith("redis"):
        options["global_keyprefix"] = f"{s.db_prefix}:"
    return options


def celery_env(s: Settings) -> dict[str, str]:
    """The Celery provider's settings (``[celery]``, ``[celery_broker_transport_options]``): the broker
    ``s.celery_broker_url``, results in the Airflow metadata database, ``s.celery_concurrency`` task
    slots per worker."""
    env = {
        "AIRFLOW__CELERY__BROKER_URL": s.celery_broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + s.sqlalchemy_url(s.airflow_db),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(s.celery_concurrency),
        "AIRFLOW__CELERY__FLOWER_HOST": s.bind_host,
        "AIRFLOW__CELERY__FLOWER_PORT": str(s.flower_port),
    }
    options = broker_transport_options(s)
    for key, value in options.items():
        env[f"AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__{key.upper()}"] = value
    if "global_keyprefix" not in options:  # RabbitMQ: the deployment's own queue, in case the vhost is shared
        env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] = s.db_prefix
    return env


def reader_env(s: Settings) -> dict[str, str]:
    """libpq variables that connect ``psql`` to the warehouse as the read-only role ``recomart_reader``."""
    from recomart.reader_access import READER_ROLE, reader_password

    pg = s.pg_parts
    return {
        "PGHOST": pg.hostname or "127.0.0.1",
        "PGPORT": str(pg.port or 5432),
        "PGUSER": READER_ROLE,
        "PGPASSWORD": reader_password(s),
        "PGDATABASE": s.warehouse_db,
    }


def path_line() -> str:
    """A shell line that puts this interpreter's ``bin`` (the project's ``.venv/bin``: dbt, feast, mlflow,
    airflow) first on ``PATH``."""
    import shlex

    return f'export PATH={shlex.quote(str(Path(sys.prefix) / "bin"))}:"$PATH"'


def export_lines(env: dict[str, str]) -> str:
    """Render ``env`` as shell ``export`` lines."""
    import shlex

    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())
