"""The command line turns a bad setting or an unreachable service into one line, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from recomart.netcheck import ServiceUnavailable, check_postgres, check_redis


def _recomart(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECOMART_")}
    return subprocess.run(
        [sys.executable, "-m", "recomart.cli", *args],
        env={**clean, "RECOMART_STATE_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("RECOMART_PG_URL", "mysql://root:hunter2@db/shop", "RECOMART_PG_URL=mysql://root:***@db/shop: expected a"),
        ("RECOMART_PG_URL", "not-a-url", "RECOMART_PG_URL=not-a-url: expected a postgresql:// URL"),
        ("RECOMART_REDIS_URL", "redis://cache:six/0", "RECOMART_REDIS_URL=redis://cache:six/0: expected a host"),
        ("RECOMART_CATALOG_PORT", "http", "RECOMART_CATALOG_PORT=http: expected an integer from 1 to 65535"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line(tmp_path: Path, variable: str, value: str, expected: str) -> None:
    result = _recomart(["env"], tmp_path, **{variable: value})
    assert result.returncode == 2
    assert _one_line(result).startswith(f"recomart: {expected}")
    assert "hunter2" not in result.stderr


def test_an_unreachable_postgres_names_host_port_and_the_fix(tmp_path: Path, free_port: Callable[[], int]) -> None:
    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    result = _recomart(["features", "user", "u1"], tmp_path, RECOMART_PG_URL=url)
    assert result.returncode == 1
    line = _one_line(result)
    assert f"Postgres at 127.0.0.1:{port} (RECOMART_PG_URL) is not usable" in line
    assert "Connection refused" in line and "Fix: start that server, correct RECOMART_PG_URL" in line


def test_an_embedded_port_held_by_another_server_names_the_setting(tmp_path: Path) -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = str(foreign.getsockname()[1])
        result = _recomart(["services", "up"], tmp_path, RECOMART_EMBEDDED_PG_PORT=port)
    assert result.returncode == 1
    line = _one_line(result)
    assert f"port 127.0.0.1:{port} is taken by a server that is not the embedded Postgres" in line
    assert "RECOMART_EMBEDDED_PG_PORT" in line


def test_an_unreachable_redis_names_host_port_and_the_fix(free_port: Callable[[], int]) -> None:
    port = free_port()
    with pytest.raises(ServiceUnavailable) as raised:
        check_redis(f"redis://:hunter2@127.0.0.1:{port}/0", "RECOMART_REDIS_URL", "start it")
    message = str(raised.value)
    assert f"Redis at 127.0.0.1:{port} (RECOMART_REDIS_URL) is not usable" in message
    assert "Fix: start it" in message and "hunter2" not in message and "\n" not in message


def test_postgres_check_is_one_line_too(free_port: Callable[[], int]) -> None:
    port = free_port()
    with pytest.raises(ServiceUnavailable) as raised:
        check_postgres(f"postgresql://u:hunter2@127.0.0.1:{port}/db", "RECOMART_PG_URL", "start it")
    assert "\n" not in str(raised.value) and "hunter2" not in str(raised.value)
