"""One training round: load the champion, train + tune + fit the blend + evaluate, gate, log and register.

The train DAG's task calls :func:`train_and_gate` and appends :meth:`PromotionOutcome.summary` to
``ops.model_promotions``.  The gate judges the whole blend: ``metrics["model"]`` is the hybrid with its
fitted weights and ``metrics["champion"]`` the champion's factors with the champion's stored weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recomart.model.blend_eval import Catalogue
from recomart.model.registry import RegisteredModel, load_champion, log_and_register
from recomart.model.train import RATINGS_RELATION, TrainConfig, TrainResult, train_tune_evaluate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionOutcome:
    """The trained result, the registered version and the champion it was compared with."""

    result: TrainResult
    registered: RegisteredModel
    previous_champion: str | None

    def summary(self, model_name: str) -> dict[str, Any]:
        """The row for ``ops.model_promotions`` (and the task's XCom): JSON-safe."""
        return {
            "model_name": model_name,
            "model_version": self.registered.version,
            "previous_champion": self.previous_champion,
            "decision": "promoted" if self.registered.promoted else "rejected",
            "reason": self.registered.reason,
            "metrics": self.result.metrics,
            "run_id": self.registered.run_id,
            "data_digest": self.result.data_digest,
            "blend": self.result.metadata.get("blend"),
        }


def train_and_gate(
    ratings: pd.DataFrame,
    *,
    tracking_uri: str,
    model_name: str,
    artifact_dir: Path,
    config: TrainConfig | None = None,
    feature_service: str = "recommender_v1",
    dataset_source: str = RATINGS_RELATION,
    tags: dict[str, Any] | None = None,
    catalogue: Catalogue | None = None,
) -> PromotionOutcome:
    """Re-score the current champion on this run's split next to the tuned candidate and popularity,
    then register the candidate as ``@champion`` or ``@challenger`` (see :mod:`recomart.model.gate`).

    The champion is re-scored with the factors its own test figures came from (fitted on its train
    and validation parts), so a champion refitted on all data does not win on rows it was fitted on,
    blended with its stored weights and input options (the default 0.7 CF / 0.3 content and default
    options for a version that has none).
    ``catalogue``: products, user segments and feed policy for the blend (see :class:`Catalogue`).
    """
    from recomart.recommend.hybrid import BlendWeights
    from recomart.recommend.run import blend_options

    loaded = load_champion(tracking_uri, model_name, for_evaluation=True)
    champion, meta, version = loaded if loaded is not None else (None, {}, None)
    result = train_tune_evaluate(
        ratings,
        config,
        champion=champion,
        champion_version=version,
        champion_trained_through=meta.get("factors_trained_through"),
        champion_weights=BlendWeights.from_meta(meta) if champion is not None else None,
        champion_options=blend_options(meta) if champion is not None else None,
        catalogue=catalogue,
        dataset_source=dataset_source,
    )
    registered = log_and_register(
        result,
        tracking_uri=tracking_uri,
        model_name=model_name,
        artifact_dir=artifact_dir,
        feature_service=feature_service,
        tags=tags,
    )
    log.info("model %s v%s: %s", model_name, registered.version, registered.reason)
    return PromotionOutcome(result, registered, version)
