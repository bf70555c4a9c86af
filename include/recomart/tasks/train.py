"""Task body of the ``train`` DAG: one training round on the marts, gated, registered and logged.

Unchanged inputs do not retrain: the round's inputs digest (the marts' rows, :func:`recomart.marts.marts_digest`,
plus the training settings) is stored with each version (MLflow tag ``inputs_digest``, column of
``ops.model_promotions``); when it equals the last registered version's, the round is a logged no-op.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from recomart.config import Settings
from recomart.marts import (
    EVENTS_RELATION,
    RATINGS_RELATION,
    item_embeddings_digest,
    marts_digest,
    read_catalogue,
    read_events,
    read_item_embeddings,
    read_ratings,
)
from recomart.model.catalogue import Catalogue
from recomart.model.config import TrainingConfig
from recomart.model.promotion import PromotionOutcome, train_and_gate
from recomart.model.promotion_log import last_registered_digest, record_promotion
from recomart.model.staging import RoundInputs
from recomart.model.tuning import TunedSVD
from recomart.ranking.embedding import ItemVectors
from recomart.tasks.common import repeat_purchases_allowed, store_features_at

log = logging.getLogger(__name__)


def inputs_digest(dsn: str, config: TrainingConfig, dataset: str) -> str:
    """sha256 of the marts' digest, the item vectors' digest, the data set and the training settings: what
    decides a model (the content component may use the vectors)."""
    # the dataclass repr lists every setting in field order (its mappings are read-only proxies, which
    # neither asdict nor json can copy)
    inputs = f"{marts_digest(dsn)}\n{item_embeddings_digest(dsn)}\n{dataset}\n{config!r}"
    return hashlib.sha256(inputs.encode()).hexdigest()


def unchanged_since(dsn: str, model_name: str, digest: str) -> str | None:
    """The last registered version of ``model_name`` if it was trained on inputs with ``digest``, else None."""
    last = last_registered_digest(dsn, model_name)
    return last[0] if last is not None and last[1] == digest else None


def unchanged_summary(s: Settings, dsn: str, config: TrainingConfig) -> tuple[str, dict[str, Any] | None]:
    """The round's inputs digest, and the task's ``no_change`` summary when it equals the last registered
    version's (None when there is something to train)."""
    digest = inputs_digest(dsn, config, s.dataset)
    same = unchanged_since(dsn, s.model_name, digest)
    if same is None:
        return digest, None
    reason = f"inputs unchanged since version {same} (inputs digest {digest[:12]}): nothing trained or registered"
    log.info("model %s: %s", s.model_name, reason)
    return digest, {"model_name": s.model_name, "model_version": same, "no_change": reason, "inputs_digest": digest}


def read_round_inputs(s: Settings, dsn: str) -> RoundInputs:
    """The marts a round trains on: the rating pairs, or the events for feeds with repeat purchases (the
    data set's policy), the products and segments, and the stored item vectors."""
    repeat = repeat_purchases_allowed(s.dataset)
    frames = read_catalogue(dsn)
    stored = read_item_embeddings(dsn)  # the content component may blend them in if validation says so
    vectors = None if stored is None else ItemVectors(stored.item_ids, stored.vectors)
    return RoundInputs(
        ratings=None if repeat else read_ratings(dsn),
        events=read_events(dsn) if repeat else None,
        catalogue=Catalogue(frames.products, frames.users, repeat, vectors),
        dataset_source=EVENTS_RELATION if repeat else RATINGS_RELATION,
    )


def train_and_register(s: Settings, dsn: str, *, airflow_run_id: str | None = None) -> dict[str, Any]:
    """Train the hybrid on the marts with :meth:`TrainingConfig.from_settings`: a time split (of the
    interaction events for feeds with repeat purchases, of the rating pairs otherwise), bounded SVD
    tuning and the blend fitted on validation (products and segments from the marts, the data set's
    repeat-purchase policy), every contender scored once on the test window; the gate registers
    ``@champion`` or ``@challenger`` and the decision goes to ``ops.model_promotions``, tagged with
    ``airflow_run_id`` (the DAG run that trained it).  The learned ranker (``RECOMART_TRAIN_RANKER``)
    reads the model's feature service point-in-time (:func:`recomart.tasks.common.store_features_at`);
    the strategy that won on validation (ranker or blend) is the one registered.  One process; the
    train DAG runs the same round with its trials fanned out (:mod:`recomart.tasks.train_trials`).

    Returns the decision row; when the inputs equal the last registered version's, nothing is trained
    and the summary's ``no_change`` says so (``model_version``: that version)."""
    config = TrainingConfig.from_settings(s)
    digest, unchanged = unchanged_summary(s, dsn, config)
    if unchanged is not None:
        return unchanged
    return gate_and_record(s, dsn, read_round_inputs(s, dsn), config, digest, airflow_run_id=airflow_run_id)


def gate_and_record(
    s: Settings,
    dsn: str,
    inputs: RoundInputs,
    config: TrainingConfig,
    digest: str,
    *,
    airflow_run_id: str | None,
    tuned: TunedSVD | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Train on ``inputs`` (tuning the SVD unless ``tuned`` is given), gate, register (into the open MLflow
    run ``run_id`` when given) and append the decision to ``ops.model_promotions``; returns its row."""
    outcome = train_and_gate(
        inputs.ratings,
        events=inputs.events,
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        artifact_dir=s.mlflow_artifacts_dir,
        config=config,
        catalogue=inputs.catalogue,
        dataset_source=inputs.dataset_source,
        tags={"dataset": s.dataset, "inputs_digest": digest, "airflow_run_id": airflow_run_id},
        features_at=store_features_at(s) if config.ranker != "off" else None,
        tuned=tuned,
        run_id=run_id,
    )
    return record_outcome(s, dsn, outcome, digest, airflow_run_id=airflow_run_id)


def record_outcome(
    s: Settings, dsn: str, outcome: PromotionOutcome, digest: str, *, airflow_run_id: str | None
) -> dict[str, Any]:
    """Log the gate's decision and append it to ``ops.model_promotions``; returns its row."""
    summary = {**outcome.summary(s.model_name), "inputs_digest": digest, "airflow_run_id": airflow_run_id}
    if outcome.registered.promoted:
        log.info("model %s v%s promoted: %s", s.model_name, summary["model_version"], summary["reason"])
    else:
        log.warning("model %s v%s NOT promoted: %s", s.model_name, summary["model_version"], summary["reason"])
    record_promotion(dsn, summary)
    return summary
