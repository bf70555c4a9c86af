"""The SVD search of a training round fanned out: one task per trial, then a reduce that picks the best.

:func:`recomart.model.tuning.tune_svd` runs the trials one after another in one process; the train DAG
runs the same trials as mapped tasks and reaches the same choice:

1. :func:`plan_trials` (the first task, after staging the split, :mod:`recomart.model.staging`): one
   :class:`TrialSpec` per candidate of :func:`recomart.model.tuning.svd_candidates`, in the same
   order; a single spec that searches nothing when ``tune_svd`` would not search (no validation
   window, one candidate).
2. :func:`run_trial` (one task per spec, any worker): fits the candidate on the staged train part,
   scores the validation part (:func:`recomart.model.tuning.svd_trial`) and keeps its factors next to
   the staged split.  The search's wall-clock budget holds across tasks: a trial other than the first
   that starts after ``deadline`` is skipped.
3. :func:`choose_trial` (the reduce): the best trial on validation by
   :func:`recomart.model.tuning.best_trial` (the lowest index on ties, whatever order the tasks ran or
   finished in); the base parameters, with no trials, when a trial found no warm validation user,
   as ``tune_svd`` does.
4. :func:`tuned_from_choice` gives the final task the :class:`~recomart.model.tuning.TunedSVD` that
   :func:`recomart.model.train.train_tune_evaluate` takes instead of searching itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recomart.model.config import TrainingConfig
from recomart.model.serialization import load_factors, save_factors
from recomart.model.split import Split
from recomart.model.staging import read_parts
from recomart.model.tuning import Trial, TunedSVD, best_trial, searches, svd_candidates, svd_trial, trial_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialSpec:
    """One mapped trial: candidate ``params`` number ``index`` of the round staged in ``stage``;
    ``deadline`` (epoch seconds) ends the search's budget; ``search`` False: the round searches nothing."""

    index: int
    params: dict[str, Any]
    stage: str
    deadline: float
    search: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSpec:
        return cls(**data)


def plan_trials(config: TrainingConfig, split: Split, stage: Path, *, started: float) -> list[TrialSpec]:
    """The trials of a round whose split is staged in ``stage``; ``started`` (epoch seconds) starts the
    budget ``config.tuning_budget_s``."""
    candidates = svd_candidates(config)
    deadline = started + float(config.tuning_budget_s)
    if not searches(split.valid, candidates):
        return [TrialSpec(0, dict(config.svd_params), str(stage), deadline, search=False)]
    return [TrialSpec(i, params, str(stage), deadline) for i, params in enumerate(candidates)]


def factors_path(stage: Path, index: int) -> Path:
    return stage / f"trial-{index:02d}.npz"


def run_trial(spec: TrialSpec, config: TrainingConfig, *, exclude_seen: bool) -> dict[str, Any]:
    """Run one trial: ``{"index", "params", "metrics", "seconds", "factors", "n_negatives"}`` (the path of
    its fitted factors and the negatives the fit added), or ``{"index", "skipped"}`` (no search, or the
    budget was spent before it started), or ``{"index", "error"}`` (the validation part has no warm
    user)."""
    if not spec.search:
        return {"index": spec.index, "skipped": "no search: no validation window or a single candidate"}
    if spec.index > 0 and time.time() >= spec.deadline:
        return {"index": spec.index, "skipped": f"the tuning budget of {config.tuning_budget_s:g}s was spent"}
    stage = Path(spec.stage)
    train, valid = read_parts(stage)
    started = time.perf_counter()
    try:
        (model, negatives), metrics = svd_trial(train, valid, config, dict(spec.params), exclude_seen=exclude_seen)
    except ValueError as exc:
        return {"index": spec.index, "error": str(exc)}
    seconds = time.perf_counter() - started
    metric = config.effective_tuning_metric
    log.info("trial %d %s: %s=%.4f (%.1fs)", spec.index, spec.params, metric, metrics[metric], seconds)
    path = save_factors(model, factors_path(stage, spec.index))
    return {
        "index": spec.index,
        "params": spec.params,
        "metrics": metrics,
        "seconds": seconds,
        "factors": str(path),
        "n_negatives": negatives,
    }


def choose_trial(results: Sequence[Mapping[str, Any]], config: TrainingConfig) -> dict[str, Any]:
    """The reduce: ``{"params", "trials", "best_index", "factors", "n_negatives", "reason"}`` (JSON-safe):
    the best run trial's parameters, factors and negatives and every run trial (``TunedSVD.trials``);
    the base parameters, no trials and no factors when no trial ran or one found no warm validation
    user."""
    base = dict(config.svd_params)
    if errors := [r for r in results if "error" in r]:
        log.warning("tuning skipped: %s", errors[0]["error"])
        return _no_choice(base, errors[0]["error"])
    ran = sorted((r for r in results if "metrics" in r), key=lambda r: r["index"])
    if not ran:
        reason = next((r["skipped"] for r in results if "skipped" in r), "no trial ran")
        return _no_choice(base, reason)
    trials = [Trial(int(r["index"]), dict(r["params"]), dict(r["metrics"]), float(r["seconds"])) for r in ran]
    metric = config.effective_tuning_metric
    best = best_trial(trials, metric)
    chosen = next(r for r in ran if r["index"] == best.index)
    skipped = len(results) - len(ran)
    reason = f"trial {best.index} of {len(ran)} run ({skipped} skipped) is best on validation {metric}"
    log.info("%s: %s=%.4f %s", reason, metric, best.metrics[metric], best.params)
    return {
        "params": best.params,
        "trials": trial_records(trials),
        "best_index": best.index,
        "factors": chosen["factors"],
        "n_negatives": int(chosen["n_negatives"]),
        "reason": reason,
    }


def _no_choice(params: dict[str, Any], reason: str) -> dict[str, Any]:
    """:func:`choose_trial`'s answer when no trial chose: ``params`` (the base ones), no factors."""
    return {"params": params, "trials": [], "best_index": None, "factors": None, "n_negatives": 0, "reason": reason}


def tuned_from_choice(choice: Mapping[str, Any]) -> TunedSVD:
    """The :class:`TunedSVD` of :func:`choose_trial`'s choice, its factors loaded from the stage."""
    factors = choice.get("factors")
    model = None if factors is None else load_factors(Path(factors))
    return TunedSVD(dict(choice["params"]), list(choice["trials"]), model, int(choice["n_negatives"]))
