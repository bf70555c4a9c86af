"""Files of a registered model: the fitted hybrid and factor models as ``.npz`` (no pickles) + JSON.

A hybrid is stored as a directory holding ``hybrid.npz`` (every component's arrays, keyed
``<component>/<array>``) and ``hybrid.json`` (weights, options, feed policy and each component's
settings), the form :meth:`recomart.ranking.hybrid.HybridRecommender.state` gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np

from recomart.ranking.factors import FactorModel
from recomart.ranking.hybrid import HybridRecommender

#: the pyfunc artifacts of a registered version: the hybrid's directory, the factors its test figures
#: were measured with (re-scored by later gates) and the training metadata (JSON)
RECOMMENDER_ARTIFACT = "recommender"
EVAL_FACTORS_ARTIFACT = "eval_factors"
METADATA_ARTIFACT = "metadata"
HYBRID_ARRAYS = "hybrid.npz"
HYBRID_SETTINGS = "hybrid.json"
FORMAT_VERSION = 1


def save_hybrid(recommender: HybridRecommender, directory: Path) -> Path:
    """Write ``recommender`` into ``directory`` (created) and return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays, settings = recommender.state()
    with (directory / HYBRID_ARRAYS).open("wb") as fh:
        np.savez_compressed(fh, **cast(dict[str, Any], arrays))
    payload = {"format_version": FORMAT_VERSION, **settings}
    (directory / HYBRID_SETTINGS).write_text(json.dumps(payload, indent=2, sort_keys=True))
    return directory


def load_hybrid(directory: Path) -> HybridRecommender:
    """The hybrid written by :func:`save_hybrid`."""
    directory = Path(directory)
    settings = json.loads((directory / HYBRID_SETTINGS).read_text())
    if settings.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory} holds hybrid format {settings.get('format_version')}, not {FORMAT_VERSION}")
    with np.load(directory / HYBRID_ARRAYS, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return HybridRecommender.from_state(arrays, settings)


def save_factors(model: FactorModel, path: Path) -> Path:
    """Write ``model`` to ``path`` (a compressed ``.npz``) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez_compressed(fh, **cast(dict[str, Any], model.to_arrays()))
    return path


def load_factors(path: Path) -> FactorModel:
    """The factors written by :func:`save_factors`."""
    with np.load(Path(path), allow_pickle=False) as data:
        return FactorModel.from_arrays({key: data[key] for key in data.files})
