"""A training round's inputs and split, staged as files for the train DAG's tasks.

The train DAG runs one round over several tasks (:mod:`recomart.model.trials`).  Its first task reads
the marts once and writes what every later task needs into a folder of its own DAG run: the round's
inputs (so the final fit sees the very rows the inputs digest was taken of, even if the marts change
meanwhile), and the split's train and validation parts, which each trial task reads.  Frames go to
Parquet, item vectors to ``.npz`` (no pickles), the round's description to ``round.json``; nothing big
goes through XCom.  The folder must be shared by every worker, as the MLflow artifact store is.

Files: ``round.json``, ``ratings.parquet`` or ``events.parquet``, ``products.parquet`` and
``users.parquet`` (when the marts have them), ``vectors.npz`` (when item vectors are stored),
``train.parquet``, ``valid.parquet`` and one ``trial-NN.npz`` of factors per trial run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recomart.model.catalogue import Catalogue
from recomart.model.config import TrainingConfig
from recomart.model.serialization import read_arrays, write_arrays
from recomart.model.split import Split
from recomart.ranking.embedding import ItemVectors

ROUND_FILE = "round.json"
_VECTORS = "vectors.npz"


@dataclass(frozen=True)
class RoundInputs:
    """What one training round reads from the marts: the rating pairs (``ratings``) or, for feeds with
    repeat purchases, the interaction ``events``; the ``catalogue`` (products, segments, feed policy,
    item vectors); and ``dataset_source``, the relation the interactions came from."""

    ratings: pd.DataFrame | None
    events: pd.DataFrame | None
    catalogue: Catalogue
    dataset_source: str


@dataclass(frozen=True)
class StagedRound:
    """``round.json``: the DAG run, the inputs digest the version will carry, the prepared pairs' digest
    (:func:`recomart.model.train.data_digest`), the training settings (their ``repr``) and the MLflow
    experiment and parent run of the trials."""

    airflow_run_id: str
    inputs_digest: str
    data_digest: str
    config: str
    dataset_source: str
    repeat_purchases: bool
    experiment_id: str
    parent_run_id: str

    @property
    def exclude_seen(self) -> bool:
        return not self.repeat_purchases


def stage_round(folder: Path, inputs: RoundInputs, split: Split) -> None:
    """Write ``inputs`` and the ``split``'s train and validation parts into ``folder`` (emptied first: a
    retried first task starts over)."""
    discard_stage(folder)
    folder.mkdir(parents=True)
    catalogue = inputs.catalogue
    frames = {"ratings": inputs.ratings, "events": inputs.events, "products": catalogue.products}
    for name, frame in {**frames, "users": catalogue.users}.items():
        if frame is not None:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    if catalogue.item_vectors is not None:
        vectors = catalogue.item_vectors
        write_arrays(folder / _VECTORS, {"item_ids": vectors.item_ids.astype(str), "vectors": vectors.vectors})
    split.train.to_parquet(folder / "train.parquet", index=False)
    split.valid.to_parquet(folder / "valid.parquet", index=False)


def write_round(folder: Path, staged: StagedRound) -> None:
    (folder / ROUND_FILE).write_text(json.dumps(asdict(staged), indent=2))


def read_round(folder: Path, config: TrainingConfig) -> StagedRound:
    """The staged round of ``folder``; raises when it is missing or was staged with other settings than
    ``config`` (the settings changed while the DAG run was in flight)."""
    path = folder / ROUND_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no staged training round at {folder}: its first task did not finish, or its DAG run was"
            " abandoned and a later run discarded it (clear the run from its prepare task)"
        )
    staged = StagedRound(**json.loads(path.read_text()))
    if staged.config != repr(config):
        raise RuntimeError(f"the training settings changed since the round staged at {folder} began")
    return staged


def peek_round(folder: Path) -> dict[str, Any] | None:
    """``round.json`` of ``folder`` as it is, or None (the teardown reads it whatever the settings)."""
    path = folder / ROUND_FILE
    return json.loads(path.read_text()) if path.exists() else None


def read_parts(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The staged split's train and validation parts."""
    return pd.read_parquet(folder / "train.parquet"), pd.read_parquet(folder / "valid.parquet")


def _read_frame(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / f"{name}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def read_catalogue(folder: Path, staged: StagedRound) -> Catalogue:
    """The round's catalogue as :func:`stage_round` wrote it (products, users, feed policy, vectors)."""
    vectors = None
    if (folder / _VECTORS).exists():
        stored = read_arrays(folder / _VECTORS)
        vectors = ItemVectors(stored["item_ids"].astype(object), stored["vectors"])
    return Catalogue(_read_frame(folder, "products"), _read_frame(folder, "users"), staged.repeat_purchases, vectors)


def read_inputs(folder: Path, staged: StagedRound) -> RoundInputs:
    """The round's inputs as :func:`stage_round` wrote them."""
    catalogue = read_catalogue(folder, staged)
    return RoundInputs(_read_frame(folder, "ratings"), _read_frame(folder, "events"), catalogue, staged.dataset_source)


def discard_stage(folder: Path) -> None:
    """Remove ``folder`` and everything staged in it (nothing when it does not exist)."""
    shutil.rmtree(folder, ignore_errors=True)
