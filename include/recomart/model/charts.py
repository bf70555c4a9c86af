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


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
        return None
    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.clf()


def score_histograms(score_samples: dict[str, list[float]], bins: int = 40) -> dict[str, Any]:
    """Per contender: the number of finite sampled scores, their quantiles and a histogram."""
    out = {}
    for name, values in score_samples.items():
        scores = np.asarray(values, dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        counts, edges = np.histogram(scores, bins=bins) if scores.size else (np.zeros(0), np.zeros(0))
        quantiles = np.quantile(scores, [0.01, 0.25, 0.5, 0.75, 0.99]).tolist() if scores.size else []
        out[name] = {
            "n": int(scores.size),
            "quantiles": dict(zip(["p01", "p25", "p50", "p75", "p99"], quantiles, strict=False)),
            "counts": counts.tolist(),
            "edges": edges.tolist(),
        }
    return out


def _draw_metric_vs_k(plt: Any, curves: dict[str, Any], path: Path) -> None:
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
    _save(fig, path)


def _draw_trials(plt: Any, trials: list[dict[str, Any]], tuning_metric: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    values = [t["metrics"].get(tuning_metric, np.nan) for t in trials]
    ax.plot(range(len(values)), values, marker="o")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{tuning_metric} (validation)")
    ax.grid(alpha=0.3)
    _save(fig, path)


def _draw_scores(plt: Any, score_samples: dict[str, list[float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in score_samples.items():
        scores = np.asarray(values, dtype=np.float64)
        ax.hist(scores[np.isfinite(scores)], bins=40, alpha=0.5, label=name)
    ax.set_xlabel("score (unclipped mu + bu + bi + pu.qi)")
    ax.set_ylabel("user-item pairs (sample)")
    ax.legend()
    _save(fig, path)


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
    payloads = {
        "metric_vs_k": curves,
        "tuning_trials": {"metric": tuning_metric, "trials": trials},
        "score_distribution": score_histograms(score_samples),
    }
    paths: list[Path] = []
    for name, payload in payloads.items():
        paths.append(out_dir / f"{name}.json")
        paths[-1].write_text(json.dumps(payload, indent=2, default=float))
    plt = _pyplot()
    if plt is None:
        log.info("matplotlib not installed: evaluation artifacts written as JSON only")
        return paths
    _draw_metric_vs_k(plt, curves, out_dir / "metric_vs_k.png")
    _draw_trials(plt, trials, tuning_metric, out_dir / "tuning_trials.png")
    _draw_scores(plt, score_samples, out_dir / "score_distribution.png")
    plt.close("all")
    return paths + [out_dir / f"{name}.png" for name in payloads]
