"""Run dbt as a subprocess of this virtualenv's ``dbt`` executable.

dbt's dependencies can clash with Airflow's (dbt-common#336), so dbt never runs
in-process: ``run_dbt`` starts ``<venv>/bin/dbt``, streams its output lines to a
callback and, on failure, raises :class:`DbtBuildError` naming the failing
models and tests from ``target/run_results.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

FAILED_STATUSES = frozenset({"error", "fail"})
WARNED_STATUSES = frozenset({"warn"})
_TAIL_LINES = 30
_MESSAGE_CHARS = 400


@dataclass(frozen=True)
class DbtNodeResult:
    """One entry of ``run_results.json``: a model, test, snapshot or unit test."""

    unique_id: str
    status: str
    message: str | None
    failures: int | None
    execution_time: float

    @property
    def name(self) -> str:
        """The node name without its resource type and package (``model.recomart.x`` → ``x``)."""
        return self.unique_id.split(".", 2)[-1]


@dataclass(frozen=True)
class DbtResult:
    """Outcome of one dbt invocation."""

    args: tuple[str, ...]
    returncode: int
    elapsed_s: float
    target_path: Path
    results: tuple[DbtNodeResult, ...] = ()
    output_tail: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def failures(self) -> tuple[DbtNodeResult, ...]:
        """Nodes that errored or whose tests failed."""
        return tuple(r for r in self.results if r.status in FAILED_STATUSES)

    @property
    def warnings(self) -> tuple[DbtNodeResult, ...]:
        return tuple(r for r in self.results if r.status in WARNED_STATUSES)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (for logs and Airflow XComs)."""
        statuses: dict[str, int] = {}
        for r in self.results:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        return {
            "ok": self.ok,
            "args": list(self.args),
            "returncode": self.returncode,
            "elapsed_s": self.elapsed_s,
            "statuses": statuses,
            "failures": [{"unique_id": r.unique_id, "message": _short(r.message)} for r in self.failures],
            "warnings": [{"unique_id": r.unique_id, "message": _short(r.message)} for r in self.warnings],
        }


class DbtBuildError(RuntimeError):
    """dbt exited non-zero; ``result.failures`` lists the failing nodes."""

    def __init__(self, message: str, result: DbtResult) -> None:
        super().__init__(message)
        self.result = result

    @property
    def failures(self) -> tuple[DbtNodeResult, ...]:
        return self.result.failures


def dbt_executable() -> Path:
    """The ``dbt`` script installed next to the running interpreter."""
    return Path(sys.executable).parent / "dbt"


def read_run_results(path: Path) -> tuple[DbtNodeResult, ...]:
    """Parse a dbt ``run_results.json`` (empty when it is missing or unreadable)."""
    try:
        payload: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return ()
    return tuple(
        DbtNodeResult(
            unique_id=str(item.get("unique_id", "?")),
            status=str(item.get("status", "?")).lower(),
            message=item.get("message"),
            failures=item.get("failures"),
            execution_time=float(item.get("execution_time") or 0.0),
        )
        for item in payload.get("results", [])
    )


def last_build(target_path: Path) -> dict[str, Any] | None:
    """The last dbt invocation recorded in ``target_path/run_results.json``: ``command``, ``finished_at``
    (an aware datetime, or None), ``elapsed_s`` and ``statuses`` (nodes per status); None when there is none."""
    path = target_path / "run_results.json"
    try:
        payload: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    statuses: dict[str, int] = {}
    for node in read_run_results(path):
        statuses[node.status] = statuses.get(node.status, 0) + 1
    return {
        "command": str(payload.get("args", {}).get("which", "?")),
        "finished_at": _timestamp(payload.get("metadata", {}).get("generated_at")),
        "elapsed_s": float(payload.get("elapsed_time") or 0.0),
        "statuses": statuses,
    }


def _timestamp(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _short(message: str | None) -> str:
    text = " ".join((message or "").split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def failure_message(result: DbtResult) -> str:
    """A one-paragraph summary naming every failing node (or the end of dbt's output)."""
    head = f"dbt {' '.join(result.args)} failed (exit {result.returncode})"
    if result.failures:
        lines = [f"  {r.unique_id} [{r.status}]: {_short(r.message)}" for r in result.failures]
        return f"{head}; {len(lines)} failing node(s):\n" + "\n".join(lines)
    tail = "\n".join(f"  {line}" for line in result.output_tail[-15:])
    return f"{head} before producing node results; last output:\n{tail}"


def _resolve(path: Path | None, project_dir: Path, default: str) -> Path:
    if path is None:
        return project_dir / default
    path = Path(path)
    return path if path.is_absolute() else project_dir / path


def run_dbt(
    args: Sequence[str],
    *,
    project_dir: Path,
    env: Mapping[str, str],
    log: Callable[[str], Any] = print,
    profiles_dir: Path | None = None,
    target_path: Path | None = None,
    log_path: Path | None = None,
    check: bool = True,
) -> DbtResult:
    """Run ``dbt <args>`` for ``project_dir`` with ``env`` (over colours and usage statistics turned off);
    stream output lines to ``log``.

    ``profiles_dir`` defaults to ``project_dir`` (where profiles.yml lives).
    ``target_path``/``log_path`` (absolute, or relative to ``project_dir``) let
    concurrent runs keep their artefacts apart. With ``check`` (default), a
    non-zero exit raises :class:`DbtBuildError`.
    """
    project_dir = Path(project_dir).resolve()
    target = _resolve(target_path, project_dir, "target")
    command = [str(dbt_executable()), *args, "--project-dir", str(project_dir)]
    command += ["--profiles-dir", str(Path(profiles_dir or project_dir).resolve())]
    if target_path is not None:
        command += ["--target-path", str(target)]
    if log_path is not None:
        command += ["--log-path", str(_resolve(log_path, project_dir, "logs"))]
    run_results = target / "run_results.json"
    run_results.unlink(missing_ok=True)  # never report a previous run's results

    child_env = {"DBT_USE_COLORS": "False", "DBT_SEND_ANONYMOUS_USAGE_STATS": "False", **env}
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    started = time.monotonic()
    with subprocess.Popen(
        command,
        cwd=project_dir,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for raw_line in proc.stdout:
            line = raw_line.rstrip("\n")
            tail.append(line)
            log(line)
        returncode = proc.wait()
    result = DbtResult(
        args=tuple(args),
        returncode=returncode,
        elapsed_s=round(time.monotonic() - started, 3),
        target_path=target,
        results=read_run_results(run_results),
        output_tail=tuple(tail),
    )
    if check and returncode != 0:
        raise DbtBuildError(failure_message(result), result)
    return result


def dbt_build(
    project_dir: Path,
    env: Mapping[str, str],
    vars: Mapping[str, Any] | None = None,
    select: str | None = None,
    *,
    log: Callable[[str], Any] = print,
    target_path: Path | None = None,
    log_path: Path | None = None,
    full_refresh: bool = False,
    exclude_resource_types: Sequence[str] = (),
) -> DbtResult:
    """``dbt build`` (models, snapshots, unit and data tests) with optional ``--vars`` and ``--select``.

    ``select`` is dbt selection syntax; several space-separated selectors are
    passed as one ``--select`` list; ``exclude_resource_types`` (such as
    ``unit_test``) become ``--exclude-resource-type``. Raises :class:`DbtBuildError` on failure.
    """
    args = ["build"]
    if vars:
        args += ["--vars", json.dumps(dict(vars), sort_keys=True)]
    if select:
        args += ["--select", *select.split()]
    if exclude_resource_types:
        args += ["--exclude-resource-type", *exclude_resource_types]
    if full_refresh:
        args.append("--full-refresh")
    return run_dbt(args, project_dir=project_dir, env=env, log=log, target_path=target_path, log_path=log_path)
