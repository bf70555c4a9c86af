"""The scale study's growth fit and size parsing on synthetic numbers."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ lives at the project root, outside the installed package
    sys.path.insert(0, str(ROOT))
F = importlib.import_module("benchmarks.scale_fit")
S = importlib.import_module("benchmarks.scale")

EVENTS = [1e5, 3e5, 1e6, 3e6]


@pytest.mark.parametrize("exponent", [0.8, 1.0, 1.3])
def test_exact_power_law_above_the_fixed_cost_gives_its_exponent_and_r2_one(exponent: float) -> None:
    seconds = [20.0 + 0.002 * x**exponent for x in EVENTS]
    fit = F.fit_growth(EVENTS, seconds, fixed_s=20.0)
    assert fit.exponent == pytest.approx(exponent, abs=1e-3)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.predict(1e7) == pytest.approx(20.0 + 0.002 * 1e7**exponent, rel=1e-6)


def test_not_subtracting_the_fixed_cost_would_flatten_the_exponent() -> None:
    seconds = [60.0 + 1e-4 * x for x in EVENTS]
    assert F.fit_growth(EVENTS, seconds, fixed_s=60.0).exponent == pytest.approx(1.0, abs=1e-3)
    assert F.fit_growth(EVENTS, seconds, fixed_s=0.0).exponent < 0.9


def test_noise_lowers_r2_below_one() -> None:
    seconds = [10.0 + y for y in (5.0, 40.0, 30.0, 400.0)]
    fit = F.fit_growth(EVENTS, seconds, fixed_s=10.0)
    assert fit.r2 is not None and 0.0 < fit.r2 < 0.99


def test_sizes_not_above_the_fixed_cost_are_dropped_and_too_few_points_give_no_fit() -> None:
    seconds = [9.0, 12.0, 20.0, 50.0, 110.0]
    fit = F.fit_growth([3e4, *EVENTS], seconds, fixed_s=10.0)
    assert (fit.points, fit.dropped) == (4, 1)
    short = F.fit_growth(EVENTS, [5.0, 12.0, 20.0, 50.0], fixed_s=10.0)
    assert (short.exponent, short.r2, short.points, short.dropped) == (None, None, 3, 1)
    assert short.predict(1e7) is None


def test_sizes_parse_and_scale_users_and_items_with_events() -> None:
    assert [S.parse_size(t) for t in ("1day", "300k", "1M", "2.5m", "5000")] == [0, 300_000, 1_000_000, 2_500_000, 5000]
    assert [S.parse_size(t) for t in ("1day-2", "30k-2", "1M-3")] == [0, 30_000, 1_000_000]
    users, items, days = S.shop_shape(10_000_000, 75)
    assert days == 75 and 95_000 < users < 105_000 and items == users // 5


def _size(label: str, events: int, seconds: float, daily: dict | None = None) -> dict:
    stages = {stage: {"wall_s": seconds} for stage in F.STAGES}
    return {"label": label, "events": events, "stages": stages, "daily": daily}


def test_the_fixed_cost_is_the_shortest_one_day_shop_and_one_day_shops_are_not_fitted() -> None:
    sizes = [_size("1day", 400, 30.0), _size("1day-2", 400, 10.0)]
    sizes += [_size(f"{x:.0f}", int(x), 10.0 + 1e-3 * x) for x in EVENTS]
    fits = S.fits(sizes)
    assert fits is not None
    assert {fit.fixed_s for fit in fits.values()} == {10.0}
    assert [fit.exponent for fit in fits.values()] == pytest.approx([1.0] * len(F.STAGES), abs=1e-3)
    assert S.fits(sizes[2:]) is None


def test_a_repeated_size_is_one_point_of_the_fit_with_its_shortest_time() -> None:
    sizes = [_size("1day", 400, 10.0)] + [_size(f"{x:.0f}", int(x), 10.0 + 1e-3 * x) for x in EVENTS]
    slower = [_size(f"{x:.0f}-2", int(x), 10.0 + 3e-3 * x**1.2) for x in EVENTS[:2]]
    fits = S.fits(sizes + slower)
    assert fits is not None
    assert {(fit.points, fit.dropped) for fit in fits.values()} == {(len(EVENTS), 0)}
    assert [fit.exponent for fit in fits.values()] == pytest.approx([1.0] * len(F.STAGES), abs=1e-3)
    assert S.fits(sizes[:1] + slower[:1] + sizes[1:])["transform"].exponent == pytest.approx(1.0, abs=1e-3)


def test_the_daily_ratio_comes_from_the_largest_size_only() -> None:
    small = _size("100k", 100_000, 50.0, daily={"transform_over_full": 0.5})
    large = _size("1M", 1_000_000, 90.0)
    assert S.measured_here([small, large]) == {}
    large["daily"] = {"transform_over_full": 0.42}
    assert S.merged_extras({}, None, [small, large])["incremental_daily_ratio"] == 0.42
    extras = S.merged_extras({}, None, [small])
    assert extras["sharded_speedup_2_workers"] is None
    assert extras["sharded_speedup_2_workers_source"] == "not measured in this run"


def test_a_shop_of_about_10m_events_is_judged_instead_of_extrapolated() -> None:
    sizes = [_size("1day", 400, 10.0)] + [_size(f"{x:.0f}", int(x), 10.0 + 1e-3 * x) for x in EVENTS]
    for size in sizes:
        size["total_s"] = sum(stage["wall_s"] for stage in size["stages"].values())
        for stage in size["stages"].values():
            stage["peak_rss_mb"] = 1000.0
    assert "not_run" in S.at_10m(sizes) and "extrapolated_10m" in S.fit_figures(sizes)
    sizes.append(_size("10m", 9_500_000, 500.0))
    sizes[-1]["total_s"] = 2000.0
    for stage in sizes[-1]["stages"].values():
        stage["peak_rss_mb"] = 9000.0
    judged = S.at_10m(sizes)["at_10m"]
    assert judged["label"] == "10m" and judged["total_met"] is False and judged["peak_rss_met"] is False
    assert judged["stages_met"] == {"ingest": False, "transform": False, "train": True, "recommend": False}
    assert "extrapolated_10m" not in S.fit_figures(sizes)


def test_a_merge_only_run_keeps_the_studys_provenance_and_records_itself(tmp_path: Path) -> None:
    sizes = [{**_size("1day", 400, 10.0), "dag_run_ids": {}}]
    study = S.assemble(sizes, {}, None, "LocalExecutor")
    study.update(git_commit="study", measured_at="2026-01-01T00:00:00+00:00", load_average=0.5)
    merge = tmp_path / "daily.json"
    merge.write_text('{"incremental_daily_ratio": 0.5}')
    merged = S.assemble(sizes, study, merge, "LocalExecutor", measured=False)
    assert (merged["git_commit"], merged["measured_at"], merged["load_average"]) == ("study", study["measured_at"], 0.5)
    assert merged["incremental_daily_ratio"] == 0.5
    assert [entry["file"] for entry in merged["merges"]] == [str(merge)]
    remeasured = S.assemble(sizes, merged, None, "LocalExecutor")
    assert remeasured["git_commit"] != "study" and remeasured["merges"] == merged["merges"]
