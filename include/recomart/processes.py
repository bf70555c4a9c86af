"""Background processes (Airflow components, catalog API, MLflow UI) with pid and log files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from recomart.config import Settings
from recomart.progress import Board


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
    if not _alive(pid):
        path.unlink(missing_ok=True)
        return None
    return pid


def _alive(pid: int) -> bool:
    """True unless ``pid`` is gone or a zombie; a zombie child of this process (``up`` started it and
    it died) is reaped, so an exited component is seen as exited at once."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            zombie = stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return False
    if zombie:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return not zombie


def state(s: Settings, name: str) -> str:
    """``running``; ``exited`` (a pid file whose process is gone: it died or was killed); or ``absent``."""
    if not _pidfile(s, name).exists():
        return "absent"
    return "running" if running_pid(s, name) else "exited"


def log_size(s: Settings, name: str) -> int:
    """The current length of ``name``'s log: pass it to :func:`log_tail` to read only what came after."""
    path = logfile(s, name)
    return path.stat().st_size if path.exists() else 0


def log_tail(s: Settings, name: str, since: int = 0, lines: int = 20) -> str:
    """The last ``lines`` lines ``name`` logged after byte ``since`` (indented, for an error message)."""
    path = logfile(s, name)
    if not path.exists():
        return f"    (no log at {path})"
    with path.open("rb") as log:
        log.seek(since)
        text = log.read().decode("utf-8", "replace")
    tail = text.strip().splitlines()[-lines:] or ["(nothing logged)"]
    return "\n".join(f"    {line}" for line in tail)


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
        if not _alive(pid):
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
    while (problem := http_problem(url)) is not None:
        if time.monotonic() > deadline:
            where = f"; see {log_path}" if log_path else ""
            raise RuntimeError(f"{name} did not become healthy at {url} within {timeout_s:.0f}s ({problem}){where}")
        time.sleep(0.5)


def http_problem(url: str, timeout_s: float = 2.0) -> str | None:
    """None if ``url`` answers with a status below 500, else what went wrong (one line)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return None if response.status < 500 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return None if exc.code < 500 else f"HTTP {exc.code}"
    except OSError as exc:
        return str(getattr(exc, "reason", exc))


class StartFailed(RuntimeError):
    """A background process died or did not become healthy in time; the message ends with its log tail."""


@dataclass(frozen=True)
class Health:
    """How to tell that background process ``process`` (shown as ``label``) is ready.

    ``problem`` returns None once it is healthy, else what it is still waiting for.
    """

    label: str
    process: str
    problem: Callable[[], str | None]
    timeout_s: float = 180.0


def wait_healthy(
    s: Settings, checks: Sequence[Health], board: Board, log_from: dict[str, int], until: str | None = None
) -> list[Health]:
    """Poll the checks until all are healthy (or, with ``until``, until that label is), showing
    progress on ``board``; returns the checks still pending.

    Raises :class:`StartFailed` as soon as one process exits (its pid is gone) or one check
    passes its timeout, with that process's log after byte ``log_from[process]``.
    """
    pending = list(checks)
    for check in pending:
        board.add(check.label)
    while pending and (until is None or any(check.label == until for check in pending)):
        for check in list(pending):
            if running_pid(s, check.process) is None:
                board.finish(check.label, "exited")
                raise StartFailed(_failure(s, check, "exited while starting", log_from))
            problem = check.problem()
            if problem is None:
                board.finish(check.label, "healthy")
                pending.remove(check)
            elif board.waited(check.label) > check.timeout_s:
                board.finish(check.label, "not healthy")
                reason = f"was not healthy within {check.timeout_s:.0f} s ({problem})"
                raise StartFailed(_failure(s, check, reason, log_from))
        board.tick()
        if pending:
            time.sleep(0.5)
    return pending


def _failure(s: Settings, check: Health, reason: str, log_from: dict[str, int]) -> str:
    tail = log_tail(s, check.process, log_from.get(check.process, 0))
    return f"{check.label} {reason}; the end of {logfile(s, check.process)}:\n{tail}"
