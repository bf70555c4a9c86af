"""Evaluation artifacts for a training run: metric against K, validation metric across trials, scores.

Each artifact is written as JSON (always) and as a PNG when matplotlib is installed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
        return None
    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.clf()


def write_evaluation_artifacts(
    out_dir: Path,
    *,
    curves: dict[str, Any],
    trials: list[dict[str, Any]],
    tuning_metric: str,
    score_samples: dict[str, list[float]],
) -> list[Path]:
    """Write ``metric_vs_k``, ``tuning_trials`` and ``score_distribution`` (.json and .png); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def dump(name: str, payload: Any) -> None:
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(payload, indent=2, default=float))
        paths.append(path)

    dump("metric_vs_k", curves)
    dump("tuning_trials", {"metric": tuning_metric, "trials": trials})
    hist = {}
    for name, values in score_samples.items():
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        counts, edges = np.histogram(arr, bins=40) if arr.size else (np.zeros(0), np.zeros(0))
        hist[name] = {
            "n": int(arr.size),
            "quantiles": dict(
                zip(
                    ["p01", "p25", "p50", "p75", "p99"],
                    np.quantile(arr, [0.01, 0.25, 0.5, 0.75, 0.99]).tolist() if arr.size else [],
                    strict=False,
                )
            ),
            "counts": counts.tolist(),
            "edges": edges.tolist(),
        }
    dump("score_distribution", hist)

    plt = _pyplot()
    if plt is None:
        log.info("matplotlib not installed: evaluation artifacts written as JSON only")
        return paths
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, by_k in curves.items():
        ks = sorted(int(k) for k in by_k)
        for ax, key in zip(axes, ("ndcg", "precision"), strict=True):
            ax.plot(ks, [by_k[str(k)][key] for k in ks], marker="o", label=name)
            ax.set_xlabel("K")
            ax.set_ylabel(f"{key}@K (test)")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    _save(fig, out_dir / "metric_vs_k.png")
    paths.append(out_dir / "metric_vs_k.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    values = [t["metrics"].get(tuning_metric, np.nan) for t in trials]
    ax.plot(range(len(values)), values, marker="o")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{tuning_metric} (validation)")
    ax.grid(alpha=0.3)
    _save(fig, out_dir / "tuning_trials.png")
    paths.append(out_dir / "tuning_trials.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in score_samples.items():
        arr = np.asarray(values, dtype=np.float64)
        ax.hist(arr[np.isfinite(arr)], bins=40, alpha=0.5, label=name)
    ax.set_xlabel("score (unclipped mu + bu + bi + pu.qi)")
    ax.set_ylabel("user-item pairs (sample)")
    ax.legend()
    _save(fig, out_dir / "score_distribution.png")
    paths.append(out_dir / "score_distribution.png")
    plt.close("all")
    return paths
