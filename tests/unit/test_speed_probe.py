"""The machine-speed probe (:mod:`benchmarks.speed_probe`): fixed workloads, timed, so that a slower run
shows as a larger figure."""

from __future__ import annotations

import pytest

from benchmarks import speed_probe


def test_the_probe_times_both_workloads() -> None:
    figures = speed_probe.probe(repeats=1)
    assert set(figures) == {"numpy_sort_s", "python_loop_s"}
    assert all(seconds > 0 for seconds in figures.values())


def test_more_work_takes_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe measures its workloads, not a constant: ten times the loop takes longer."""
    short = speed_probe.probe(repeats=3)["python_loop_s"]
    monkeypatch.setattr(speed_probe, "LOOP_STEPS", speed_probe.LOOP_STEPS * 10)
    assert speed_probe.probe(repeats=1)["python_loop_s"] > 2 * short


def test_repeats_must_be_positive() -> None:
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        speed_probe.probe(repeats=0)
