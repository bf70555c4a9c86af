"""Shared fixtures: every test run gets its own databases and Redis key prefix on real servers."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from recomart import netcheck, services
from recomart.config import Settings, load_settings
from recomart.environment import service_env

RUN_TAG = f"t{uuid.uuid4().hex[:8]}"
UNIT_TESTS = Path(__file__).resolve().parent / "unit"
_MODULE_COUNTER = itertools.count(1)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/unit ``unit``: the fast path (``./recomart test --no-static -m unit``)."""
    for item in items:
        if UNIT_TESTS in item.path.parents:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def run_coroutine() -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Run a coroutine to its end on a new event loop in a thread of its own, and return its result
    (the browser tests' Playwright leaves an event loop running on the main thread, where
    ``asyncio.run`` refuses to start)."""

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    return run


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A factory of TCP ports nobody listens on right now (for servers a test starts itself)."""
    return netcheck.free_port


@pytest.fixture(scope="module")
def test_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for one test module: private databases, Feast project (Redis key prefix), model name
    and landing dir, created for the module and dropped after it, so modules never see each other's
    tables and concurrent runs on a shared server never collide."""
    landing = tmp_path_factory.mktemp("landing")
    tag = f"recomart_{RUN_TAG}_{next(_MODULE_COUNTER)}"
    overrides = {
        "RECOMART_DB_PREFIX": tag,
        "RECOMART_FEAST_PROJECT": tag,
        "RECOMART_MODEL_NAME": tag,
        "RECOMART_LANDING_DIR": str(landing),
        "RECOMART_CATALOG_PORT": str(netcheck.free_port()),
        "RECOMART_AIRFLOW_PORT": str(netcheck.free_port()),
        "RECOMART_MLFLOW_PORT": str(netcheck.free_port()),
        "RECOMART_API_PORT": str(netcheck.free_port()),
    }
    s = load_settings({**os.environ, **overrides})
    services.ensure_services(s)
    yield s
    services.drop_databases(s)
    client = redis.Redis.from_url(s.redis_url)
    for key in client.scan_iter(match=f"*{s.feast_project}*", count=1000):
        client.delete(key)


@pytest.fixture(scope="module")
def warehouse_dsn(test_settings: Settings) -> str:
    """libpq URL of this run's private warehouse database."""
    return test_settings.warehouse_url


@pytest.fixture(scope="module")
def private_database(warehouse_dsn: str) -> Iterator[Callable[[str], str]]:
    """A factory of extra databases ``<warehouse>_<suffix>`` on this module's server (returns the DSN),
    all dropped after the module."""
    created: list[str] = []

    def create(suffix: str) -> str:
        name = f"{conninfo_to_dict(warehouse_dsn)['dbname']}_{suffix}"
        with psycopg.connect(warehouse_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return make_conninfo(warehouse_dsn, dbname=name)

    yield create
    with psycopg.connect(warehouse_dsn, autocommit=True) as admin:
        for name in created:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def tool_env(test_settings: Settings) -> dict[str, str]:
    """Environment for subprocesses (airflow, dbt, feast) pointed at this run's services."""
    return {**os.environ, **service_env(test_settings)}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has no shared folder beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data sets not found at {SHARED_DATA} (needs ../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _surprise_per_pair_path_refused(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring and evaluation must never fall back to surprise's per-pair ``predict`` / ``test`` /
    ``estimate``: they raise in every test, except the reference checks marked ``surprise_reference``
    that compare our vectorised scores with one real ``predict``."""
    if request.node.get_closest_marker("surprise_reference"):
        return
    import surprise

    def refuse(*args, **kwargs):
        raise AssertionError("per-pair surprise prediction (SVD.predict/test/estimate) must not be used")

    for name in ("predict", "test", "estimate"):
        monkeypatch.setattr(surprise.SVD, name, refuse)
