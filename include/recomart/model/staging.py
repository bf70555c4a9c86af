"""A training round's inputs and split, staged as files for the train DAG's tasks.

The train DAG runs one round over several tasks (:mod:`recomart.model.trials`).  Its first task reads
the marts once, prepares the pairs and cuts the split, and writes what every later task needs into a
folder of its own DAG run: the round's catalogue, its prepared pairs and the split's parts (so every
task fits on the very rows the inputs digest was taken of, even if the marts change meanwhile, and no
task prepares and cuts them again: about 20 s per task at 10M events).  Frames go to Parquet with their
index, item vectors to ``.npz`` (no pickles), the round's description to ``round.json``; nothing big
goes through XCom.  The folder must be shared by every worker, as the MLflow artifact store is.

Files: ``round.json``, ``products.parquet`` and ``users.parquet`` (when the marts have them),
``vectors.npz`` (when item vectors are stored), ``data.parquet`` (the prepared pairs),
``train.parquet``, ``valid.parquet``, ``test.parquet``, ``combined.parquet`` (event splits) and
``split.json`` (the split's description), and one ``trial-NN.npz`` of factors per trial run.
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
_SPLIT_INFO = "split.json"


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


def stage_round(folder: Path, catalogue: Catalogue, data: pd.DataFrame, split: Split) -> None:
    """Write the round's ``catalogue``, its prepared pairs ``data`` and its ``split`` into ``folder``
    (emptied first: a retried first task starts over)."""
    discard_stage(folder)
    folder.mkdir(parents=True)
    frames = {"products": catalogue.products, "users": catalogue.users, "data": data}
    parts = {"train": split.train, "valid": split.valid, "test": split.test, "combined": split.combined}
    for name, frame in {**frames, **parts}.items():
        if frame is not None:
            frame.to_parquet(folder / f"{name}.parquet")
    (folder / _SPLIT_INFO).write_text(json.dumps(split.info))
    if catalogue.item_vectors is not None:
        vectors = catalogue.item_vectors
        write_arrays(folder / _VECTORS, {"item_ids": vectors.item_ids.astype(str), "vectors": vectors.vectors})


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


def read_prepared(folder: Path) -> tuple[pd.DataFrame, Split]:
    """The round's prepared pairs and split as :func:`stage_round` wrote them."""
    data, train, valid, test = (_read_frame(folder, name) for name in ("data", "train", "valid", "test"))
    if data is None or train is None or valid is None or test is None:
        raise FileNotFoundError(f"{folder} holds no prepared pairs and split: was it staged by an older version?")
    info = json.loads((folder / _SPLIT_INFO).read_text())
    return data, Split(train, valid, test, info, _read_frame(folder, "combined"))


def discard_stage(folder: Path) -> None:
    """Remove ``folder`` and everything staged in it (nothing when it does not exist)."""
    shutil.rmtree(folder, ignore_errors=True)
