"""Files of a registered model: the fitted hybrid and factor models as ``.npz`` (no pickles) + JSON.

Arrays are written uncompressed: a model's arrays are mostly floats that zlib hardly shrinks (a
10,000 x 10,000 float32 EASE matrix: 370 MB compressed against 400 MB plain) but compresses at about
20 MB/s (16.8 s to write it, 2.8 s to read it, against 0.4 s and 0.2 s plain: ``benchmarks.model_arrays``),
and every task and API worker that serves the model reads them.  :func:`read_arrays` reads either form.

A hybrid is stored as a directory holding ``hybrid.npz`` (every component's arrays, keyed
``<component>/<array>``) and ``hybrid.json`` (weights, options, feed policy and each component's
settings), the form :meth:`recomart.ranking.hybrid.HybridRecommender.state` gives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz`` (the parent folder must exist)."""
    with Path(path).open("wb") as fh:
        np.savez(fh, **cast(dict[str, Any], dict(arrays)))


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (compressed or not), loaded into memory; pickles are refused."""
    with np.load(Path(path), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def save_hybrid(recommender: HybridRecommender, directory: Path) -> Path:
    """Write ``recommender`` into ``directory`` (created) and return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays, settings = recommender.state()
    write_arrays(directory / HYBRID_ARRAYS, arrays)
    payload = {"format_version": FORMAT_VERSION, **settings}
    (directory / HYBRID_SETTINGS).write_text(json.dumps(payload, indent=2, sort_keys=True))
    return directory


def load_hybrid(directory: Path) -> HybridRecommender:
    """The hybrid written by :func:`save_hybrid`."""
    directory = Path(directory)
    settings = json.loads((directory / HYBRID_SETTINGS).read_text())
    if settings.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory} holds hybrid format {settings.get('format_version')}, not {FORMAT_VERSION}")
    return HybridRecommender.from_state(read_arrays(directory / HYBRID_ARRAYS), settings)


def save_factors(model: FactorModel, path: Path) -> Path:
    """Write ``model`` to ``path`` (an ``.npz``) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_arrays(path, model.to_arrays())
    return path


def load_factors(path: Path) -> FactorModel:
    """The factors written by :func:`save_factors`."""
    return FactorModel.from_arrays(read_arrays(path))
