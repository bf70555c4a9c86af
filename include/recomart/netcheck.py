"""Reachability of Postgres and Redis, with one-line errors that name the host, the port and the fix."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import psycopg


class ServiceUnavailable(RuntimeError):
    """A service cannot be used; the message is one line: what, where, why and how to fix it."""


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that no server holds now (the kernel's pick), for a private deployment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """True if a server could bind ``host:port`` now (with SO_REUSEADDR, as uvicorn and gunicorn do)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_holder(port: int) -> str:
    """Who listens on TCP ``port``: ``pid 123 (python -m http.server 8080)``, or what could not be seen."""
    import psutil

    try:
        listeners = [
            c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
    except psutil.AccessDenied:
        listeners = []
    pids = sorted({c.pid for c in listeners if c.pid is not None})
    if not pids:
        return f"a process this user cannot see (as root: ss -ltnp 'sport = :{port}')"
    described = []
    for pid in pids:
        try:
            command = " ".join(psutil.Process(pid).cmdline()) or psutil.Process(pid).name()
        except psutil.Error:
            command = "command line not readable"
        described.append(f"pid {pid} ({command[:200]})")
    return ", ".join(described)


def wait_for(host: str, port: int, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"{what} did not start listening on {host}:{port} within {timeout_s:.0f}s")
        time.sleep(0.2)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rsplit(" failed: ", 1)[-1].strip()


def check_postgres(url: str, setting: str, fix: str) -> None:
    """Connect to ``url``; raise :class:`ServiceUnavailable` naming host, port and ``fix`` if that fails.

    ``setting`` names where the URL came from (shown in the message).
    """
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 5432}"
    try:
        with psycopg.connect(url, connect_timeout=5):
            return
    except psycopg.OperationalError as exc:
        reason = _first_line(exc)
    if "password" in reason or "authentication" in reason:
        fix = f"check the user and password ({setting})"
    raise ServiceUnavailable(f"Postgres at {where} ({setting}) is not usable: {reason}. Fix: {fix}")


def redis_probe_options() -> dict:
    """Options for a redis-py client that answers at once: no retries (redis-py retries a refused or
    failed login with backoff, since AuthenticationError is a ConnectionError) and short timeouts."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_connect_timeout": 5, "socket_timeout": 5, "retry": Retry(NoBackoff(), 0)}


def check_redis(url: str, setting: str, fix: str) -> None:
    """PING ``url``; raise :class:`ServiceUnavailable` naming host, port and ``fix`` if that fails."""
    import redis

    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 6379}"
    try:
        with redis.Redis.from_url(url, **redis_probe_options()) as client:
            client.ping()
            return
    except redis.exceptions.AuthenticationError as exc:
        reason, fix = _first_line(exc), f"check the password ({setting})"
    except redis.exceptions.ResponseError as exc:  # NOAUTH: the server wants a password we did not give
        reason, fix = _first_line(exc), f"add the password to {setting}"
    except redis.exceptions.RedisError as exc:
        reason = _first_line(exc)
    raise ServiceUnavailable(f"Redis at {where} ({setting}) is not usable: {reason}. Fix: {fix}")
