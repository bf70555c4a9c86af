"""No anonymous writes (issue 12, point 5): MLflow, Postgres and Redis each refuse a caller without
the password, and accept the credentialed path the pipeline uses.  Also: Redis persistence, the
in-place upgrade of servers an earlier RecoMart started without passwords, and the own-listener check.

Every server here is a real one, started in a private state folder on free ports and stopped after
the module: the embedded Postgres (SCRAM) and Redis (requirepass, AOF), and ``mlflow server
--app-name basic-auth`` on that Postgres.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from recomart import local_postgres, local_redis, mlflow_ui, processes, services
from recomart.config import Settings, load_settings
from recomart.netcheck import ServiceUnavailable, redis_probe_options, wait_for
from recomart.reader_access import READER_ROLE, reader_url

pytestmark = pytest.mark.integration


def _private_settings(state_dir: Path, free_port: Callable[[], int], **extra: str) -> Settings:
    """Embedded services in ``state_dir`` on free ports, whatever RECOMART_PG_URL / _REDIS_URL say."""
    return load_settings(
        {
            "RECOMART_STATE_DIR": str(state_dir),
            "RECOMART_PG_URL": "",
            "RECOMART_REDIS_URL": "",
            "RECOMART_EMBEDDED_PG_PORT": str(free_port()),
            "RECOMART_EMBEDDED_REDIS_PORT": str(free_port()),
            "RECOMART_MLFLOW_PORT": str(free_port()),
            "RECOMART_DB_PREFIX": "sec",
            **extra,
        }
    )


@contextlib.contextmanager
def _private_folder() -> Iterator[Path]:
    """A state folder outside pytest's own, whose parent is mode 0700: when we are root the embedded
    Postgres runs as another user, which must reach its data folder."""
    path = Path(tempfile.mkdtemp(prefix="recomart-security-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    with _private_folder() as path:
        yield path


@pytest.fixture(scope="module")
def embedded(free_port: Callable[[], int]) -> Iterator[Settings]:
    """This module's embedded Postgres and Redis, as `./recomart services up` starts them."""
    with _private_folder() as folder:
        s = _private_settings(folder, free_port)
        try:
            services.ensure_services(s)
            yield s
        finally:
            services.stop_embedded(s)


def _anonymous_pg(s: Settings, user: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(
        host=s.client_host, port=s.embedded_pg_port, user=user, dbname=s.warehouse_db, password="", connect_timeout=5
    )


# --- Postgres ---------------------------------------------------------------------------------
def test_sql_write_without_the_password_is_refused(embedded: Settings) -> None:
    for user in ("postgres", READER_ROLE):
        with pytest.raises(psycopg.OperationalError, match="password"):
            _anonymous_pg(embedded, user)
    wrong = embedded.warehouse_url.replace(embedded.pg_parts.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_sql_write_with_the_generated_password_works(embedded: Settings) -> None:
    secret_file = embedded.state_dir / "secrets" / "postgres_password"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert embedded.pg_parts.password == secret_file.read_text().strip()
    with psycopg.connect(embedded.warehouse_url, autocommit=True) as conn:
        conn.execute("create table if not exists public.written (x int)")
        conn.execute("insert into public.written values (1)")
        assert conn.execute("select count(*) from public.written").fetchone()[0] >= 1
        methods = {row[0] for row in conn.execute("select auth_method from pg_hba_file_rules")}
    assert methods == {"scram-sha-256"}


def test_the_reader_logs_in_with_its_password_and_cannot_write(embedded: Settings) -> None:
    assert (embedded.state_dir / "secrets" / "reader_password").stat().st_mode & 0o777 == 0o600
    with psycopg.connect(reader_url(embedded), autocommit=True) as conn:
        assert conn.execute("select current_user").fetchone()[0] == READER_ROLE
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("create table reco.not_allowed (x int)")


# --- Redis --------------------------------------------------------------------------------------
def test_redis_write_without_the_password_is_refused(embedded: Settings) -> None:
    for password in (None, "not-the-password"):
        port = embedded.embedded_redis_port
        client = redis.Redis(host=embedded.client_host, port=port, password=password, **redis_probe_options())
        with client, pytest.raises(redis.exceptions.AuthenticationError):
            client.set("recomart:anonymous", "1")


def test_redis_write_with_the_generated_password_works(embedded: Settings) -> None:
    with redis.Redis.from_url(embedded.redis_url) as client:
        assert client.set("recomart:credentialed", "1")
        assert client.get("recomart:credentialed") == b"1"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("save") == {"save": ""}


@pytest.mark.parametrize("hard", [False, True], ids=["clean-stop", "killed"])
def test_a_redis_key_survives_a_restart(embedded: Settings, hard: bool) -> None:
    with redis.Redis.from_url(embedded.redis_url) as client:
        client.set("recomart:survivor", f"hard={hard}")
    if hard:
        time.sleep(2.0)  # appendfsync everysec: a write older than a second is on disk
    assert local_redis.stop(embedded, hard=hard)
    local_redis.start(embedded)
    with redis.Redis.from_url(embedded.redis_url) as client:
        assert client.get("recomart:survivor") == f"hard={hard}".encode()


# --- MLflow ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlflow_server(embedded: Settings) -> Iterator[str]:
    """A real ``mlflow server --app-name basic-auth`` as `./recomart up` starts it; yields its URL."""
    processes.start(embedded, "mlflow-ui", mlflow_ui.server_args(embedded), mlflow_ui.server_env(embedded))
    try:
        processes.wait_http(f"{embedded.mlflow_url}/health", "MLflow UI", 240, processes.logfile(embedded, "mlflow-ui"))
        yield embedded.mlflow_url
    finally:
        processes.stop(embedded, "mlflow-ui")


def _post(url: str, body: dict, auth: tuple[str, str] | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_an_alias_change_through_the_mlflow_rest_api_needs_a_login(embedded: Settings, mlflow_server: str) -> None:
    from mlflow import MlflowClient

    # the pipeline's path: the tracking database itself, with the generated credentials
    client = MlflowClient(embedded.mlflow_tracking_uri, embedded.mlflow_tracking_uri)
    name = "security_probe"
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=(embedded.state_dir / "model").as_uri())
    client.set_registered_model_alias(name, "champion", "1")

    url = f"{mlflow_server}/api/2.0/mlflow/registered-models/alias"
    move = {"name": name, "alias": "champion", "version": "2"}
    assert _post(url, move) == 401
    assert _post(url, move, ("admin", "not-the-password")) == 401
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"

    assert _post(url, move, (mlflow_ui.ADMIN_USER, mlflow_ui.admin_password(embedded))) == 200
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"


def test_mlflow_users_live_in_postgres_with_a_generated_admin_password(embedded: Settings, mlflow_server: str) -> None:
    with psycopg.connect(embedded.pg_url(embedded.mlflow_auth_db)) as conn:
        admins = conn.execute("select username from users where is_admin").fetchall()
    assert admins == [(mlflow_ui.ADMIN_USER,)]
    for name in ("mlflow_admin_password", f"mlflow_auth_{embedded.db_prefix}.ini"):
        assert (embedded.state_dir / "secrets" / name).stat().st_mode & 0o777 == 0o600


# --- upgrades of servers started by an earlier RecoMart, and foreign listeners ----------------------
def test_a_trust_auth_cluster_is_upgraded_in_place(state_dir: Path, free_port: Callable[[], int]) -> None:
    s = _private_settings(state_dir, free_port)
    data_dir = local_postgres.pgdata(s)
    data_dir.mkdir()
    if os.geteuid() == 0:
        local_postgres._prepare_root_permissions(data_dir)
    pg_ctl = str(local_postgres._pg_bin("pg_ctl"))
    old_options = f"-h 127.0.0.1 -p {s.embedded_pg_port} -k {data_dir}"
    local_postgres._run_as_pg_user(
        [str(local_postgres._pg_bin("initdb")), "-D", str(data_dir), "--auth=trust", "-U", "postgres"]
    )
    log = ["-l", str(data_dir / "server.log")]  # without it the server holds pg_ctl's output pipes open
    local_postgres._run_as_pg_user([pg_ctl, "-D", str(data_dir), *log, "-w", "-o", old_options, "start"])
    try:
        trust = {"host": "127.0.0.1", "port": s.embedded_pg_port, "user": "postgres", "dbname": "postgres"}
        with psycopg.connect(**trust, autocommit=True) as conn:
            conn.execute("create table kept (x int); insert into kept values (42)")
            system_id = conn.execute("select system_identifier from pg_control_system()").fetchone()[0]
        local_postgres._run_as_pg_user([pg_ctl, "-D", str(data_dir), "-w", "stop"])

        local_postgres.start(s)  # the next start of the new code
        with psycopg.connect(s.pg_url("postgres")) as conn:
            assert conn.execute("select x from kept").fetchone()[0] == 42
            assert conn.execute("select system_identifier from pg_control_system()").fetchone()[0] == system_id
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(**trust, connect_timeout=5)
    finally:
        local_postgres.stop(s)


def test_a_running_redis_without_a_password_is_upgraded_in_place(state_dir: Path, free_port: Callable[[], int]) -> None:
    s = _private_settings(state_dir, free_port)
    workdir = local_redis.workdir(s)
    workdir.mkdir()
    old_style = ["--port", str(s.embedded_redis_port), "--bind", "127.0.0.1", "--daemonize", "yes"]
    old_style += ["--dir", str(workdir), "--pidfile", str(workdir / "redis.pid"), "--save", "", "--appendonly", "no"]
    subprocess.run([str(local_redis._redis_server_bin()), *old_style], check=True)
    try:
        wait_for("127.0.0.1", s.embedded_redis_port, "old-style Redis")
        redis.Redis(port=s.embedded_redis_port).set("kept", "1")
        local_redis.start(s)
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=s.embedded_redis_port, **redis_probe_options()).get("kept")
        with redis.Redis.from_url(s.redis_url) as client:
            assert client.get("kept") == b"1"
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        pid = int((workdir / "redis.pid").read_text())
        assert local_redis.stop(s)
        assert not psutil.pid_exists(pid)  # it shuts down (Redis refuses while its first AOF is being written)
    finally:
        local_redis.stop(s)


def test_a_foreign_listener_on_an_embedded_port_is_not_reused(state_dir: Path, free_port: Callable[[], int]) -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = str(foreign.getsockname()[1])
        s = _private_settings(state_dir, free_port, RECOMART_EMBEDDED_PG_PORT=port, RECOMART_EMBEDDED_REDIS_PORT=port)
        with pytest.raises(ServiceUnavailable, match="RECOMART_EMBEDDED_PG_PORT"):
            local_postgres.start(s)
        with pytest.raises(ServiceUnavailable, match="RECOMART_EMBEDDED_REDIS_PORT"):
            local_redis.start(s)


# --- listening addresses ------------------------------------------------------------------------------
def _listeners(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of ``pid`` and its descendants."""
    root = psutil.Process(pid)
    found = set()
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            sockets = proc.net_connections("inet")
            found |= {(c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN}
    return found


def test_everything_up_starts_listens_on_loopback_only(test_settings: Settings) -> None:
    """`./recomart up` (start_stack) with the default RECOMART_BIND_HOST: every socket its processes
    listen on, and the embedded servers', is on 127.0.0.1."""
    from recomart.datasets.generator import generate
    from recomart.stack import AIRFLOW_COMPONENTS, start_stack, stop_stack

    s = test_settings
    generate(s.landing_dir / "generated", users=40, items=20, days=2, seed=5)
    names = [*(f"airflow-{c}" for c in AIRFLOW_COMPONENTS), "mlflow-ui", "catalog-api"]
    try:
        start_stack(s)
        listening = {name: _listeners(processes.running_pid(s, name)) for name in names}
    finally:
        stop_stack(s)
    if s.embedded_pg:
        pid = int((local_postgres.pgdata(s) / "postmaster.pid").read_text().split()[0])
        listening["embedded Postgres"] = _listeners(pid)
    if s.embedded_redis:
        listening["embedded Redis"] = _listeners(int((local_redis.workdir(s) / "redis.pid").read_text()))
    served = {"airflow-api-server": s.airflow_port, "mlflow-ui": s.mlflow_port, "catalog-api": s.catalog_api_port}
    for name, port in served.items():
        assert port in {p for _, p in listening[name]}, listening
    exposed = {name: sockets for name, sockets in listening.items() if any(ip != "127.0.0.1" for ip, _ in sockets)}
    assert not exposed, f"listening beyond loopback: {exposed}"
