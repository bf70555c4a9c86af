"""Unchanged inputs are recognised without a service: an ingest that loaded nothing, Feast definitions."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from recomart.features.apply_state import definitions_digest
from recomart.tasks.ingest_events import unchanged_reason

DAYS = [date(2026, 11, 1), date(2026, 11, 2)]


def test_a_load_of_unchanged_or_missing_files_changed_nothing() -> None:
    reason = unchanged_reason(DAYS, {"loaded": 0, "unchanged": 3, "skipped_missing": 1})
    assert reason == "nothing new loaded for 2026-11-01 .. 2026-11-02 (3 files unchanged, 1 missing): no asset event"
    assert unchanged_reason(DAYS, {"loaded": 1, "unchanged": 3}) is None
    assert unchanged_reason(DAYS, {"loaded": 0, "empty": 1}) is None  # a header-only file empties a day


def test_feast_definitions_digest_follows_the_files_and_the_resolved_config(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text("project: ${PROJECT}\n")
    (tmp_path / "views.py").write_text("A = 1\n")
    env = {"PROJECT": "p1"}
    first = definitions_digest(tmp_path, env)
    assert definitions_digest(tmp_path, env) == first
    assert definitions_digest(tmp_path, {"PROJECT": "p2"}) != first
    (tmp_path / "views.py").write_text("A = 2\n")
    assert definitions_digest(tmp_path, env) != first
