"""The parts of a training round that the train DAG's parallel tasks hand on, as files of its stage.

The learned ranker's generators are tuned beside the SVD trials.  Once the SVD is chosen, the train DAG
fits the blend and refits the chosen SVD (on train + validation, and on all the data) in parallel tasks;
then it scores the test window while it fits the learned ranker, whose test window and serving fit run
in parallel after it; its last task assembles the round (:func:`recomart.model.train.round_result`),
gates and registers it.  Each part goes into the DAG run's staging folder
(:mod:`recomart.model.staging`): arrays as uncompressed ``.npz`` (a 10,000-item EASE matrix is
written and read in seconds; no pickles), everything else as JSON.

Files: ``blend.json``; ``refit-<window>.npz`` with ``refit-<window>.json``; ``scored.json``,
``scored-eval.npz`` and ``scored-hybrid.npz``; the ranker's parts: ``ranker-tune-<generator>.json``,
``ranker-fitted.json`` with ``ranker-fitted.npz``, ``ranker-test.json``, and ``ranker-served.json`` with
``ranker.npz`` (when a ranker is to be served).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from recomart.model.blend_search import BlendFit
from recomart.model.ranker_stage import (
    FittedRanker,
    GeneratorChoice,
    RankerStage,
    RankerTest,
    assemble_stage,
)
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


def save_generator_choice(folder: Path, choice: GeneratorChoice) -> None:
    """``ranker-tune-<name>.json``: one generator's parameters chosen on validation (and ``.npz``: the
    chosen point's fit on the train part, when there is one)."""
    fit_key = None
    if choice.fit is not None:
        fit_key, arrays = choice.fit
        write_arrays(folder / f"ranker-tune-{choice.name}.npz", arrays)
    fields = {field.name: getattr(choice, field.name) for field in dataclasses.fields(choice) if field.name != "fit"}
    _write_json(folder / f"ranker-tune-{choice.name}.json", {**fields, "fit_key": fit_key})


def load_generator_choices(folder: Path, names: Iterable[str]) -> list[GeneratorChoice]:
    """The choices of :func:`save_generator_choice` for ``names``, in that order."""
    choices = []
    for name in names:
        fields = _read_json(folder / f"ranker-tune-{name}.json")
        fit_key = fields.pop("fit_key")
        fit = None if fit_key is None else (fit_key, read_arrays(folder / f"ranker-tune-{name}.npz"))
        choices.append(GeneratorChoice(**fields, fit=fit))
    return choices


def _save_ranker(folder: Path, name: str, ranker: LearnedRanker | None) -> dict[str, Any] | None:
    """``ranker``'s arrays into ``<name>.npz``; returns its JSON-safe settings (None for no ranker)."""
    if ranker is None:
        return None
    arrays, settings = ranker.state()
    write_arrays(folder / f"{name}.npz", arrays)
    return settings


def _load_ranker(folder: Path, name: str, settings: dict[str, Any]) -> LearnedRanker:
    """The ranker of :func:`_save_ranker` (``settings``: what it returned)."""
    return LearnedRanker.from_state(read_arrays(folder / f"{name}.npz"), settings)


def save_fitted_ranker(folder: Path, fitted: FittedRanker | None) -> None:
    """``ranker-fitted.json`` (and ``.npz``): the ranker fitted on the train part and the strategy chosen
    on validation (``None``: the ranker is off)."""
    if fitted is None:
        _write_json(folder / "ranker-fitted.json", None)
        return
    fields = {f.name: getattr(fitted, f.name) for f in dataclasses.fields(fitted)}  # no deep copy of the ranker
    _write_json(
        folder / "ranker-fitted.json", {**fields, "ranker": _save_ranker(folder, "ranker-fitted", fitted.ranker)}
    )


def load_fitted_ranker(folder: Path) -> FittedRanker | None:
    stored = _read_json(folder / "ranker-fitted.json")
    if stored is None:
        return None
    settings = stored["ranker"]
    ranker = None if settings is None else _load_ranker(folder, "ranker-fitted", settings)
    return FittedRanker(**{**stored, "ranker": ranker})


def save_ranker_test(folder: Path, tested: RankerTest) -> None:
    """``ranker-test.json``: the ranker's test-window figures."""
    _write_json(folder / "ranker-test.json", dataclasses.asdict(tested))


def save_served_ranker(folder: Path, served: tuple[LearnedRanker, float]) -> None:
    """``ranker-served.json`` and ``ranker.npz``: the ranker refitted on all the data, and its seconds."""
    ranker, seconds = served
    _write_json(folder / "ranker-served.json", {"ranker": _save_ranker(folder, "ranker", ranker), "seconds": seconds})


def load_ranker_stage(folder: Path) -> RankerStage | None:
    """The ranker's stage from its parts (None: the ranker is off)."""
    fitted = load_fitted_ranker(folder)
    if fitted is None:
        return None
    if fitted.ranker is None:
        return assemble_stage(fitted, None, None)
    tested = RankerTest(**_read_json(folder / "ranker-test.json"))
    served = None
    if fitted.strategy == "ranker":
        stored = _read_json(folder / "ranker-served.json")
        served = (_load_ranker(folder, "ranker", stored["ranker"]), float(stored["seconds"]))
    return assemble_stage(fitted, tested, served)
