"""Always-valid sequential test of a difference of means: the mixture SPRT (mSPRT) with a normal mixture.

Source: Johari, Koomen, Pekelis and Walsh, "Peeking at A/B tests: why it matters, and what to do about
it", KDD 2017 (section 4, the two-sample mSPRT with the normal mixture and a plug-in variance; the same
test as Johari, Pekelis and Walsh, "Always valid inference", Operations Research 70(3), 2022).

At a look with difference estimate ``d`` (variant mean minus control mean) and variance ``V`` of that
estimate (each arm's sample variance over its users, summed), the mixture likelihood ratio against
"no difference", with the true difference drawn from N(0, tau^2), is

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

and "no difference" is rejected the first time Lambda >= 1 / alpha: by Ville's inequality the chance
of ever doing so under the null is at most alpha, however often one looks. Inverting the test gives
the always-valid interval

    d +- sqrt(V (V + tau^2) / tau^2 * (log((V + tau^2) / V) - 2 log alpha))

Intervals are intersected over looks (the running intersection of a confidence sequence is one too),
and the always-valid p-value is the running minimum of min(1, 1 / Lambda). ``tau`` is the scale of
the effects the test is tuned to: ``mixture_relative_sd`` times the pooled mean of the metric.

Everything here works on per-look totals (users, sum and sum of squares of the metric per variant), so
the same code path serves one experiment's daily looks and thousands of simulated ones at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_MIXTURE_RELATIVE_SD = 0.05
"""tau as a share of the pooled mean: tuned to relative effects of about 5 %."""

TOTAL_COLUMNS = ["users", "total", "total_sq"]
SEQUENTIAL_COLUMNS = [
    "day",
    "variant",
    "users_control",
    "users_variant",
    "estimate",
    "lower",
    "upper",
    "p_value",
    "significant",
]


def daily_totals(outcomes: pd.DataFrame, metric: str = "converted") -> pd.DataFrame:
    """Per first-exposure day and variant: ``users``, ``total`` (sum of ``metric``), ``total_sq``.

    Args:
        outcomes: one row per user with ``variant``, ``first_exposure_day`` and ``metric``.
    Returns:
        columns ``day, variant, users, total, total_sq``; users whose metric is NaN are left out.
    """
    rows = outcomes.loc[outcomes[metric].notna(), ["first_exposure_day", "variant", metric]]
    values = rows[metric].astype(float)
    frame = pd.DataFrame(
        {
            "day": rows["first_exposure_day"],
            "variant": rows["variant"],
            "users": 1,
            "total": values,
            "total_sq": values * values,
        }
    )
    return frame.groupby(["day", "variant"], as_index=False)[TOTAL_COLUMNS].sum()


def msprt_look(
    difference: np.ndarray, variance: np.ndarray, tau: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """One look of the mSPRT, element-wise over arrays of equal shape.

    Returns:
        ``(half_width, p_value)``: the always-valid interval is ``difference +- half_width``; the
        look's p-value is ``min(1, 1 / Lambda)``. Both are NaN where ``variance`` or ``tau`` is not > 0.
    """
    tau2 = np.square(tau)
    valid = (variance > 0) & (tau2 > 0)
    v = np.where(valid, variance, np.nan)
    t2 = np.where(valid, tau2, np.nan)
    half_width = np.sqrt(v * (v + t2) / t2 * (np.log((v + t2) / v) - 2.0 * np.log(alpha)))
    log_lambda = 0.5 * np.log(v / (v + t2)) + t2 * np.square(difference) / (2.0 * v * (v + t2))
    p_value = np.minimum(1.0, np.exp(-log_lambda))
    return half_width, p_value


def _cumulative(totals: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Totals pivoted to one row per (``by``, day), a column per (total, variant), summed over days."""
    wide = totals.pivot_table(
        index=[*by, "day"], columns="variant", values=TOTAL_COLUMNS, aggfunc="sum", fill_value=0
    ).sort_index()
    return wide.groupby(level=by).cumsum() if by else wide.cumsum()


def _arm(wide: pd.DataFrame, variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users, mean and sample variance of one variant's cumulative totals (zeros where absent)."""
    if ("users", variant) not in wide.columns:
        zeros = np.zeros(len(wide))
        return zeros, zeros * np.nan, zeros * np.nan
    n = wide[("users", variant)].to_numpy(dtype=float)
    total = wide[("total", variant)].to_numpy(dtype=float)
    total_sq = wide[("total_sq", variant)].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        variance = np.maximum(total_sq - n * np.square(mean), 0.0) / (n - 1)
    return n, mean, variance


def sequential_from_totals(
    totals: pd.DataFrame,
    control: str,
    alpha: float = 0.05,
    mixture_relative_sd: float = DEFAULT_MIXTURE_RELATIVE_SD,
    by: list[str] | None = None,
) -> pd.DataFrame:
    """The mSPRT at every cumulative look, for every variant against ``control``.

    Args:
        totals: columns ``[*by], day, variant, users, total, total_sq`` (as :func:`daily_totals`);
            ``by`` keys separate independent experiments (e.g. simulation runs).
    Returns:
        columns ``[*by], day, variant, users_control, users_variant, estimate`` (difference of means
        at that look), ``lower, upper`` (always-valid interval, intersected over the looks so far),
        ``p_value`` (always-valid, running minimum) and ``significant`` (the interval has excluded 0
        at some look so far: the decision stays valid under peeking at every look).
    """
    by = list(by or [])
    wide = _cumulative(totals, by)
    n0, m0, v0 = _arm(wide, control)
    index = wide.index.to_frame(index=False)
    keys = index[by] if by else pd.DataFrame(index=index.index)
    frames = []
    for variant in sorted(set(totals["variant"]) - {control}):
        n1, m1, v1 = _arm(wide, variant)
        with np.errstate(invalid="ignore", divide="ignore"):
            difference = m1 - m0
            variance = v0 / n0 + v1 / n1
            tau = mixture_relative_sd * np.abs((m0 * n0 + m1 * n1) / (n0 + n1))
            half_width, p_value = msprt_look(difference, variance, tau, alpha)
        look = keys.assign(
            day=index["day"].to_numpy(),
            variant=variant,
            users_control=n0.astype(int),
            users_variant=n1.astype(int),
            estimate=difference,
            lower=np.nan_to_num(difference - half_width, nan=-np.inf),
            upper=np.nan_to_num(difference + half_width, nan=np.inf),
            p_value=np.nan_to_num(p_value, nan=1.0),
        )
        frames.append(_running(look, by))
    columns = [*by, *SEQUENTIAL_COLUMNS]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _running(look: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Intersect the intervals and take the p-value's minimum over each experiment's looks so far."""
    grouped = look.groupby(by, sort=False) if by else look.groupby(np.zeros(len(look)), sort=False)
    look["lower"] = grouped["lower"].cummax()
    look["upper"] = grouped["upper"].cummin()
    look["p_value"] = grouped["p_value"].cummin()
    excludes_zero = ((look["lower"] > 0) | (look["upper"] < 0)).astype(int)
    look["significant"] = excludes_zero.groupby(grouped.ngroup()).cummax().astype(bool)
    return look


def sequential_over_days(
    outcomes: pd.DataFrame,
    control: str,
    alpha: float = 0.05,
    mixture_relative_sd: float = DEFAULT_MIXTURE_RELATIVE_SD,
    metric: str = "converted",
) -> pd.DataFrame:
    """The sequential decision at each daily cumulative look (by ``first_exposure_day``).

    Args:
        outcomes: one row per user (``variant``, ``first_exposure_day``, ``metric``).
    Returns:
        one row per day and non-control variant, columns as :func:`sequential_from_totals`: the
        estimate, the always-valid interval and whether the difference is significant by that day.
    """
    return sequential_from_totals(daily_totals(outcomes, metric), control, alpha, mixture_relative_sd)
