"""Experiment statistics benchmark: A/A false positives under daily peeking, power on a planted lift, and
CUPED's variance reduction, all through the analysis that ``./recomart experiment report`` uses.

- **A/A**: ``--runs`` simulated experiments with two identical arms at ``--baseline`` conversion, users
  arriving evenly over ``--days`` days, each day's conversions drawn binomially per arm. Every run is
  peeked at every day by :func:`recomart.experiments.analysis.sequential_from_totals` (the mSPRT behind
  ``analyse`` and ``sequential_over_days``); a run is a false positive when any look is significant.
  The rate is reported with its Wilson interval (statsmodels). The same runs judged by a fixed-horizon
  z-test at every look are reported too, to show what peeking does without a sequential method.
- **Planted lift**: the same, with the variant's conversion ``baseline x (1 + --lift)``, and
  ``users_per_variant`` = ``--horizon-factor`` x the fixed-horizon sample size for alpha = 0.05 and power
  0.8 (statsmodels ``NormalIndPower`` on Cohen's h), rounded down to whole days. Power = share of
  runs significant, in the right direction, by the last day.
- **CUPED**: per-user outcomes (``--cuped-users`` per arm) where a user's latent propensity drives both
  the pre-period purchases (Poisson over 14 days) and conversion; ``analyse`` reports the variance
  reduction and the CUPED interval against the unadjusted one.

    .venv/bin/python -m benchmarks.experiments --out benchmarks/results/experiments.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

from benchmarks.results_file import run_metadata, write_result
from recomart.experiments.analysis import analyse, sequential_from_totals
from recomart.experiments.sequential import DEFAULT_MIXTURE_RELATIVE_SD

ROOT = Path(__file__).resolve().parents[1]
START = date(2026, 1, 1)


def _log(message: str) -> None:
    print(f"[experiments] {message}", file=sys.stderr, flush=True)


def fixed_horizon_users(baseline: float, lift: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm a fixed-horizon two-sided test needs (statsmodels, Cohen's h, equal arms)."""
    effect = proportion_effectsize(baseline * (1 + lift), baseline)
    return int(np.ceil(NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0)))


def simulated_totals(
    rng: np.random.Generator, runs: int, days: int, users_per_day: int, rates: tuple[float, float]
) -> pd.DataFrame:
    """Per run, day and arm (``a`` control, ``b`` variant): users, conversions; binary, so
    ``total_sq`` = ``total``."""
    conversions = rng.binomial(users_per_day, np.array(rates), size=(runs, days, 2))
    grid = pd.MultiIndex.from_product([range(runs), range(days), ["a", "b"]], names=["run", "day", "variant"])
    flat = conversions.reshape(-1)
    return grid.to_frame(index=False).assign(users=users_per_day, total=flat, total_sq=flat)


def naive_peeking_rate(totals: pd.DataFrame, runs: int, days: int, alpha: float) -> float:
    """Share of runs that a fixed-horizon two-proportion z-test, repeated at every look, calls significant."""
    wide = totals.pivot_table(index=["run", "day"], columns="variant", values=["users", "total"]).sort_index()
    cumulative = wide.groupby(level="run").cumsum()
    n0, n1 = cumulative[("users", "a")].to_numpy(), cumulative[("users", "b")].to_numpy()
    p0, p1 = cumulative[("total", "a")].to_numpy() / n0, cumulative[("total", "b")].to_numpy() / n1
    se = np.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
    significant = 2 * stats.norm.sf(np.abs(p1 - p0) / se) < alpha
    return float(significant.reshape(runs, days).any(axis=1).mean())


def rate_with_interval(hits: int, runs: int, alpha: float = 0.05) -> tuple[float, list[float]]:
    low, high = proportion_confint(hits, runs, alpha=alpha, method="wilson")
    return hits / runs, [round(float(low), 4), round(float(high), 4)]


def mixture_sensitivity(args: argparse.Namespace, totals: pd.DataFrame) -> dict[str, float]:
    """Power on the same lift runs with the mixture scale halved and doubled (tau is set before the data)."""
    power = {}
    for scale in (args.mixture_relative_sd / 2, args.mixture_relative_sd * 2):
        looks = sequential_from_totals(totals, "a", alpha=args.alpha, mixture_relative_sd=scale, by=["run"])
        last = looks.groupby("run").tail(1)
        power[f"{scale:g}"] = float((last["significant"] & (last["estimate"] > 0)).mean())
    return power


def aa_and_lift(args: argparse.Namespace, rng: np.random.Generator) -> dict:
    fixed = fixed_horizon_users(args.baseline, args.lift)
    users_per_day = int(args.horizon_factor * fixed) // args.days
    results = {}
    for name, rates in (
        ("aa", (args.baseline, args.baseline)),
        ("lift", (args.baseline, args.baseline * (1 + args.lift))),
    ):
        started = time.perf_counter()
        totals = simulated_totals(rng, args.runs, args.days, users_per_day, rates)
        looks = sequential_from_totals(
            totals, "a", alpha=args.alpha, mixture_relative_sd=args.mixture_relative_sd, by=["run"]
        )
        last = looks.groupby("run").tail(1)
        if name == "aa":
            hits = int(looks.groupby("run")["significant"].any().sum())
            rate, interval = rate_with_interval(hits, args.runs)
            results["aa"] = {
                "runs": args.runs,
                "peeks": args.days,
                "users_per_variant": users_per_day * args.days,
                "baseline_conversion": args.baseline,
                "false_positive_rate": rate,
                "false_positive_interval": interval,
                "target": "false_positive_rate <= 0.064",
                "met": rate <= 0.064,
                "naive_peeking_false_positive_rate": naive_peeking_rate(totals, args.runs, args.days, args.alpha),
            }
        else:
            detected = int(((last["significant"]) & (last["estimate"] > 0)).sum())
            first_days = looks[looks["significant"]].groupby("run")["day"].min()
            power, interval = rate_with_interval(detected, args.runs)
            results["lift"] = {
                "runs": args.runs,
                "peeks": args.days,
                "baseline_conversion": args.baseline,
                "relative_lift": args.lift,
                "users_per_variant": users_per_day * args.days,
                "fixed_horizon_users": fixed,
                "users_vs_fixed_horizon": round(users_per_day * args.days / fixed, 3),
                "power": power,
                "power_interval": interval,
                "median_decision_day": float(first_days.median() + 1) if len(first_days) else None,
                "power_by_mixture_relative_sd": mixture_sensitivity(args, totals),
                "target": "power >= 0.8 with users_per_variant <= 2 x fixed_horizon_users",
                "met": power >= 0.8 and users_per_day * args.days <= 2 * fixed,
            }
        _log(f"{name}: {args.runs} runs x {args.days} looks in {time.perf_counter() - started:.1f} s")
    return results


def cuped_outcomes(rng: np.random.Generator, users: int, baseline: float, lift: float, days: int) -> pd.DataFrame:
    """Per-user outcomes: propensity ~ Gamma(mean 1) scales both 14-day pre-period purchases (Poisson,
    mean 2) and the conversion probability; the variant converts ``1 + lift`` times as often."""
    frames = []
    for variant, rate in (("control", baseline), ("variant", baseline * (1 + lift))):
        propensity = rng.gamma(1.0, 1.0, users)
        converted = rng.random(users) < np.clip(rate * propensity, 0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "converted": converted.astype(int),
                    "revenue": np.where(converted, rng.gamma(2.0, 25.0, users), 0.0),
                    "pre_metric": rng.poisson(2.0 * propensity).astype(float),
                    "first_exposure_day": pd.Timestamp(START) + pd.to_timedelta(rng.integers(0, days, users), unit="D"),
                }
            )
        )
    outcomes = pd.concat(frames, ignore_index=True)
    outcomes["first_exposure_day"] = outcomes["first_exposure_day"].dt.date
    outcomes.insert(0, "user_id", np.arange(len(outcomes)))
    return outcomes


def cuped(args: argparse.Namespace, rng: np.random.Generator) -> dict:
    started = time.perf_counter()
    outcomes = cuped_outcomes(rng, args.cuped_users, args.baseline, args.lift, args.days)
    result = analyse(outcomes, "control", {"control": 0.5, "variant": 0.5}, alpha=args.alpha)
    comparison = result.comparisons[0]
    raw = comparison.difference.upper - comparison.difference.lower
    adjusted = comparison.cuped_difference.upper - comparison.cuped_difference.lower
    _log(f"cuped: analyse() on {len(outcomes):,} users in {time.perf_counter() - started:.1f} s")
    return {
        "users_per_variant": args.cuped_users,
        "covariate": "pre-period purchases over 14 days, Poisson(2 x propensity); propensity ~ Gamma(1, 1)",
        "theta": round(result.cuped.theta, 5),
        "variance_reduction": round(result.cuped.variance_reduction, 4),
        "interval_width_ratio": round(adjusted / raw, 4),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="simulated experiments per scenario")
    parser.add_argument("--days", type=int, default=14, help="daily looks per experiment")
    parser.add_argument("--baseline", type=float, default=0.10, help="control conversion")
    parser.add_argument("--lift", type=float, default=0.05, help="planted relative lift")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--horizon-factor", type=float, default=2.0, help="users per variant / fixed-horizon size")
    parser.add_argument("--mixture-relative-sd", type=float, default=DEFAULT_MIXTURE_RELATIVE_SD)
    parser.add_argument("--cuped-users", type=int, default=200_000, help="users per arm in the CUPED run")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", type=Path, help="write the JSON here (e.g. benchmarks/results/experiments.json)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    result = {
        "method": "mSPRT with a normal mixture (Johari, Koomen, Pekelis and Walsh, KDD 2017), "
        f"tau = {args.mixture_relative_sd} x pooled conversion; CUPED (Deng et al., WSDM 2013)",
        "alpha": args.alpha,
        "seed": args.seed,
        **aa_and_lift(args, rng),
        "cuped": cuped(args, rng),
    }
    out = args.out
    if out and out.exists():  # keep what other runs wrote (end_to_end comes from the stack benchmark)
        previous = json.loads(out.read_text())
        result = {**{k: v for k, v in previous.items() if k == "end_to_end"}, **result}
    return write_result({**result, **run_metadata()}, out)


if __name__ == "__main__":
    main()
