"""The static checks ``./recomart test`` runs before pytest (`.pre-commit-config.yaml` runs the same).

- ``ruff format --check`` and ``ruff check`` on the repository;
- ``lint-imports``: the import contracts of ``pyproject.toml`` (docs/architecture.md's module map);
- ``mypy`` on ``ranking`` and ``model`` (``[tool.mypy]`` in ``pyproject.toml``);
- ``sqlfluff lint`` of ``dbt_project/`` with the dbt templater, once per data set (each disables the
  other's models), both against the server's ``postgres`` database: the templater compiles through
  dbt, and ``to_utc_timestamptz`` asks the catalog for column types, which the ``postgres`` database
  never has, so the result does not depend on what a warehouse holds.

The slow ones (mypy, sqlfluff) can be skipped (``./recomart test --no-static``); they run at the
same time, each in its own process. Every failure ends with one line naming the check and the fix.
``python -m recomart.static_checks [NAME ...]`` runs them (or those named) without pytest.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from recomart import local_postgres
from recomart.config import Settings, settings
from recomart.netcheck import check_postgres
from recomart.tools import tool_env, venv_bin

DATASETS = ("generated", "uci")


@dataclass(frozen=True)
class StaticCheck:
    """One check: a console script of the venv with its arguments, where it runs, and the fix."""

    name: str
    args: tuple[str, ...]
    fix: str
    cwd: Path
    env: Mapping[str, str] | None = None
    slow: bool = False  # skipped by `./recomart test --no-static`; run in parallel
    needs_postgres: bool = False


@dataclass(frozen=True)
class CheckResult:
    check: StaticCheck
    returncode: int
    output: str
    seconds: float


def fast_checks(root: Path) -> list[StaticCheck]:
    """ruff (format, lint) and the import contracts: a few seconds together."""
    return [
        StaticCheck("ruff format", ("ruff", "format", "--check", "."), "run `.venv/bin/ruff format .`", root),
        StaticCheck("ruff check", ("ruff", "check", "."), "fix what it lists (`.venv/bin/ruff check --fix .`)", root),
        StaticCheck(
            "import contracts",
            ("lint-imports", "--no-logo"),
            "keep imports one-way as in docs/architecture.md's module map ([tool.importlinter] in pyproject.toml)",
            root,
        ),
    ]


def sqlfluff_env(s: Settings, dataset: str) -> dict[str, str]:
    """The deployment's tool environment for one sqlfluff pass: ``dataset``'s models enabled, the
    server's ``postgres`` database, dbt's target and logs under ``<state>/sqlfluff/<dataset>``."""
    work = s.state_dir / "sqlfluff" / dataset
    return {
        **tool_env(s),
        "RECOMART_DATASET": dataset,
        "PGDATABASE": "postgres",
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
    }


def slow_checks(s: Settings) -> list[StaticCheck]:
    """mypy on ranking and model, and one sqlfluff pass per data set."""
    mypy = StaticCheck(
        "mypy", ("mypy",), "fix the type errors it lists in ranking/ or model/", s.project_root, slow=True
    )
    sqlfluff = [
        StaticCheck(
            f"sqlfluff ({dataset} models)",
            ("sqlfluff", "lint", "models", "snapshots", "--processes", "1"),
            "fix the SQL it lists (CONTRIBUTING.md: how to run `sqlfluff fix` on a model)",
            s.dbt_project_dir,
            env=sqlfluff_env(s, dataset),
            slow=True,
            needs_postgres=True,
        )
        for dataset in DATASETS
    ]
    return [mypy, *sqlfluff]


def run_check(check: StaticCheck) -> CheckResult:
    """Run ``check`` with its output captured."""
    started = time.monotonic()
    proc = subprocess.run(
        [venv_bin(check.args[0]), *check.args[1:]],
        cwd=check.cwd,
        env=dict(check.env) if check.env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return CheckResult(check, proc.returncode, proc.stdout, time.monotonic() - started)


def _ensure_postgres(s: Settings) -> None:
    """Start the embedded Postgres when it is the configured one; raise ServiceUnavailable if unreachable."""
    if s.embedded_pg:
        local_postgres.start(s)
    setting = "embedded" if s.embedded_pg else "RECOMART_PG_URL"
    check_postgres(s.pg_url("postgres"), setting, "sqlfluff's dbt templater compiles against it")


def report(result: CheckResult, write: Callable[[str], None]) -> None:
    """The check's output when it failed, then one line: passed or failed, its time, and the fix."""
    name, seconds = result.check.name, f"{result.seconds:.1f} s"
    if result.returncode == 0:
        write(f"static check passed: {name} ({seconds})")
        return
    write(result.output.rstrip())
    write(f"static check FAILED: {name} ({seconds}, exit {result.returncode}): {result.check.fix}")


def select_checks(s: Settings, *, slow: bool = True, only: Sequence[str] = ()) -> list[StaticCheck]:
    """The checks to run: all, without the slow ones, or those whose name starts with one of ``only``."""
    checks = [*fast_checks(s.project_root), *slow_checks(s)]
    return [c for c in checks if (slow or not c.slow) and (not only or c.name.startswith(tuple(only)))]


def run_static_checks(
    s: Settings, *, slow: bool = True, only: Sequence[str] = (), write: Callable[[str], None] | None = None
) -> int:
    """Run the fast checks one after the other, then the slow ones (mypy, sqlfluff) at the same time.

    Every check runs even after one fails, so one run lists every problem. Returns 0 when all passed,
    else 1."""
    out = write or (lambda line: print(line, file=sys.stderr, flush=True))
    checks = select_checks(s, slow=slow, only=only)
    results: list[CheckResult] = []
    for check in (c for c in checks if not c.slow):
        results.append(run_check(check))
        report(results[-1], out)
    parallel = [c for c in checks if c.slow]
    if any(c.needs_postgres for c in parallel):
        _ensure_postgres(s)
    if parallel:
        with ThreadPoolExecutor(max_workers=len(parallel)) as pool:
            for result in pool.map(run_check, parallel):
                report(result, out)
                results.append(result)
    return 0 if all(result.returncode == 0 for result in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recomart.static_checks [NAME ...]``: the checks whose names start with a NAME
    (``ruff``, ``import``, ``mypy``, ``sqlfluff``), or all of them; .pre-commit-config.yaml runs
    the sqlfluff passes this way."""
    return run_static_checks(settings(), only=sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
