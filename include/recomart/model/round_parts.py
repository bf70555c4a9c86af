"""The parts of a training round that the train DAG's parallel tasks hand on, as files of its stage.

Once the SVD is chosen, the train DAG fits the blend and refits the chosen SVD (on train + validation,
and on all the data) in parallel tasks; then it scores the test window and runs the learned ranker's
stage in parallel; its last task assembles the round (:func:`recomart.model.train.round_result`),
gates and registers it.  Each part goes into the DAG run's staging folder
(:mod:`recomart.model.staging`): arrays as uncompressed ``.npz`` (a 10,000-item EASE matrix is
written and read in seconds; no pickles), everything else as JSON.

Files: ``blend.json``; ``refit-<window>.npz`` with ``refit-<window>.json``; ``scored.json``,
``scored-eval.npz`` and ``scored-hybrid.npz``; ``ranker.json`` and ``ranker.npz`` (when a ranker is
to be served).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from recomart.model.blend_search import BlendFit
from recomart.model.ranker_stage import RankerStage
from recomart.model.serialization import read_arrays, write_arrays
from recomart.model.train import ScoredRound
from recomart.ranking.factors import FactorModel
from recomart.ranking.hybrid import HybridRecommender
from recomart.ranking.ranker import LearnedRanker


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays (``json.dumps``'s ``default``)."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, default=_plain))


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the task that writes it did not finish in this DAG run")
    return json.loads(path.read_text())


def save_blend(folder: Path, blend: BlendFit, seconds: float) -> None:
    """``blend.json``: the fitted blend and the seconds its fit took."""
    _write_json(folder / "blend.json", {"blend": dataclasses.asdict(blend), "seconds": seconds})


def load_blend(folder: Path) -> tuple[BlendFit, float]:
    """(the blend of :func:`save_blend`, the seconds its fit took)."""
    stored = _read_json(folder / "blend.json")
    return BlendFit(**stored["blend"]), float(stored["seconds"])


def save_refit(folder: Path, window: str, fitted: tuple[FactorModel, int], seconds: float) -> None:
    """The SVD refitted on ``window``: its factors and the negatives its fit added."""
    factors, n_negatives = fitted
    write_arrays(folder / f"refit-{window}.npz", factors.to_arrays())
    _write_json(folder / f"refit-{window}.json", {"n_negatives": int(n_negatives), "seconds": seconds})


def load_refit(folder: Path, window: str) -> tuple[FactorModel, int] | None:
    """(factors, negatives added) of :func:`save_refit`, or None when ``window`` was not refitted."""
    if not (folder / f"refit-{window}.json").exists():
        return None
    stored = _read_json(folder / f"refit-{window}.json")
    return FactorModel.from_arrays(read_arrays(folder / f"refit-{window}.npz")), int(stored["n_negatives"])


def save_scored(folder: Path, scored: ScoredRound) -> None:
    """The test-window half of the round (:class:`~recomart.model.train.ScoredRound`)."""
    hybrid_arrays, hybrid_settings = scored.recommender.state()
    write_arrays(folder / "scored-eval.npz", scored.eval_model.to_arrays())
    write_arrays(folder / "scored-hybrid.npz", dict(hybrid_arrays))
    fields = {f.name: getattr(scored, f.name) for f in dataclasses.fields(scored)}
    payload = {**fields, "eval_model": None, "recommender": hybrid_settings}
    _write_json(folder / "scored.json", payload)


def load_scored(folder: Path) -> ScoredRound:
    stored = _read_json(folder / "scored.json")
    recommender = HybridRecommender.from_state(read_arrays(folder / "scored-hybrid.npz"), stored["recommender"])
    eval_model = FactorModel.from_arrays(read_arrays(folder / "scored-eval.npz"))
    return ScoredRound(**{**stored, "eval_model": eval_model, "recommender": recommender})


def save_ranker_stage(folder: Path, stage: RankerStage | None) -> None:
    """The ranker's stage (``None``: the ranker is off), its served ranker's arrays apart."""
    if stage is None:
        _write_json(folder / "ranker.json", None)
        return
    fields = {f.name: getattr(stage, f.name) for f in dataclasses.fields(stage)}
    served = None
    if stage.served is not None:
        arrays, served = stage.served.state()
        write_arrays(folder / "ranker.npz", arrays)
    _write_json(folder / "ranker.json", {**fields, "served": served})


def load_ranker_stage(folder: Path) -> RankerStage | None:
    stored = _read_json(folder / "ranker.json")
    if stored is None:
        return None
    served = stored["served"]
    if served is not None:
        served = LearnedRanker.from_state(read_arrays(folder / "ranker.npz"), served)
    return RankerStage(**{**stored, "served": served})
