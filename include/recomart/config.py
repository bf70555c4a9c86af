"""RecoMart settings: the only module that reads the process environment.

Every other module receives a :class:`Settings` (or plain values derived from
it).  Defaults work on a laptop: with no ``RECOMART_PG_URL`` / ``RECOMART_REDIS_URL``
the project starts embedded Postgres and Redis under ``.state/``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from recomart.credentials import mask_url, secret

PROJECT_ROOT = Path(__file__).resolve().parents[2]

EMBEDDED_PG_PORT = 54329
EMBEDDED_REDIS_PORT = 63799
EMBEDDED_PG_USER = "postgres"  # the pipeline's role on the embedded server (its owner)
DEFAULT_BIND_HOST = "127.0.0.1"
PG_URL_EXAMPLE = "postgresql://user:password@host:5432/postgres"
REDIS_URL_EXAMPLE = "redis://[:password@]host:6379/0"
BROKER_URL_EXAMPLE = "amqp://user:password@127.0.0.1:5672/vhost or redis://[:password@]host:6379/1"
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}


class SettingError(ValueError):
    """A setting RecoMart cannot use; the message is one line: variable, value (secrets masked), expectation."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"{name}={mask_url(value)}: expected {expected}")


def _with_database(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


@dataclass(frozen=True)
class MonitoringSettings:
    """Thresholds of the ``monitor`` DAG (``RECOMART_MONITOR_*``; see README "Monitoring and alerts").

    A value on the alert side of a threshold opens an alert; PSI between ``psi_warn`` and ``psi_alert``
    only warns (logged and kept in ``ops.monitoring_metrics``).
    """

    psi_warn: float = 0.1
    psi_alert: float = 0.2
    drift_window_days: int = 1  # the latest window: as-of snapshots of the last N days of the history marts
    drift_reference_days: int = 7  # the reference: the N days before the latest window
    coverage_drop: float = 0.5  # coverage below (1 - this) x the previous generation's alerts
    personalization_min: float = 0.5  # 1 - mean overlap of top-10 lists below this alerts
    cold_start_rise: float = 0.2  # cold-start share up by this much (absolute) vs the previous generation
    health_sample_users: int = 1000
    model_min_lift: float = 1.0  # the champion's gate metric / popularity's below this alerts
    serving_window_minutes: int = 60
    serving_p95_ms: float = 100.0
    serving_error_rate: float = 0.01
    serving_fallback_share: float = 0.5


@dataclass(frozen=True)
class Settings:
    """Resolved configuration for one RecoMart deployment (or one test run)."""

    project_root: Path
    state_dir: Path
    pg_server_url: str
    redis_url: str
    embedded_pg: bool
    embedded_redis: bool
    db_prefix: str
    dataset: str
    landing_dir: Path
    uci_dir: Path
    catalog_api_host: str
    catalog_api_port: int
    catalog_full_snapshot_hours: float
    airflow_api_host: str
    airflow_port: int
    mlflow_port: int
    bind_host: str
    embedded_pg_port: int
    embedded_redis_port: int
    model_name: str
    feast_project: str
    seed: int
    train_mode: str
    train_split: str
    gate_metric: str
    gate_margin: float
    generator_users: int
    generator_items: int
    generator_days: int
    api_port: int = 8000
    api_workers: int = 2
    # lists each API process keeps in memory after reading them from Redis (about 0.5 KB each)
    api_list_memory: int = 50_000
    train_ranker: str = "validation"
    metrics_multiproc_dir: str | None = None
    stream_max_len: int = 500_000
    stream_batch_size: int = 1000
    stream_claim_idle_s: float = 15.0
    redis_appendfsync: str = "everysec"
    log_exposures: bool = True
    serving_stats_flush_s: float = 60.0
    stream_metrics_port: int = 9108
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    alert_webhook: str | None = None
    # shard tasks of the recommend DAG; each holds the artifact plus 1/N of the users' history and
    # output (README "Settings" has the memory estimate behind the default)
    recommend_shards: int = 4
    executor: str = "local"
    celery_broker_url: str = ""
    celery_workers: int = 2
    celery_concurrency: int = 2
    flower_port: int = 5555

    # --- databases -------------------------------------------------------
    @property
    def warehouse_db(self) -> str:
        return self.db_prefix

    @property
    def airflow_db(self) -> str:
        return f"{self.db_prefix}_airflow"

    @property
    def mlflow_db(self) -> str:
        return f"{self.db_prefix}_mlflow"

    @property
    def feast_registry_db(self) -> str:
        return f"{self.db_prefix}_feast"

    @property
    def mlflow_auth_db(self) -> str:
        """Users and permissions of the MLflow UI's basic-auth app."""
        return f"{self.db_prefix}_mlflow_auth"

    @property
    def all_databases(self) -> tuple[str, ...]:
        return (self.warehouse_db, self.airflow_db, self.mlflow_db, self.feast_registry_db, self.mlflow_auth_db)

    def pg_url(self, database: str | None = None) -> str:
        """A libpq URL (``postgresql://``) for ``database`` (default: the warehouse)."""
        return _with_database(self.pg_server_url, database or self.warehouse_db)

    @property
    def warehouse_url(self) -> str:
        return self.pg_url(self.warehouse_db)

    @property
    def pg_parts(self):
        return urlsplit(self.pg_server_url)

    # --- derived locations -------------------------------------------------
    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.state_dir / "mlartifacts"

    @property
    def train_staging_dir(self) -> Path:
        """Where the train DAG's runs stage their round for their trial tasks (one folder per DAG run),
        per deployment (database prefix): deployments and test modules may share a state folder."""
        return self.state_dir / "staging" / self.db_prefix / "train"

    @property
    def mlflow_tracking_uri(self) -> str:
        """The tracking and registry database itself (the pipeline logs and registers through it)."""
        return self.sqlalchemy_url(self.mlflow_db)

    def sqlalchemy_url(self, database: str) -> str:
        """``postgresql+psycopg2://`` URL of ``database``, with the server URL's credentials."""
        return "postgresql+psycopg2://" + self.pg_url(database).split("://", 1)[1]

    @property
    def api_url(self) -> str:
        return f"http://{self.client_host}:{self.api_port}"

    @property
    def client_host(self) -> str:
        """Where local clients reach the servers RecoMart starts."""
        return client_host(self.bind_host)

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.client_host}:{self.mlflow_port}"

    @property
    def catalog_api_url(self) -> str:
        return f"http://{self.catalog_api_host}:{self.catalog_api_port}"

    @property
    def dbt_project_dir(self) -> Path:
        return self.project_root / "dbt_project"

    @property
    def feature_repo_dir(self) -> Path:
        return self.project_root / "feature_repo"

    @property
    def dags_dir(self) -> Path:
        return self.project_root / "dags"

    @property
    def gx_docs_dir(self) -> Path:
        return self.state_dir / "gx_docs"

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's ``target/`` of this warehouse (partial parse, manifest, the last ``run_results.json``)."""
        return self.state_dir / "dbt" / self.warehouse_db / "target"

    @property
    def airflow_executor(self) -> str:
        """Airflow's name of the executor (``[core] executor``): LocalExecutor or CeleryExecutor."""
        return EXECUTORS[self.executor]

    @property
    def flower_url(self) -> str:
        return f"http://{self.client_host}:{self.flower_port}"


def client_host(bind_host: str) -> str:
    """The address a local client uses for a server bound to ``bind_host`` (loopback for a wildcard)."""
    return "127.0.0.1" if bind_host in ("0.0.0.0", "::", "") else bind_host


def _has_valid_port(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 (raises ValueError for a non-integer or out-of-range port)
    except ValueError:
        return False
    return True


def _pg_server_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingError(name, value, f"a postgresql:// URL such as {PG_URL_EXAMPLE}")
    if not parts.hostname or not _has_valid_port(parts):
        raise SettingError(name, value, f"a host and an integer port, as in {PG_URL_EXAMPLE}")
    return value


def _redis_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss"):
        raise SettingError(name, value, f"a redis:// or rediss:// URL such as {REDIS_URL_EXAMPLE}")
    if not parts.hostname or not _has_valid_port(parts) or not (parts.path.strip("/") or "0").isdigit():
        raise SettingError(name, value, f"a host, an integer port and a database number, as in {REDIS_URL_EXAMPLE}")
    return value


class _Environment:
    """Typed reads of the settings' variables; empty values count as unset; bad values raise SettingError."""

    def __init__(self, source: Mapping[str, str]) -> None:
        self.source = source

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.source.get(name) or default

    def integer(self, name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        bounds = f" from {minimum}" if minimum is not None else ""
        bounds += f" to {maximum}" if maximum is not None else ""
        try:
            value = int(raw)
        except ValueError:
            raise SettingError(name, raw, f"an integer{bounds}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise SettingError(name, raw, f"an integer{bounds}")
        return value

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, 1, 65535)

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        try:
            return default if raw is None else float(raw)
        except ValueError:
            raise SettingError(name, raw, "a number") from None


def _executor(value: str) -> str:
    if value not in EXECUTORS:
        raise SettingError("RECOMART_EXECUTOR", value, "local (default: LocalExecutor) or celery (CeleryExecutor)")
    return value


def _celery_broker_url(env: _Environment, redis_url: str) -> str:
    """``RECOMART_CELERY_BROKER_URL`` (a RabbitMQ or Redis URL), else the project's Redis on database
    ``RECOMART_CELERY_REDIS_DB`` (default: the one after the online store's, so broker keys never mix
    with features)."""
    name, value = "RECOMART_CELERY_BROKER_URL", env.text("RECOMART_CELERY_BROKER_URL")
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("amqp", "amqps", "pyamqp", "redis", "rediss") or not parts.hostname:
            raise SettingError(name, value, f"an amqp:// or redis:// URL with a host, such as {BROKER_URL_EXAMPLE}")
        if not _has_valid_port(parts):
            raise SettingError(name, value, f"an integer port, as in {BROKER_URL_EXAMPLE}")
        return value
    parts = urlsplit(redis_url)
    store_db = int(parts.path.strip("/") or 0)
    db = env.integer("RECOMART_CELERY_REDIS_DB", (store_db + 1) % 16, minimum=0, maximum=15)
    if db == store_db:
        raise SettingError(
            "RECOMART_CELERY_REDIS_DB", str(db), f"a database other than the online store's ({store_db})"
        )
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def _appendfsync(value: str) -> str:
    if value not in ("everysec", "always"):
        raise SettingError("RECOMART_REDIS_APPENDFSYNC", value, "everysec (default) or always")
    return value


def _monitoring(env: _Environment) -> MonitoringSettings:
    """The monitor DAG's thresholds: ``RECOMART_MONITOR_<FIELD>`` overrides each default."""
    defaults = MonitoringSettings()
    values = {}
    for name, default in vars(defaults).items():
        variable = f"RECOMART_MONITOR_{name.upper()}"
        values[name] = (
            env.integer(variable, default, minimum=1) if isinstance(default, int) else env.number(variable, default)
        )
    return MonitoringSettings(**values)


def _embedded_pg_url(state_dir: Path, host: str, port: int) -> str:
    """The embedded server's URL with the pipeline role's generated password (``<state>/secrets``)."""
    password = quote(secret(state_dir, "postgres_password"), safe="")
    return f"postgresql://{EMBEDDED_PG_USER}:{password}@{host}:{port}/postgres"


def _embedded_redis_url(state_dir: Path, host: str, port: int) -> str:
    return f"redis://:{quote(secret(state_dir, 'redis_password'), safe='')}@{host}:{port}/0"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default: ``os.environ``); empty values count as unset.

    Raises :class:`SettingError` (one line naming the variable) for a value RecoMart cannot use.
    With no ``RECOMART_PG_URL`` / ``RECOMART_REDIS_URL`` the embedded servers' generated passwords
    are read from (or first written to) ``<state>/secrets``.
    """
    env = _Environment(os.environ if environ is None else environ)
    _env = env.text

    root = Path(_env("RECOMART_PROJECT_ROOT", str(PROJECT_ROOT)))
    state_dir = Path(_env("RECOMART_STATE_DIR", str(root / ".state"))).resolve()
    dataset = _env("RECOMART_DATASET", "generated")
    # each data set gets its own databases and Feast project by default, so they never mix
    prefix = _env("RECOMART_DB_PREFIX", "recomart" if dataset == "generated" else f"recomart_{dataset}")
    pg_url = _env("RECOMART_PG_URL")
    redis_url = _env("RECOMART_REDIS_URL")
    bind_host = _env("RECOMART_BIND_HOST", DEFAULT_BIND_HOST)
    local_host = client_host(bind_host)
    pg_port = env.port("RECOMART_EMBEDDED_PG_PORT", EMBEDDED_PG_PORT)
    redis_port = env.port("RECOMART_EMBEDDED_REDIS_PORT", EMBEDDED_REDIS_PORT)
    redis_url = _redis_url("RECOMART_REDIS_URL", redis_url) if redis_url else None
    resolved_redis = redis_url or _embedded_redis_url(state_dir, local_host, redis_port)
    return Settings(
        project_root=root,
        state_dir=state_dir,
        pg_server_url=(
            _pg_server_url("RECOMART_PG_URL", pg_url) if pg_url else _embedded_pg_url(state_dir, local_host, pg_port)
        ),
        redis_url=resolved_redis,
        embedded_pg=pg_url is None,
        embedded_redis=redis_url is None,
        db_prefix=prefix,
        dataset=dataset,
        landing_dir=Path(_env("RECOMART_LANDING_DIR", str(state_dir / "landing"))).resolve(),
        uci_dir=Path(_env("RECOMART_UCI_DIR", str(root.parent / "shared/data/uci-online-retail/by-day"))),
        catalog_api_host=_env("RECOMART_CATALOG_HOST", "127.0.0.1"),
        catalog_api_port=env.port("RECOMART_CATALOG_PORT", 8765),
        catalog_full_snapshot_hours=env.number("RECOMART_CATALOG_FULL_SNAPSHOT_HOURS", 24.0),
        airflow_api_host=_env("RECOMART_AIRFLOW_API_HOST", "127.0.0.1"),
        airflow_port=env.port("RECOMART_AIRFLOW_PORT", 8080),
        mlflow_port=env.port("RECOMART_MLFLOW_PORT", 5000),
        bind_host=bind_host,
        embedded_pg_port=pg_port,
        embedded_redis_port=redis_port,
        model_name=_env("RECOMART_MODEL_NAME", "recomart_recommender"),
        feast_project=_env("RECOMART_FEAST_PROJECT", prefix),
        seed=env.integer("RECOMART_SEED", 42),
        train_mode=_env("RECOMART_TRAIN_MODE", "implicit"),
        train_split=_env("RECOMART_TRAIN_SPLIT", "time"),
        gate_metric=_env("RECOMART_GATE_METRIC", "ndcg_at_10"),
        gate_margin=env.number("RECOMART_GATE_MARGIN", 0.0),
        train_ranker=_env("RECOMART_TRAIN_RANKER", "validation"),
        generator_users=env.integer("RECOMART_USERS", 2000, minimum=1),
        generator_items=env.integer("RECOMART_ITEMS", 500, minimum=1),
        generator_days=env.integer("RECOMART_DAYS", 60, minimum=1),
        api_port=env.port("RECOMART_API_PORT", 8000),
        api_workers=env.integer("RECOMART_API_WORKERS", 2, minimum=1, maximum=64),
        api_list_memory=env.integer("RECOMART_API_LIST_MEMORY", 50_000, minimum=0),
        stream_max_len=env.integer("RECOMART_STREAM_MAX_LEN", 500_000, minimum=1),
        stream_batch_size=env.integer("RECOMART_STREAM_BATCH_SIZE", 1000, minimum=1, maximum=10_000),
        stream_claim_idle_s=env.number("RECOMART_STREAM_CLAIM_IDLE_S", 15.0),
        redis_appendfsync=_appendfsync(_env("RECOMART_REDIS_APPENDFSYNC", "everysec")),
        log_exposures=bool(env.integer("RECOMART_LOG_EXPOSURES", 1, minimum=0, maximum=1)),
        stream_metrics_port=env.port("RECOMART_STREAM_METRICS_PORT", 9108),
        serving_stats_flush_s=env.number("RECOMART_SERVING_STATS_FLUSH_S", 60.0),
        monitoring=_monitoring(env),
        alert_webhook=_env("RECOMART_ALERT_WEBHOOK"),
        recommend_shards=env.integer("RECOMART_RECOMMEND_SHARDS", 4, minimum=1, maximum=256),
        executor=_executor(_env("RECOMART_EXECUTOR", "local")),
        celery_broker_url=_celery_broker_url(env, resolved_redis),
        celery_workers=env.integer("RECOMART_CELERY_WORKERS", 2, minimum=1, maximum=32),
        celery_concurrency=env.integer("RECOMART_CELERY_CONCURRENCY", 2, minimum=1, maximum=64),
        flower_port=env.port("RECOMART_FLOWER_PORT", 5555),
        # prometheus_client's own variable: set by `recomart serve` for multi-process metrics
        metrics_multiproc_dir=_env("PROMETHEUS_MULTIPROC_DIR"),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()


def process_environment() -> dict[str, str]:
    """A copy of this process's environment, for starting tools (dbt, feast, airflow) as subprocesses."""
    return dict(os.environ)
