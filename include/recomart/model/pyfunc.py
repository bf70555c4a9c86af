"""The registered recommender as an MLflow pyfunc: the whole hybrid (with its learned ranker, the ranker's
feature-service name and its candidate generators when the ranker won on validation), ranking against a
history passed in.

Load it with ``mlflow.pyfunc.load_model("models:/<name>@champion")`` (the artifact carries the
``recomart`` code; the lock's packages are all it needs) and call::

    model.predict(users, params={"history": "/path/history.parquet", "k": 10})

- ``users``: a frame with ``user_id`` (text) and optional ``segment`` (cold start ranks a user
  without history by trending in their segment, overall when it is missing or unknown);
- ``history`` parameter: a Parquet file of the users' interactions as of now, one row per
  user × item with ``user_id, item_id, purchases, last_interaction_at`` (the contract of
  :mod:`recomart.ranking.history`; ``marts.user_item_ratings`` has that shape).  Seen items,
  buy-again counts and the item-to-item and content profiles come from it.  Without it, every user
  the factors do not know is a cold-start user;
- ``user_features`` / ``item_features`` parameters: when the registered strategy is the learned
  ranker and it reads the feature store (its feature service is in the artifact's ``hybrid.json``,
  ``ranker.feature_service``), Parquet files of the user and item features of that service at the
  ranking's cutoff, indexed by ``user_id`` / ``item_id`` (what
  :func:`recomart.features.point_in_time.entity_frames_at` returns; the nightly job reads them at
  its own cutoff).  Without them such a ranker raises;
- returns one row per user and rank: ``user_id, rank, item_id, score``, the five component scores
  and the ``strategy`` (:data:`recomart.ranking.hybrid.RANKED_COLUMNS`), users in request order.

For the same users and history this is row for row what the nightly job writes to
``reco.user_recommendations`` (which ranks through the same loaded object).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

from recomart.model.serialization import RECOMMENDER_ARTIFACT, load_hybrid
from recomart.ranking.history import HISTORY_COLUMNS
from recomart.ranking.hybrid import RANKED_COLUMNS, HybridRecommender

DEFAULT_K = 10
HISTORY_PARAM = "history"
USER_FEATURES_PARAM = "user_features"
ITEM_FEATURES_PARAM = "item_features"


def recommender_signature(default_k: int = DEFAULT_K) -> ModelSignature:
    """Input ``user_id`` (+ optional ``segment``); output :data:`RANKED_COLUMNS`; params ``k``, ``history``."""
    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", "user_id"), ColSpec("string", "segment", required=False)]
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec("string", "user_id"),
        ColSpec("long", "rank"),
        ColSpec("string", "item_id"),
    ]
    outputs += [ColSpec("float", name, required=name == "score") for name in RANKED_COLUMNS if name.endswith("score")]
    outputs.append(ColSpec("string", "strategy"))
    return ModelSignature(
        inputs=Schema(inputs),
        outputs=Schema(outputs),
        params=ParamSchema(
            [
                ParamSpec("k", "long", default_k),
                ParamSpec(HISTORY_PARAM, "string", ""),
                ParamSpec(USER_FEATURES_PARAM, "string", ""),
                ParamSpec(ITEM_FEATURES_PARAM, "string", ""),
            ]
        ),
    )


def read_history(path: str | Path | None) -> pd.DataFrame:
    """The history Parquet file at ``path`` (an empty history for ``None`` or ``""``)."""
    if not path:
        return pd.DataFrame({column: [] for column in HISTORY_COLUMNS})
    return pd.read_parquet(Path(path), columns=list(HISTORY_COLUMNS))


class RecommenderModel(PythonModel):
    """The hybrid of :mod:`recomart.model.serialization` behind ``predict`` (see the module docstring)."""

    recommender: HybridRecommender

    def load_context(self, context: Any) -> None:
        self.recommender = load_hybrid(Path(context.artifacts[RECOMMENDER_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        history = read_history(params.get(HISTORY_PARAM))
        ranker = self.recommender.ranker
        if ranker is not None and ranker.feature_service is not None:
            paths = [str(params.get(USER_FEATURES_PARAM) or ""), str(params.get(ITEM_FEATURES_PARAM) or "")]
            if not all(paths):
                raise ValueError(
                    f"the registered ranker reads feature service {ranker.feature_service!r}: pass the "
                    f"{USER_FEATURES_PARAM} and {ITEM_FEATURES_PARAM} Parquet files at the ranking's cutoff"
                )
            ranker.user_features, ranker.item_features = (pd.read_parquet(Path(path)) for path in paths)
        return self.recommender.rank(frame, history, k=int(params.get("k", DEFAULT_K)))
