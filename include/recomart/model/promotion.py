"""One training round: load the champion, train + tune + fit the blend + evaluate, gate, log and register.

The train DAG's task calls :func:`train_and_gate` and appends :meth:`PromotionOutcome.summary` to
``ops.model_promotions`` (:mod:`recomart.model.promotion_log`).  The gate judges the whole blend:
``metrics["model"]`` is the hybrid with its fitted weights and ``metrics["champion"]`` the champion's
factors with the champion's stored weights and options.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recomart.features.names import FEATURE_SERVICE
from recomart.model.catalogue import Catalogue
from recomart.model.config import TrainingConfig
from recomart.model.ranker_stage import FeaturesAt
from recomart.model.registry import RegisteredModel, load_champion_for_gate, log_and_register
from recomart.model.train import RATINGS_RELATION, TrainResult, train_tune_evaluate
from recomart.model.tuning import TunedSVD

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
            "strategy": self.result.metadata.get("strategy", "blend"),
            "timings": {key: round(float(value), 3) for key, value in self.result.timings.items()},
        }


def train_and_gate(
    ratings: pd.DataFrame | None,
    *,
    tracking_uri: str,
    model_name: str,
    artifact_dir: Path,
    config: TrainingConfig | None = None,
    events: pd.DataFrame | None = None,
    catalogue: Catalogue | None = None,
    feature_service: str = FEATURE_SERVICE,
    dataset_source: str = RATINGS_RELATION,
    tags: Mapping[str, Any] | None = None,
    features_at: FeaturesAt | None = None,
    tuned: TunedSVD | None = None,
    run_id: str | None = None,
) -> PromotionOutcome:
    """Re-score the current champion on this round's split next to the tuned candidate and popularity,
    then register the candidate as ``@champion`` or ``@challenger`` (see :mod:`recomart.model.gate`).

    ``ratings`` / ``events`` / ``config`` / ``catalogue`` / ``tuned``: as
    :func:`recomart.model.train.train_tune_evaluate`; ``run_id``: as
    :func:`recomart.model.registry.log_and_register` (the train DAG's parent run of its trials).
    The champion is re-scored with the factors its own test figures came from (fitted on its train and
    validation parts), blended with its stored weights and options, so a champion refitted on all data
    does not win on rows it was fitted on.  ``features_at``: the user and item features of
    ``feature_service`` point-in-time at a cutoff, for the learned ranker (None: it uses the features
    computed from the history only).
    """
    champion = load_champion_for_gate(tracking_uri, model_name)
    result = train_tune_evaluate(
        ratings,
        config,
        events=events,
        champion=champion,
        catalogue=catalogue,
        dataset_source=dataset_source,
        features_at=features_at,
        feature_service=feature_service,
        tuned=tuned,
    )
    return register_result(
        result,
        tracking_uri=tracking_uri,
        model_name=model_name,
        artifact_dir=artifact_dir,
        feature_service=feature_service,
        tags=tags,
        run_id=run_id,
    )


def register_result(
    result: TrainResult,
    *,
    tracking_uri: str,
    model_name: str,
    artifact_dir: Path,
    feature_service: str = FEATURE_SERVICE,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> PromotionOutcome:
    """Log and register a trained round (:func:`recomart.model.registry.log_and_register`): the gate
    gives it ``@champion`` or ``@challenger`` against the champion ``result`` was scored with."""
    registered = log_and_register(
        result,
        tracking_uri=tracking_uri,
        model_name=model_name,
        artifact_dir=artifact_dir,
        feature_service=feature_service,
        tags=tags,
        run_id=run_id,
    )
    log.info("model %s v%s: %s", model_name, registered.version, registered.reason)
    return PromotionOutcome(result, registered, result.champion_version)
