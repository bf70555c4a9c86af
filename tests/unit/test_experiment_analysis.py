"""The experiment analysis on simulated outcomes: SRM, CUPED, intervals, the sequential test, output."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recomart.experiments import sequential
from recomart.experiments.analysis import (
    analyse,
    cuped_adjust,
    format_report,
    sample_ratio_check,
    sequential_from_totals,
    sequential_over_days,
)

START = date(2026, 11, 1)
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ lives at the project root, outside the installed package
    sys.path.insert(0, str(ROOT))


def simulate(
    users: dict[str, int],
    conversion: dict[str, float],
    seed: int = 0,
    covariate_weight: float = 1.0,
    days: int = 14,
    prices: bool = True,
) -> pd.DataFrame:
    """Per-user outcomes: a user's propensity drives both the pre-period count and conversion
    (``covariate_weight`` 0 makes the pre-period count independent of it)."""
    rng = np.random.default_rng(seed)
    frames = []
    for variant, n in users.items():
        propensity = rng.gamma(2.0, 0.5, n)  # mean 1
        pre_rate = covariate_weight * propensity + (1 - covariate_weight) * rng.gamma(2.0, 0.5, n)
        converted = rng.random(n) < np.clip(conversion[variant] * propensity, 0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "converted": converted.astype(int),
                    "revenue": np.where(converted, rng.gamma(2.0, 20.0, n), 0.0) if prices else np.nan,
                    "pre_metric": rng.poisson(3 * pre_rate).astype(float),
                    "first_exposure_day": (pd.Timestamp(START) + pd.to_timedelta(rng.integers(0, days, n), "D")).date,
                }
            )
        )
    outcomes = pd.concat(frames, ignore_index=True)
    outcomes.insert(0, "user_id", [f"u{i}" for i in range(len(outcomes))])
    return outcomes


def test_srm_flags_a_55_45_split_and_passes_a_fair_one() -> None:
    shares = {"control": 0.5, "treatment": 0.5}
    assert sample_ratio_check({"control": 55_000, "treatment": 45_000}, shares).alarm
    fair = sample_ratio_check({"control": 50_070, "treatment": 49_930}, shares)
    assert not fair.alarm and fair.p_value > 0.5
    outcomes = simulate({"control": 5_500, "treatment": 4_500}, {"control": 0.1, "treatment": 0.1})
    result = analyse(outcomes, "control", shares)
    assert result.srm.alarm
    assert result.comparisons[0].decision == "invalid: sample-ratio mismatch"


def test_cuped_reduces_variance_only_with_a_correlated_covariate() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=50_000)
    y = 0.8 * x + rng.normal(scale=0.6, size=50_000)  # corr 0.8: reduction ~ 0.64
    adjusted, theta, reduction = cuped_adjust(y, x)
    assert theta == pytest.approx(0.8, abs=0.02)
    assert reduction == pytest.approx(0.64, abs=0.02)
    assert adjusted.mean() == pytest.approx(y.mean())
    _, _, none = cuped_adjust(y, rng.normal(size=50_000))
    assert abs(none) < 0.005

    correlated = analyse(simulate({"c": 20_000, "t": 20_000}, {"c": 0.1, "t": 0.1}, 2), "c", {"c": 1, "t": 1})
    independent = analyse(
        simulate({"c": 20_000, "t": 20_000}, {"c": 0.1, "t": 0.1}, 2, covariate_weight=0.0), "c", {"c": 1, "t": 1}
    )
    assert correlated.cuped.variance_reduction > 0.015
    assert abs(independent.cuped.variance_reduction) < 0.005
    comparison = correlated.comparisons[0]
    assert (comparison.cuped_difference.upper - comparison.cuped_difference.lower) < (
        comparison.difference.upper - comparison.difference.lower
    )


def test_intervals_cover_a_planted_effect() -> None:
    outcomes = simulate({"control": 60_000, "treatment": 60_000}, {"control": 0.10, "treatment": 0.12}, seed=3)
    result = analyse(outcomes, "control", {"control": 0.5, "treatment": 0.5})
    comparison = result.comparisons[0]
    true_difference = 0.02  # propensity has mean 1, and 0.12 * propensity never exceeds 1 in practice
    for interval in (comparison.difference, comparison.cuped_difference):
        assert interval.lower < true_difference < interval.upper
        assert interval.lower > 0
    assert comparison.relative_difference.lower < 0.2 < comparison.relative_difference.upper
    assert comparison.sequential.lower < true_difference < comparison.sequential.upper
    assert comparison.sequential.significant and comparison.decision == "variant ahead"
    control = result.variants[0]
    assert control.conversion.lower < 0.10 < control.conversion.upper
    assert control.revenue_per_user == pytest.approx(0.1 * 40, rel=0.1)


def test_sequential_aa_rarely_significant_under_daily_peeking() -> None:
    rng = np.random.default_rng(4)
    runs, days, n_per_day = 400, 14, 500
    conversions = rng.binomial(n_per_day, 0.1, size=(runs, days, 2))
    grid = pd.MultiIndex.from_product([range(runs), range(days), ["a", "b"]], names=["run", "day", "variant"])
    totals = grid.to_frame(index=False).assign(
        users=n_per_day, total=conversions.reshape(-1), total_sq=conversions.reshape(-1)
    )
    looks = sequential_from_totals(totals, "a", by=["run"])
    assert len(looks) == runs * days
    false_positive = looks.groupby("run")["significant"].any().mean()
    assert false_positive <= 0.05
    # the interval only narrows: intersected over the looks
    widths = (looks["upper"] - looks["lower"]).to_numpy().reshape(runs, days)
    assert (np.diff(widths, axis=1) <= 1e-12).all()


def test_sequential_over_days_has_one_row_per_day_and_variant() -> None:
    outcomes = simulate({"a": 3_000, "b": 3_000, "c": 3_000}, {"a": 0.1, "b": 0.1, "c": 0.1}, days=5)
    looks = sequential_over_days(outcomes, "a")
    assert len(looks) == 10 and set(looks["variant"]) == {"b", "c"}
    assert (looks.groupby("variant")["users_control"].last() == 3_000).all()


def test_precomputed_looks_give_the_same_analysis() -> None:
    outcomes = simulate({"a": 2_000, "b": 2_000}, {"a": 0.1, "b": 0.13}, days=6)
    looks = sequential_over_days(outcomes, "a")
    shares = {"a": 0.5, "b": 0.5}
    assert analyse(outcomes, "a", shares, looks=looks) == analyse(outcomes, "a", shares)


def test_as_dict_is_json_and_the_report_names_each_variant() -> None:
    outcomes = simulate({"popularity": 2_000, "hybrid": 2_000}, {"popularity": 0.1, "hybrid": 0.1}, prices=False)
    outcomes["exposures"] = 3
    result = analyse(outcomes, "popularity", {"popularity": 0.5, "hybrid": 0.5})
    data = json.loads(json.dumps(result.as_dict(), allow_nan=False))
    assert data["variants"][0]["users"] == 2_000 and data["variants"][0]["exposures"] == 6_000
    assert data["variants"][0]["revenue_per_user"] is None
    assert data["comparisons"][0]["revenue_difference"] is None
    report = format_report(result)
    assert "popularity" in report and "hybrid" in report and "SRM" in report


def test_bad_outcomes_are_refused() -> None:
    outcomes = simulate({"a": 100, "b": 100}, {"a": 0.1, "b": 0.1})
    with pytest.raises(ValueError, match="no share"):
        analyse(outcomes, "a", {"a": 0.5, "c": 0.5})
    with pytest.raises(ValueError, match="lack the columns"):
        analyse(outcomes.drop(columns="pre_metric"), "a", {"a": 0.5, "b": 0.5})


def test_msprt_boundary_is_where_the_mixture_ratio_reaches_one_over_alpha() -> None:
    variance, tau = np.array([1e-6, 4e-6]), np.array([5e-3, 1e-3])
    half_width, _ = sequential.msprt_look(np.zeros(2), variance, tau, 0.05)
    _, p_at_boundary = sequential.msprt_look(half_width, variance, tau, 0.05)
    np.testing.assert_allclose(p_at_boundary, 0.05, rtol=1e-9)
    _, p_at_zero = sequential.msprt_look(np.zeros(2), variance, tau, 0.05)
    assert (p_at_zero == 1.0).all()
    half_width, p_value = sequential.msprt_look(np.zeros(1), np.zeros(1), np.ones(1), 0.05)
    assert np.isnan(half_width).all() and np.isnan(p_value).all()


def test_the_benchmark_runs_small_through_the_same_functions(tmp_path: Path) -> None:
    bench = importlib.import_module("benchmarks.experiments")
    out = tmp_path / "experiments.json"
    out.write_text(json.dumps({"end_to_end": {"winner": "hybrid"}, "aa": {"runs": 0}}))
    result = bench.main(["--runs", "40", "--cuped-users", "5000", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["end_to_end"] == {"winner": "hybrid"}  # kept from the file, rewritten elsewhere
    assert written["aa"]["runs"] == 40 and result["aa"]["peeks"] == 14
    assert 0 <= written["aa"]["false_positive_interval"][0] <= written["aa"]["false_positive_rate"]
    assert written["lift"]["users_per_variant"] <= 2 * written["lift"]["fixed_horizon_users"]
    assert written["cuped"]["variance_reduction"] > 0
