"""The scale study's arithmetic and plot: cost growth fitted on log-log axes (pure, no I/O but the PNG).

A stage's time at ``events`` is modelled as ``fixed + a * events**k``: ``fixed`` is the stage's time
on a 1-day shop (its start-up cost), ``k`` the exponent of the growth that remains.  ``k`` and the
R² come from a least-squares line through ``(log events, log(seconds - fixed))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("ingest", "transform", "train", "recommend")


@dataclass(frozen=True)
class GrowthFit:
    """``exponent`` and ``r2`` of the line; ``coefficient``: ``a`` in ``fixed + a * events**k``;
    ``points``: the sizes used; ``dropped``: sizes whose time did not exceed the fixed cost."""

    exponent: float | None
    r2: float | None
    coefficient: float | None
    fixed_s: float
    points: int
    dropped: int

    def predict(self, events: float) -> float | None:
        """The fitted time (seconds) at ``events``; None without a fit."""
        if self.exponent is None or self.coefficient is None:
            return None
        return self.fixed_s + self.coefficient * events**self.exponent


def fit_growth(events: Sequence[float], seconds: Sequence[float], fixed_s: float, min_points: int = 4) -> GrowthFit:
    """Fit ``log(seconds - fixed_s) = log(a) + k * log(events)``.

    Sizes whose ``seconds`` do not exceed ``fixed_s`` have no logarithm and are dropped (counted in
    ``dropped``); with fewer than ``min_points`` left the exponent, R² and coefficient are None.
    """
    x = np.asarray(events, dtype=float)
    excess = np.asarray(seconds, dtype=float) - fixed_s
    keep = excess > 0
    dropped = int((~keep).sum())
    if int(keep.sum()) < min_points:
        return GrowthFit(None, None, None, fixed_s, int(keep.sum()), dropped)
    log_x, log_y = np.log(x[keep]), np.log(excess[keep])
    slope, intercept = np.polyfit(log_x, log_y, 1)
    residual = log_y - (intercept + slope * log_x)
    total = float(((log_y - log_y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 1.0
    return GrowthFit(
        round(float(slope), 3), round(r2, 3), float(math.exp(intercept)), fixed_s, int(keep.sum()), dropped
    )


def _panel(ax: Any, sizes: list[dict], stage: str, fits: dict[str, dict[str, GrowthFit]]) -> None:
    """One stage's measured values above the fixed cost and fitted lines, one series per metric."""
    for (metric, stage_fits), marker in zip(fits.items(), ("o", "s"), strict=False):
        fit = stage_fits[stage]
        points = [
            (s["events"], s["stages"][stage][metric] - fit.fixed_s)
            for s in sizes
            if metric in s["stages"][stage] and not s["label"].startswith("1day")  # the fixed costs themselves
        ]
        points = [(x, y) for x, y in points if y > 0]
        if not points:
            continue
        line = ax.loglog(*zip(*points, strict=True), marker, label=f"{metric} − fixed {fit.fixed_s:.0f} s")
        if fit.exponent is not None:
            xs = np.geomspace(min(x for x, _ in points), max(x for x, _ in points), 20)
            ys = [(fit.predict(x) or 0.0) - fit.fixed_s for x in xs]
            ax.loglog(xs, ys, "-", color=line[0].get_color(), label=f"k={fit.exponent}, R²={fit.r2}")
    ax.set_title(stage)
    ax.set_xlabel("events")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_growth(sizes: list[dict], fits: dict[str, dict[str, GrowthFit]], out: Path, title: str) -> None:
    """Log-log panels, one per stage: each metric's (``fits`` by metric, then stage) measured value
    above the stage's fixed cost against events, and its fitted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for ax, stage in zip(axes.flat, STAGES, strict=True):
        _panel(ax, sizes, stage, fits)
        ax.set_ylabel("seconds above the 1-day shop")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
