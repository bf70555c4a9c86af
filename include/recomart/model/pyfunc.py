"""The recommender as an MLflow pyfunc: a DataFrame of ``user_id`` in, top-k ``item_id`` + score out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from recomart.model.factors import FactorModel
from recomart.model.scoring import recommend_top_k

DEFAULT_K = 10
FACTORS_ARTIFACT = "factors"
SEEN_ARTIFACT = "seen"
METADATA_ARTIFACT = "metadata"


def recommender_signature(default_k: int = DEFAULT_K) -> ModelSignature:
    """Input ``user_id`` (string); output one row per (user, rank); parameter ``k``."""
    return ModelSignature(
        inputs=Schema([ColSpec("string", "user_id")]),
        outputs=Schema(
            [
                ColSpec("string", "user_id"),
                ColSpec("long", "rank"),
                ColSpec("string", "item_id"),
                ColSpec("float", "score"),
            ]
        ),
        params=ParamSchema([ParamSpec("k", "long", default_k), ParamSpec("exclude_seen", "boolean", True)]),
    )


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """Ranks the whole catalogue for each requested user with the SVD factors (vectorised, in blocks).

    Unknown users get ``mu + bi`` (the item-bias ranking).  With ``exclude_seen`` the items a known
    user interacted with in the training data are never returned.
    """

    def load_context(self, context: Any) -> None:
        self.factors = FactorModel.load(context.artifacts[FACTORS_ARTIFACT])
        seen_path = context.artifacts.get(SEEN_ARTIFACT)
        self.seen = sp.load_npz(seen_path).tocsr() if seen_path else None
        meta_path = context.artifacts.get(METADATA_ARTIFACT)
        self.metadata = json.loads(Path(meta_path).read_text()) if meta_path else {}

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        k = int(params.get("k", DEFAULT_K))
        exclude_seen = bool(params.get("exclude_seen", True))
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        users = frame["user_id"].astype(str).to_numpy()
        rows = self.factors.user_index(users)
        exclude = self.seen if exclude_seen else None
        idx, val = recommend_top_k(self.factors, rows, k, exclude, rows)
        filled = idx >= 0
        return pd.DataFrame(
            {
                "user_id": np.repeat(users, k).reshape(len(users), k)[filled],
                "rank": np.broadcast_to(np.arange(1, k + 1, dtype=np.int64), idx.shape)[filled],
                "item_id": self.factors.item_ids[np.where(filled, idx, 0)][filled].astype(str),
                "score": val[filled].astype(np.float32),
            }
        )
