"""The demo's report names the version its own train run registered, not the latest one (issue 13,
point 6: two demos at once both printed the later run's version)."""

from __future__ import annotations

import pytest

from recomart.model.promotion_log import last_registered_digest, record_promotion
from recomart.report import own_decision

pytestmark = pytest.mark.integration


def _row(version: str, run_id: str, decision: str) -> dict:
    return {
        "model_name": "m",
        "model_version": version,
        "decision": decision,
        "reason": f"reason {version}",
        "metrics": {"model": {"ndcg_at_10": float(version) / 10}},
        "inputs_digest": f"digest-{version}",
        "airflow_run_id": run_id,
    }


def test_each_run_reads_its_own_version_when_another_registered_later(warehouse_dsn: str) -> None:
    record_promotion(warehouse_dsn, _row("7", "manual__run-a", "promoted"))
    record_promotion(warehouse_dsn, _row("8", "manual__run-b", "rejected"))  # the other demo, later

    mine, heading = own_decision(warehouse_dsn, "manual__run-a")
    assert mine is not None and (mine["version"], mine["decision"]) == ("7", "promoted")
    assert "manual__run-a" in heading
    theirs, _ = own_decision(warehouse_dsn, "manual__run-b")
    assert theirs is not None and (theirs["version"], theirs["decision"]) == ("8", "rejected")

    # a run whose train registered nothing (inputs unchanged) says so and names the version it kept
    decision, heading = own_decision(warehouse_dsn, "manual__run-c")
    assert decision is not None and decision["version"] == "8"
    assert heading == "this run's train (manual__run-c) registered no version: inputs unchanged since version 8"
    assert last_registered_digest(warehouse_dsn, "m") == ("8", "digest-8")
