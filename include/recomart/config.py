"""RecoMart settings: the only module that reads the process environment.

Every other module receives a :class:`Settings` (or plain values derived from
it).  Defaults work on a laptop: with no ``RECOMART_PG_URL`` / ``RECOMART_REDIS_URL``
the project starts embedded Postgres and Redis under ``.state/``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]

EMBEDDED_PG_PORT = 54329
EMBEDDED_REDIS_PORT = 63799


def _with_database(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


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
    def all_databases(self) -> tuple[str, ...]:
        return (self.warehouse_db, self.airflow_db, self.mlflow_db, self.feast_registry_db)

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
    def mlflow_tracking_uri(self) -> str:
        return self.pg_url(self.mlflow_db).replace("postgresql://", "postgresql+psycopg2://", 1)

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


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default: ``os.environ``); empty values count as unset."""
    source = os.environ if environ is None else environ

    def _env(name: str, default: str | None = None) -> str | None:
        return source.get(name) or default

    root = Path(_env("RECOMART_PROJECT_ROOT", str(PROJECT_ROOT)))
    state_dir = Path(_env("RECOMART_STATE_DIR", str(root / ".state"))).resolve()
    dataset = _env("RECOMART_DATASET", "generated")
    # each data set gets its own databases and Feast project by default, so they never mix
    prefix = _env("RECOMART_DB_PREFIX", "recomart" if dataset == "generated" else f"recomart_{dataset}")
    pg_url = _env("RECOMART_PG_URL")
    redis_url = _env("RECOMART_REDIS_URL")
    return Settings(
        project_root=root,
        state_dir=state_dir,
        pg_server_url=pg_url or f"postgresql://postgres@127.0.0.1:{EMBEDDED_PG_PORT}/postgres",
        redis_url=redis_url or f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0",
        embedded_pg=pg_url is None,
        embedded_redis=redis_url is None,
        db_prefix=prefix,
        dataset=dataset,
        landing_dir=Path(_env("RECOMART_LANDING_DIR", str(state_dir / "landing"))).resolve(),
        uci_dir=Path(_env("RECOMART_UCI_DIR", str(root.parent / "shared/data/uci-online-retail/by-day"))),
        catalog_api_host=_env("RECOMART_CATALOG_HOST", "127.0.0.1"),
        catalog_api_port=int(_env("RECOMART_CATALOG_PORT", "8765")),
        catalog_full_snapshot_hours=float(_env("RECOMART_CATALOG_FULL_SNAPSHOT_HOURS", "24")),
        airflow_api_host=_env("RECOMART_AIRFLOW_API_HOST", "127.0.0.1"),
        airflow_port=int(_env("RECOMART_AIRFLOW_PORT", "8080")),
        mlflow_port=int(_env("RECOMART_MLFLOW_PORT", "5000")),
        model_name=_env("RECOMART_MODEL_NAME", "recomart_recommender"),
        feast_project=_env("RECOMART_FEAST_PROJECT", prefix),
        seed=int(_env("RECOMART_SEED", "42")),
        train_mode=_env("RECOMART_TRAIN_MODE", "implicit"),
        train_split=_env("RECOMART_TRAIN_SPLIT", "time"),
        gate_metric=_env("RECOMART_GATE_METRIC", "ndcg_at_10"),
        gate_margin=float(_env("RECOMART_GATE_MARGIN", "0.0")),
        generator_users=int(_env("RECOMART_USERS", "2000")),
        generator_items=int(_env("RECOMART_ITEMS", "500")),
        generator_days=int(_env("RECOMART_DAYS", "60")),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()


def process_environment() -> dict[str, str]:
    """A copy of this process's environment, for starting tools (dbt, feast, airflow) as subprocesses."""
    return dict(os.environ)
