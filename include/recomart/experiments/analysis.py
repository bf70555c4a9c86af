"""An experiment's analysis: per-variant conversion and revenue, differences against control, SRM,
CUPED and an always-valid sequential decision. Pure: numpy, pandas, scipy and statsmodels, no I/O.

Methods (docs/experiments.md has the details and sources):

- conversion per variant with a Wilson interval (statsmodels ``proportion_confint``);
- difference of means against control with a normal (Welch) interval, and the relative difference
  with a delta-method interval (``scipy.stats.norm`` quantiles);
- sample-ratio mismatch: chi-square goodness of fit of users per variant against the planned shares
  (``scipy.stats.chisquare``), alarm at p < 0.001;
- CUPED (Deng, Xu, Kohavi and Walker, WSDM 2013): ``Y - theta (X - mean X)`` with the pooled
  ``theta = cov(Y, X) / var(X)`` of a pre-period covariate ``X``;
- the sequential decision: the mSPRT of :mod:`recomart.experiments.sequential` (Johari et al. 2017)
  at every daily look, valid under daily peeking.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from recomart.experiments.sequential import (
    DEFAULT_MIXTURE_RELATIVE_SD,
    sequential_from_totals,
    sequential_over_days,
)

__all__ = [
    "ExperimentResult",
    "analyse",
    "cuped_adjust",
    "format_report",
    "mean_difference",
    "sample_ratio_check",
    "sequential_from_totals",
    "sequential_over_days",
]

SRM_ALARM_P = 0.001
REQUIRED_COLUMNS = [
    "user_id",
    "variant",
    "converted",
    "revenue",
    "pre_metric",
    "first_exposure_day",
]
SEQUENTIAL_METHOD = "mSPRT, normal mixture (Johari, Koomen, Pekelis and Walsh, KDD 2017)"


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided interval and the p-value of "estimate = 0"."""

    estimate: float
    lower: float
    upper: float
    p_value: float | None = None


@dataclass(frozen=True)
class VariantSummary:
    """One variant: users, exposures (when given), conversion with its Wilson interval, revenue."""

    variant: str
    users: int
    exposures: int | None
    conversions: int
    conversion: Interval
    revenue_per_user: float | None
    planned_share: float
    observed_share: float


@dataclass(frozen=True)
class SequentialLook:
    """The mSPRT at the latest daily look; ``first_significant_day`` is None while undecided."""

    day: date | None
    estimate: float
    lower: float
    upper: float
    p_value: float
    significant: bool
    first_significant_day: date | None


@dataclass(frozen=True)
class Comparison:
    """One variant against control: fixed-horizon, CUPED and sequential differences of conversion."""

    variant: str
    difference: Interval
    relative_difference: Interval
    revenue_difference: Interval | None
    cuped_difference: Interval
    sequential: SequentialLook
    decision: str


@dataclass(frozen=True)
class SrmCheck:
    """Chi-square goodness of fit of users per variant against the planned shares."""

    chi2: float
    p_value: float
    alarm: bool
    threshold: float = SRM_ALARM_P


@dataclass(frozen=True)
class CupedSummary:
    """CUPED's pooled ``theta`` and the variance reduction ``1 - var(Y_cuped) / var(Y)``."""

    covariate: str
    theta: float
    variance_reduction: float


@dataclass(frozen=True)
class ExperimentResult:
    """Everything :func:`analyse` measured; :meth:`as_dict` gives it JSON-able."""

    control: str
    alpha: float
    primary_metric: str
    variants: list[VariantSummary]
    comparisons: list[Comparison]
    srm: SrmCheck
    cuped: CupedSummary
    sequential_method: str = SEQUENTIAL_METHOD

    def as_dict(self) -> dict[str, Any]:
        """Plain dicts, lists, str, int, float, bool and None (NaN and infinities become None,
        dates ISO strings)."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def mean_difference(variant: np.ndarray, control: np.ndarray, alpha: float = 0.05) -> tuple[Interval, Interval]:
    """Difference of means (variant - control) and relative difference (variant / control - 1).

    Normal interval with unequal variances; the relative one by the delta method.
    Returns:
        ``(absolute, relative)`` intervals; NaN where an arm has fewer than 2 values.
    """
    n1, n0 = len(variant), len(control)
    if n1 < 2 or n0 < 2:
        empty = Interval(math.nan, math.nan, math.nan, None)
        return empty, empty
    m1, m0 = float(np.mean(variant)), float(np.mean(control))
    se1, se0 = np.var(variant, ddof=1) / n1, np.var(control, ddof=1) / n0
    z = float(stats.norm.ppf(1 - alpha / 2))
    return _interval(m1 - m0, math.sqrt(se1 + se0), z), _relative(m1, m0, se1, se0, z)


def _interval(estimate: float, se: float, z: float) -> Interval:
    p_value = float(2 * stats.norm.sf(abs(estimate) / se)) if se > 0 else None
    return Interval(estimate, estimate - z * se, estimate + z * se, p_value)


def _relative(m1: float, m0: float, var1: float, var0: float, z: float) -> Interval:
    if m0 == 0:
        return Interval(math.nan, math.nan, math.nan, None)
    se = math.sqrt(var1 / m0**2 + m1**2 * var0 / m0**4)
    return _interval(m1 / m0 - 1, se, z)


def sample_ratio_check(users: dict[str, int], shares: dict[str, float]) -> SrmCheck:
    """Chi-square test of users per variant against ``shares`` (normalised to sum to 1)."""
    observed = np.array([users.get(variant, 0) for variant in shares], dtype=float)
    planned = np.array(list(shares.values()), dtype=float)
    expected = observed.sum() * planned / planned.sum()
    if observed.sum() == 0:
        return SrmCheck(math.nan, math.nan, False)
    chi2, p_value = stats.chisquare(observed, expected)
    return SrmCheck(float(chi2), float(p_value), bool(p_value < SRM_ALARM_P))


def cuped_adjust(metric: np.ndarray, covariate: np.ndarray) -> tuple[np.ndarray, float, float]:
    """CUPED: ``metric - theta (covariate - mean covariate)``, ``theta = cov / var`` pooled.

    Missing covariates are set to the covariate's mean (no adjustment for those users).
    Returns:
        ``(adjusted metric, theta, variance reduction 1 - var(adjusted) / var(metric))``.
    """
    y = np.asarray(metric, dtype=float)
    x = np.asarray(covariate, dtype=float)
    x = np.where(np.isnan(x), np.nanmean(x) if np.isfinite(x).any() else 0.0, x)
    var_x, var_y = np.var(x, ddof=1), np.var(y, ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    adjusted = y - theta * (x - x.mean())
    reduction = float(1 - np.var(adjusted, ddof=1) / var_y) if var_y > 0 else 0.0
    return adjusted, theta, reduction


def _validate(outcomes: pd.DataFrame, control: str, shares: dict[str, float]) -> None:
    missing = [column for column in REQUIRED_COLUMNS if column not in outcomes.columns]
    if missing:
        raise ValueError(f"outcomes lack the columns {missing}; expected {REQUIRED_COLUMNS}")
    if control not in shares:
        raise ValueError(f"control variant {control!r} is not among the shares {sorted(shares)}")
    unknown = sorted(set(outcomes["variant"]) - set(shares))
    if unknown:
        raise ValueError(f"outcomes carry variants {unknown} that have no share in {sorted(shares)}")
    if any(not share > 0 for share in shares.values()):
        raise ValueError(f"every share must be > 0: {shares}")
    if outcomes["user_id"].duplicated().any():
        raise ValueError("outcomes must have one row per user: some user_id appears twice")


def _variant_summaries(outcomes: pd.DataFrame, shares: dict[str, float], alpha: float) -> list[VariantSummary]:
    grouped = outcomes.groupby("variant")
    users = grouped.size()
    conversions = grouped["converted"].sum()
    revenue = grouped["revenue"].mean()  # NaN (no prices) is skipped; all-NaN gives NaN
    exposures = grouped["exposures"].sum() if "exposures" in outcomes.columns else None
    total_users, total_share = int(users.sum()), sum(shares.values())
    summaries = []
    for variant, share in shares.items():
        n, k = int(users.get(variant, 0)), int(conversions.get(variant, 0))
        low, high = proportion_confint(k, n, alpha=alpha, method="wilson") if n else (math.nan, math.nan)
        rpu = revenue.get(variant, math.nan)
        summaries.append(
            VariantSummary(
                variant=variant,
                users=n,
                exposures=None if exposures is None else int(exposures.get(variant, 0)),
                conversions=k,
                conversion=Interval(k / n if n else math.nan, float(low), float(high)),
                revenue_per_user=None if pd.isna(rpu) else float(rpu),
                planned_share=share / total_share,
                observed_share=n / total_users if total_users else math.nan,
            )
        )
    return summaries


def _sequential_look(looks: pd.DataFrame, variant: str) -> SequentialLook:
    rows = looks[looks["variant"] == variant]
    if rows.empty:
        return SequentialLook(None, math.nan, -math.inf, math.inf, 1.0, False, None)
    last = rows.iloc[-1]
    significant_days = rows.loc[rows["significant"], "day"]
    return SequentialLook(
        day=last["day"],
        estimate=float(last["estimate"]),
        lower=float(last["lower"]),
        upper=float(last["upper"]),
        p_value=float(last["p_value"]),
        significant=bool(last["significant"]),
        first_significant_day=significant_days.iloc[0] if len(significant_days) else None,
    )


def _decision(look: SequentialLook, srm: SrmCheck) -> str:
    if srm.alarm:
        return "invalid: sample-ratio mismatch"
    if not look.significant:
        return "no decision yet"
    return "variant ahead" if look.estimate > 0 else "variant behind"


def analyse(
    outcomes: pd.DataFrame,
    control: str,
    shares: dict[str, float],
    alpha: float = 0.05,
    mixture_relative_sd: float = DEFAULT_MIXTURE_RELATIVE_SD,
    looks: pd.DataFrame | None = None,
) -> ExperimentResult:
    """Analyse an experiment's per-user outcomes; the primary metric is ``converted``.

    Args:
        outcomes: one row per user: ``user_id, variant, converted`` (0/1), ``revenue`` (NaN without
            prices), ``pre_metric`` (pre-period covariate for CUPED), ``first_exposure_day`` (date);
            an optional ``exposures`` column is summed per variant.
        control: the control variant; every other variant is compared with it.
        shares: planned traffic share per variant (any positive scale), for the SRM check.
        alpha: 1 - the intervals' coverage, and the sequential test's type-I error.
        mixture_relative_sd: the mSPRT's mixture scale as a share of the pooled conversion.
        looks: ``sequential_over_days(outcomes, control, alpha, mixture_relative_sd)`` when the caller
            has computed it already (the dashboard plots it), so it is not computed twice.
    Returns:
        an :class:`ExperimentResult`.
    Raises:
        ValueError: missing columns, a control without a share, variants without a share, or a
            user on several rows.
    """
    _validate(outcomes, control, shares)
    summaries = _variant_summaries(outcomes, shares, alpha)
    srm = sample_ratio_check({s.variant: s.users for s in summaries}, shares)
    converted = outcomes["converted"].to_numpy(dtype=float)
    adjusted, theta, reduction = cuped_adjust(converted, outcomes["pre_metric"].to_numpy(dtype=float))
    if looks is None:
        looks = sequential_over_days(outcomes, control, alpha, mixture_relative_sd)
    variant_of = outcomes["variant"].to_numpy()
    revenue = outcomes["revenue"].to_numpy(dtype=float)
    in_control = variant_of == control
    comparisons = []
    for variant in (v for v in shares if v != control):
        in_variant = variant_of == variant
        difference, relative = mean_difference(converted[in_variant], converted[in_control], alpha)
        cuped, _ = mean_difference(adjusted[in_variant], adjusted[in_control], alpha)
        priced = ~np.isnan(revenue)
        revenue_difference = None
        if priced.any():
            revenue_difference, _ = mean_difference(revenue[in_variant & priced], revenue[in_control & priced], alpha)
        look = _sequential_look(looks, variant)
        comparisons.append(
            Comparison(variant, difference, relative, revenue_difference, cuped, look, _decision(look, srm))
        )
    return ExperimentResult(
        control=control,
        alpha=alpha,
        primary_metric="converted",
        variants=summaries,
        comparisons=comparisons,
        srm=srm,
        cuped=CupedSummary("pre_metric", theta, reduction),
    )


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f} %"


def _range(interval: Interval, scale: float = 100.0, unit: str = " pp") -> str:
    def fmt(value: float) -> str:
        return f"{scale * value:+.2f}" if math.isfinite(value) else "inf"

    if not math.isfinite(interval.estimate):
        return "-"
    return f"{fmt(interval.estimate)}{unit} [{fmt(interval.lower)}, {fmt(interval.upper)}]"


def format_report(result: ExperimentResult) -> str:
    """A readable text report: the variants table, each comparison, SRM and CUPED."""
    coverage = f"{100 * (1 - result.alpha):g} %"
    lines = [
        f"{'variant':<16} {'users':>9} {'exposures':>10} {'conv.':>9} {coverage + ' interval':>22} {'rev/user':>9}",
    ]
    for s in result.variants:
        marker = " (control)" if s.variant == result.control else ""
        rpu = "-" if s.revenue_per_user is None else f"{s.revenue_per_user:.2f}"
        lines.append(
            f"{s.variant:<16} {s.users:>9,} {'-' if s.exposures is None else f'{s.exposures:,}':>10} "
            f"{_pct(s.conversion.estimate):>9} {_pct(s.conversion.lower) + ' - ' + _pct(s.conversion.upper):>22} "
            f"{rpu:>9}{marker}"
        )
    for c in result.comparisons:
        seq = c.sequential
        lines += [
            "",
            f"{c.variant} vs {result.control}:",
            f"  difference            {_range(c.difference)}",
            f"  relative difference   {_range(c.relative_difference, unit=' %')}",
            f"  CUPED difference      {_range(c.cuped_difference)}",
            f"  revenue per user      {'-' if c.revenue_difference is None else _range(c.revenue_difference, 1.0, '')}",
            f"  sequential            {_range(Interval(seq.estimate, seq.lower, seq.upper))}, "
            f"always-valid p {seq.p_value:.4f} (look of {seq.day})",
            f"  decision              {c.decision}"
            + (f" (since {c.sequential.first_significant_day})" if c.sequential.first_significant_day else ""),
        ]
    srm = result.srm
    lines += [
        "",
        f"SRM: chi2 {srm.chi2:.2f}, p {srm.p_value:.4g} -> {'ALARM' if srm.alarm else 'pass'} "
        f"(alarm at p < {srm.threshold:g})",
        f"CUPED on {result.cuped.covariate}: theta {result.cuped.theta:.4f}, variance reduction "
        f"{_pct(result.cuped.variance_reduction, 1)}",
        f"sequential method: {result.sequential_method}",
    ]
    return "\n".join(lines)
