"""The promotion gate: a candidate becomes ``@champion`` only if it beats the champion and popularity.

All three are scored on the same split of the same run (the champion is re-scored, never read back
from its old run).  The candidate is the hybrid as it will be served (``metrics["model"]``: its SVD
blended with the weights fitted on validation) and the champion is its own blend (its factors with its
stored weights); ``metrics["svd"]`` and the other components alone are reported, never gated on.
While there is no champion the candidate only has to beat popularity.

With a learned ranker (:mod:`recomart.model.ranker_stage`) the candidate is whichever of the ranker and
the blend won on the validation window; :func:`strategy_note` adds to the reason which one it is and
the test figures of the ranker, the blend, the best single component and popularity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from recomart.model.evaluate import better

DEFAULT_PRIMARY_METRIC = "ndcg_at_10"
DEFAULT_MARGIN = 0.0


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote, and why, with the figures the decision was made on."""

    promote: bool
    reason: str
    metric: str
    margin: float
    candidate: float
    popularity: float
    champion: float | None
    champion_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    metrics: dict[str, dict[str, float]],
    *,
    metric: str = DEFAULT_PRIMARY_METRIC,
    margin: float = DEFAULT_MARGIN,
    champion_version: str | None = None,
) -> GateDecision:
    """Gate on ``metrics["model"]`` vs ``metrics["popularity"]`` and, if present, ``metrics["champion"]``.

    ``margin`` is relative: with 0.02 the candidate must be 2 % better than each baseline (lower
    for rmse / mae).  A missing or non-finite candidate figure is never promoted.
    """
    if margin < 0:
        raise ValueError("margin must not be negative")
    cand = float(metrics["model"].get(metric, float("nan")))
    pop = float(metrics["popularity"].get(metric, float("nan")))
    champ_metrics = metrics.get("champion")
    champ = None if champ_metrics is None else float(champ_metrics.get(metric, float("nan")))
    margin_txt = f" by {margin:.1%}" if margin else ""
    who = f"champion v{champion_version}" if champion_version else "champion"
    failures = []
    if not better(metric, cand, pop, margin):
        failures.append(f"does not beat popularity {pop:.4f}{margin_txt}")
    if champ is not None and not better(metric, cand, champ, margin):
        failures.append(f"does not beat {who} {champ:.4f}{margin_txt}")
    head = f"{metric} {cand:.4f}"
    if failures:
        reason = f"{head} " + " and ".join(failures) + ": kept as @challenger"
    elif champ is None:
        reason = f"{head} beats popularity {pop:.4f}{margin_txt} and there is no champion yet: promoted to @champion"
    else:
        reason = f"{head} beats popularity {pop:.4f} and {who} {champ:.4f}{margin_txt}: promoted to @champion"
    return GateDecision(not failures, reason, metric, float(margin), cand, pop, champ, champion_version)


#: the single components reported next to the candidate (the test metrics' keys)
SINGLE_COMPONENTS = ("svd", "item_item", "content", "buy_again")


def strategy_note(
    metrics: Mapping[str, Mapping[str, float]], metric: str, strategy: str, record: Mapping[str, Any] | None
) -> str:
    """Which strategy is registered (``ranker`` or ``blend``) and why, with the test figures on
    ``metric`` of the ranker, the blend, the best single component and popularity, e.g.
    ``"registered the ranker (validation nDCG@10 0.3120 vs blend 0.2950); test ndcg_at_10: ranker
    0.3301, blend 0.3100, best component svd 0.2800, popularity 0.1500"``."""
    record = record or {}
    validation = record.get("validation_ndcg") or {}
    why = f" (ranker not fitted: {record['skipped']})" if record.get("skipped") else ""
    if validation:
        rule = record.get("strategy_rule", "validation")
        chooser = "" if rule == "validation" else f", set by the ranker={rule!r} setting"
        why = f" (validation nDCG {validation['ranker']:.4f} vs blend {validation['blend']:.4f}{chooser})"
    figures = [f"{name} {metrics[name][metric]:.4f}" for name in ("ranker", "blend") if metric in metrics.get(name, {})]
    singles = {name: metrics[name][metric] for name in SINGLE_COMPONENTS if metric in metrics.get(name, {})}
    if singles:
        best = max(singles, key=lambda name: singles[name])
        figures.append(f"best component {best} {singles[best]:.4f}")
    figures.append(f"popularity {metrics['popularity'].get(metric, float('nan')):.4f}")
    return f"registered the {strategy}{why}; test {metric}: " + ", ".join(figures)
