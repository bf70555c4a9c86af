"""The transform DAG's last run as the dashboard shows it: dbt's own run_results.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from recomart.dashboard.pages import transform_outcome
from recomart.transform.dbt import last_build


def _write_results(target: Path, statuses: list[str]) -> None:
    target.mkdir(parents=True)
    payload = {
        "metadata": {"generated_at": "2026-12-02T03:14:15.000000Z"},
        "elapsed_time": 41.6,
        "args": {"which": "build"},
        "results": [
            {"unique_id": f"model.recomart.m{i}", "status": status, "execution_time": 1.0}
            for i, status in enumerate(statuses)
        ],
    }
    (target / "run_results.json").write_text(json.dumps(payload))


def test_last_build_counts_nodes_per_status(tmp_path: Path) -> None:
    _write_results(tmp_path / "target", ["success", "success", "pass", "warn"])
    build = last_build(tmp_path / "target")
    assert build == {
        "command": "build",
        "finished_at": datetime(2026, 12, 2, 3, 14, 15, tzinfo=UTC),
        "elapsed_s": 41.6,
        "statuses": {"success": 2, "pass": 1, "warn": 1},
    }


def test_a_failed_node_marks_the_transform_row_failed(tmp_path: Path) -> None:
    _write_results(tmp_path / "ok", ["success", "pass"])
    _write_results(tmp_path / "bad", ["success", "fail", "error"])
    assert transform_outcome(tmp_path / "ok")["status"] == "success"
    bad = transform_outcome(tmp_path / "bad")
    assert bad["status"] == "failed" and bad["detail"] == "dbt build in 42 s: 1 error, 1 fail, 1 success"


def test_no_run_results_yet(tmp_path: Path) -> None:
    assert last_build(tmp_path) is None
    assert transform_outcome(tmp_path)["status"] == "no run"
