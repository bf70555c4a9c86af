"""Background processes (Airflow components, catalog API, MLflow UI) with pid and log files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from recomart.config import Settings


def _pidfile(s: Settings, name: str) -> Path:
    # keyed by the deployment's database prefix, so a test run never mistakes the demo's process for its own
    return s.state_dir / "run" / f"{s.db_prefix}-{name}.pid"


def logfile(s: Settings, name: str) -> Path:
    return s.state_dir / "logs" / f"{s.db_prefix}-{name}.log"


def running_pid(s: Settings, name: str) -> int | None:
    """The pid of background process ``name`` if it is alive."""
    path = _pidfile(s, name)
    if not path.exists():
        return None
    pid = int(path.read_text().strip())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    return pid


def start(s: Settings, name: str, args: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> int:
    """Start ``args`` detached in its own process group, logging to ``.state/logs/<name>.log``."""
    pid = running_pid(s, name)
    if pid:
        return pid
    log_path = logfile(s, name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _pidfile(s, name).parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(args),
            env=env,
            cwd=cwd or s.project_root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pidfile(s, name).write_text(str(proc.pid))
    return proc.pid


def stop(s: Settings, name: str, timeout_s: float = 20.0) -> bool:
    """Stop background process ``name`` and its children; True if one was running."""
    pid = running_pid(s, name)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _pidfile(s, name).unlink(missing_ok=True)
    return True


def wait_http(url: str, name: str, timeout_s: float = 120.0, log_path: Path | None = None) -> None:
    """Wait until ``url`` answers with a status below 500, or raise naming the service and its log."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            last_error = str(exc)
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.5)
    where = f"; see {log_path}" if log_path else ""
    raise RuntimeError(f"{name} did not become healthy at {url} within {timeout_s:.0f}s ({last_error}){where}")
