"""Run the platform's command-line tools (airflow, dbt, feast, mlflow) against this deployment."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from recomart.config import Settings, process_environment
from recomart.environment import service_env


def tool_env(s: Settings) -> dict[str, str]:
    """This process's environment plus every service variable of ``s``."""
    return {**process_environment(), **service_env(s)}


def venv_bin(name: str) -> str:
    """Path of a console script installed next to the running interpreter."""
    return str(Path(sys.executable).parent / name)


class ToolError(RuntimeError):
    """A tool exited non-zero; the message carries the command and the tail of its output."""


def run_tool(
    args: Sequence[str],
    s: Settings,
    *,
    cwd: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> str:
    """Run ``args`` with the deployment's environment, stream lines to ``log``, return the output."""
    proc = subprocess.Popen(
        [venv_bin(args[0]), *args[1:]],
        cwd=cwd or s.project_root,
        env=tool_env(s),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if log:
            log(line.rstrip("\n"))
    if proc.wait() != 0:
        tail = "".join(lines[-40:])
        raise ToolError(f"`{' '.join(args)}` exited with {proc.returncode}; last output:\n{tail}")
    return "".join(lines)


def airflow_migrate(s: Settings, log: Callable[[str], None] | None = None) -> None:
    """Create or upgrade the Airflow metadata database (Postgres, never SQLite)."""
    s.airflow_home.mkdir(parents=True, exist_ok=True)
    run_tool(["airflow", "db", "migrate"], s, log=log)


def airflow_dags_test(
    s: Settings,
    dag_id: str,
    *,
    logical_date: str | None = None,
    conf: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> str:
    """``airflow dags test`` one DAG run in-process; raise unless the run ended in success."""
    args = ["airflow", "dags", "test", dag_id]
    if logical_date:
        args.append(logical_date)
    if conf:
        args += ["--conf", json.dumps(conf)]
    output = run_tool(args, s, log=log)
    if "state=success" not in output.replace("'", "").replace(" ", ""):
        raise ToolError(f"DAG {dag_id} did not finish in success; last output:\n{output[-3000:]}")
    return output
