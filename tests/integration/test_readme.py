"""Every command block of README.md runs as written, in the README's order, as a new user would run it
(issue 13, point 1).

The blocks run with ``bash -e -o pipefail`` in a sandbox: a folder holding links to every top-level
entry of the checkout except ``.state``, so ``./recomart`` and relative paths such as ``.state/gx_docs``
work as written but on this test's own state folder, embedded Postgres and Redis and free ports. The
README's default ports (8000 API, 8080 Airflow, 5000 MLflow, 8765 catalog, 8081 and 8082 for the docs
servers) are mapped to free ones in the blocks' text, and the generated shop is smaller than the
default (``RECOMART_USERS`` and so on). SQL blocks run statement by statement as ``recomart_reader``.
Blocks marked ``skip`` are reported as skipped with their reason (``pytest -ra``); blocks marked
``background PORT`` run until the end of their README section.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from readme_blocks import NO_PORT_WAIT_S, README, Block, readme_blocks

from recomart.config import load_settings
from recomart.environment import reader_env

pytestmark = pytest.mark.integration

REPO = README.parent
BLOCKS = readme_blocks(README.read_text())
BLOCK_TIMEOUT_S = 900
SERVER_START_TIMEOUT_S = 180
SHOP = {"RECOMART_USERS": "400", "RECOMART_ITEMS": "150", "RECOMART_DAYS": "30"}
FREE_DOCS_PORTS = (8081, 8082)


@dataclass
class Sandbox:
    """The folder blocks run in, their environment, the README-to-test port map and the background
    servers still running (by README section)."""

    folder: Path
    env: dict[str, str]
    ports: dict[int, int]
    logs: Path
    servers: dict[str, list[subprocess.Popen]] = field(default_factory=dict)

    def text_of(self, block: Block) -> str:
        """The block's text with the README's default ports replaced by this sandbox's."""
        pattern = "|".join(str(port) for port in self.ports)
        return re.sub(rf"(?<=[:\s])({pattern})\b", lambda m: str(self.ports[int(m[1])]), block.text)

    def stop_servers(self, keep_section: str | None = None) -> None:
        for section in [name for name in self.servers if name != keep_section]:
            for process in self.servers.pop(section):
                _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _sandbox_folder(root: Path) -> Path:
    folder = root / "checkout"
    folder.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in {".state", ".git"}:
            (folder / entry.name).symlink_to(entry)
    return folder


def _require_current_venv() -> None:
    """The sandbox links the checkout's .venv; ./recomart would try to rebuild it (and fail on the link)
    if the lock or pyproject.toml changed since it was installed."""
    stamp = REPO / ".venv" / ".recomart-installed"
    stale = [
        name for name in ("requirements.txt", "pyproject.toml") if (REPO / name).stat().st_mtime > stamp.stat().st_mtime
    ]
    if stale:
        pytest.fail(f".venv is older than {' and '.join(stale)}: run ./recomart setup (./recomart test does) first")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]) -> Iterator[Sandbox]:
    _require_current_venv()
    folder = _sandbox_folder(tmp_path_factory.mktemp("readme"))
    ports = {8000: free_port(), 8080: free_port(), 5000: free_port(), 8765: free_port()}
    ports |= {port: free_port() for port in FREE_DOCS_PORTS}
    env = {
        **os.environ,
        **SHOP,
        "RECOMART_STATE_DIR": str(folder / ".state"),
        "RECOMART_PG_URL": "",
        "RECOMART_REDIS_URL": "",
        "RECOMART_EMBEDDED_PG_PORT": str(free_port()),
        "RECOMART_EMBEDDED_REDIS_PORT": str(free_port()),
        "RECOMART_API_PORT": str(ports[8000]),
        "RECOMART_AIRFLOW_PORT": str(ports[8080]),
        "RECOMART_MLFLOW_PORT": str(ports[5000]),
        "RECOMART_CATALOG_PORT": str(ports[8765]),
    }
    env.pop("VIRTUAL_ENV", None)
    box = Sandbox(folder, env, ports, tmp_path_factory.mktemp("readme-logs"))
    yield box
    box.stop_servers()
    for command in (["./recomart", "down"], ["./recomart", "services", "down"]):
        subprocess.run(command, cwd=folder, env=env, capture_output=True, timeout=300, check=False)


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode} before port {port} opened:\n{_tail(log)}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"port {port} did not open within {SERVER_START_TIMEOUT_S} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _run_background(box: Sandbox, block: Block) -> None:
    log = box.logs / f"{block.name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", box.text_of(block)],
            cwd=box.folder,
            env=box.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    box.servers.setdefault(block.section, []).append(process)
    if block.port is not None:
        _wait_for_port(box.ports.get(block.port, block.port), process, log)
        return
    time.sleep(NO_PORT_WAIT_S)
    if process.poll() is not None:
        pytest.fail(f"README.md:{block.line}: the background process exited with {process.returncode}:\n{_tail(log)}")


def _run_shell(box: Sandbox, block: Block) -> None:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", box.text_of(block)],
        cwd=box.folder,
        env=box.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        check=False,
    )
    took = time.monotonic() - started
    print(f"README.md:{block.line} ({block.section}) ran in {took:.1f} s")
    assert result.returncode == 0, (
        f"README.md:{block.line} ({block.section}) exited {result.returncode}:\n{block.text}\n"
        f"--- stdout (tail)\n{result.stdout[-4000:]}\n--- stderr (tail)\n{result.stderr[-4000:]}"
    )


def _statements(sql_text: str) -> list[str]:
    without_comments = "\n".join(line.split("--", 1)[0] for line in sql_text.splitlines())
    return [statement.strip() for statement in without_comments.split(";") if statement.strip()]


def _run_sql(box: Sandbox, block: Block) -> None:
    reader = reader_env(load_settings(box.env))
    conninfo = {
        "host": reader["PGHOST"],
        "port": reader["PGPORT"],
        "user": reader["PGUSER"],
        "password": reader["PGPASSWORD"],
        "dbname": reader["PGDATABASE"],
    }
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for statement in _statements(block.text):
            try:
                conn.execute(statement).fetchall()
            except psycopg.Error as error:
                pytest.fail(f"README.md:{block.line}: as {reader['PGUSER']}: {error}\n{statement}")


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_readme_block_runs_as_written(sandbox: Sandbox, block: Block) -> None:
    sandbox.stop_servers(keep_section=block.section)
    if block.marker == "skip":
        pytest.skip(f"README.md:{block.line} ({block.section}): {block.argument}")
    if block.marker == "background":
        _run_background(sandbox, block)
    elif block.language == "sql":
        _run_sql(sandbox, block)
    else:
        _run_shell(sandbox, block)
