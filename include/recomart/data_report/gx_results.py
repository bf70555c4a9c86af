"""The last Great Expectations validation runs, read from the results GX keeps on disk.

:func:`recomart.quality.validate_raw` and :func:`~recomart.quality.validate_marts` called with
``docs_dir`` (as the DAG tasks do, ``Settings.gx_docs_dir``) store one JSON result per suite and run
under ``<docs_dir>/_gx/validations/`` (GX's ``TupleFilesystemStoreBackend``: one folder level per
dot of the suite name, then run name, run time and batch; the newest 30 per suite are kept).  One
run (``raw-uci``, ``marts-generated``, ...) validates several suites at one run time; each file
names its suite and run (``suite_name``, ``meta.run_id``).  Reading them needs no GX import.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LAST_RUNS = 12
RESULTS_DIR = Path("_gx", "validations")


@dataclass
class GxRun:
    """One validation run: its name and time, and per outcome the expectations of all its suites."""

    run_name: str
    run_time: str  # ISO 8601 with offset, as GX stored it
    suites: list[str] = field(default_factory=list)
    passed: int = 0
    failed_warning: int = 0
    failed_critical: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # suite, expectation, severity

    @property
    def label(self) -> str:
        return f"{self.run_name} {self.run_time[:16].replace('T', ' ')} UTC"


def _severity(config: dict[str, Any]) -> str:
    """As :func:`recomart.quality.expectations.expectation_severity`: ``warning`` or ``critical``."""
    return "warning" if (config.get("meta") or {}).get("severity") == "warning" else "critical"


def _add_result(run: GxRun, suite: str, result: dict[str, Any]) -> None:
    run.suites.append(suite)
    for outcome in result.get("results", []):
        config = outcome.get("expectation_config") or {}
        if outcome.get("success"):
            run.passed += 1
            continue
        severity = _severity(config)
        if severity == "warning":
            run.failed_warning += 1
        else:
            run.failed_critical += 1
        name = (config.get("meta") or {}).get("name") or config.get("type", "?")
        run.failures.append({"suite": suite, "expectation": str(name), "severity": severity})


def last_runs(docs_dir: Path, limit: int = LAST_RUNS) -> list[GxRun]:
    """The newest ``limit`` runs under ``docs_dir`` (oldest first); empty without stored results.  A file
    that is not a readable result is skipped with a warning."""
    root = Path(docs_dir) / RESULTS_DIR
    runs: dict[tuple[str, str], GxRun] = {}
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            run_id, suite = result["meta"]["run_id"], str(result["suite_name"])
            key = (str(run_id["run_time"]), str(run_id["run_name"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping GX result %s: %s", path, exc)
            continue
        run = runs.setdefault(key, GxRun(run_name=key[1], run_time=key[0]))
        if suite not in run.suites:
            _add_result(run, suite, result)
    return [runs[key] for key in sorted(runs)[-limit:]]


def outcome_rows(runs: list[GxRun]) -> list[dict[str, Any]]:
    """``run, outcome, expectations`` per run and outcome (passed, failed (warning), failed (critical))."""
    rows = []
    for run in runs:
        for outcome, count in (
            ("passed", run.passed),
            ("failed (warning)", run.failed_warning),
            ("failed (critical)", run.failed_critical),
        ):
            rows.append({"run": run.label, "outcome": outcome, "expectations": count})
    return rows
