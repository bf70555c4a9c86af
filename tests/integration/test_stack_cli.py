"""``./recomart up`` and ``down`` as a user runs them: real processes, real sockets.

* ``up`` with the Airflow port held by a listener this test owns fails within seconds, naming the
  port, the setting and the holder (this process's pid and command line), and starts nothing;
* a background process that dies while ``up`` waits for it fails the wait at once with its log tail;
* ``down`` with nothing running says so.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from recomart import processes
from recomart.config import Settings, load_settings
from recomart.processes import Health, StartFailed, wait_healthy
from recomart.progress import Board

pytestmark = pytest.mark.integration

UP_FAILS_WITHIN_S = 60


def _env(tmp_path: Path, free_port: Callable[[], int], **overrides: str) -> dict[str, str]:
    ports = {
        name: str(free_port())
        for name in ("RECOMART_AIRFLOW_PORT", "RECOMART_MLFLOW_PORT", "RECOMART_CATALOG_PORT", "RECOMART_API_PORT")
    }
    return {
        **os.environ,
        **ports,
        "RECOMART_STATE_DIR": str(tmp_path / "state"),
        "RECOMART_DB_PREFIX": f"stackcli{os.getpid()}",
        **overrides,
    }


def _recomart(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recomart.cli", *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def test_up_with_the_airflow_port_taken_fails_naming_the_holder(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = _env(tmp_path, free_port, RECOMART_AIRFLOW_PORT=str(port))
        started = time.monotonic()
        result = _recomart(["up"], env, UP_FAILS_WITHIN_S)
        took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < UP_FAILS_WITHIN_S
    message = result.stderr
    assert "Traceback" not in message, message
    assert f"port 127.0.0.1:{port} (RECOMART_AIRFLOW_PORT, for the Airflow api-server) is taken by" in message
    assert f"pid {os.getpid()} (" in message  # the holder: this test process ...
    assert "pytest" in message.split(f"pid {os.getpid()} (", 1)[1]  # ... and its command line
    assert "Nothing was started" in message
    run_dir = tmp_path / "state" / "run"
    assert not run_dir.exists() or not list(run_dir.iterdir()), "up started something before failing"


def test_down_with_nothing_running_says_so(tmp_path: Path, free_port: Callable[[], int]) -> None:
    result = _recomart(["down"], _env(tmp_path, free_port), 120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nothing was running: no process of deployment 'stackcli")
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout  # no line per process


def test_a_process_dying_while_waited_for_fails_with_its_log_tail(tmp_path: Path) -> None:
    """A real child that logs a bind error and exits, as an api-server on a taken port does."""
    s: Settings = load_settings({**os.environ, "RECOMART_STATE_DIR": str(tmp_path), "RECOMART_DB_PREFIX": "dying"})
    processes.logfile(s, "doomed").parent.mkdir(parents=True)
    processes.logfile(s, "doomed").write_text("a line of an earlier run\n")
    log_from = {"doomed": processes.log_size(s, "doomed")}
    script = "import time; print('starting', flush=True); time.sleep(1); print('[Errno 98] Address already in use')"
    processes.start(s, "doomed", [sys.executable, "-c", script], dict(os.environ))
    started = time.monotonic()
    never = Health("the doomed server", "doomed", lambda: "not answering", timeout_s=120)
    with pytest.raises(StartFailed) as failed, Board() as board:
        wait_healthy(s, [never], board, log_from)
    assert time.monotonic() - started < 30, "the death was noticed late"
    message = str(failed.value)
    assert message.startswith("the doomed server exited while starting; the end of ")
    assert "Address already in use" in message and "starting" in message
    assert "earlier run" not in message  # only what this start logged
