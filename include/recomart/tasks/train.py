"""Task body of the ``train`` DAG: one training round on the marts, gated, registered and logged."""

from __future__ import annotations

import logging
from typing import Any

from recomart.config import Settings
from recomart.marts import EVENTS_RELATION, RATINGS_RELATION, read_catalogue, read_events, read_ratings
from recomart.model.catalogue import Catalogue
from recomart.model.config import TrainingConfig
from recomart.model.promotion import train_and_gate
from recomart.model.promotion_log import record_promotion
from recomart.tasks.common import repeat_purchases_allowed

log = logging.getLogger(__name__)


def train_and_register(s: Settings, dsn: str) -> dict[str, Any]:
    """Train the hybrid on the marts with :meth:`TrainingConfig.from_settings`: a time split (of the
    interaction events for feeds with repeat purchases, of the rating pairs otherwise), bounded SVD
    tuning and the blend fitted on validation (products and segments from the marts, the data set's
    repeat-purchase policy), every contender scored once on the test window; the gate registers
    ``@champion`` or ``@challenger`` and the decision goes to ``ops.model_promotions``."""
    repeat = repeat_purchases_allowed(s.dataset)
    frames = read_catalogue(dsn)
    events = read_events(dsn) if repeat else None
    outcome = train_and_gate(
        None if repeat else read_ratings(dsn),
        events=events,
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        artifact_dir=s.mlflow_artifacts_dir,
        config=TrainingConfig.from_settings(s),
        catalogue=Catalogue(frames.products, frames.users, repeat),
        dataset_source=EVENTS_RELATION if repeat else RATINGS_RELATION,
        tags={"dataset": s.dataset},
    )
    summary = outcome.summary(s.model_name)
    if outcome.registered.promoted:
        log.info("model %s v%s promoted: %s", s.model_name, summary["model_version"], summary["reason"])
    else:
        log.warning("model %s v%s NOT promoted: %s", s.model_name, summary["model_version"], summary["reason"])
    record_promotion(dsn, summary)
    return summary
