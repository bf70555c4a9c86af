"""Helpers shared by the task bodies of several DAGs."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from recomart.warehouse.migrate import migrate

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from recomart.config import Settings
    from recomart.model.ranker_stage import FeaturesAt


def as_date(value: Any) -> date:
    """A ``date`` from a date, a datetime (UTC day of an aware one) or an ISO string."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def repeat_purchases_allowed(dataset: str | None) -> bool:
    """The feed policy of data set ``dataset``: True if any of its feeds declares
    ``repeat_purchases_recommendable`` (UCI), False for the generated shop and unknown data sets."""
    from recomart.ingest.feeds import feeds_for_dataset

    if not dataset:
        return False
    try:
        return any(feed.repeat_purchases_recommendable for feed in feeds_for_dataset(dataset))
    except KeyError:
        return False


def migrated_warehouse(dsn: str) -> str:
    """``dsn`` after bringing its warehouse to the newest schema migration (one ledger read when it is
    current): every task reaches the warehouse through this, so a deployment upgrades on its first run."""
    migrate(dsn, log=print)
    return dsn


def store_features_at(s: Settings, feature_service: str | None = None) -> FeaturesAt | None:
    """A :data:`recomart.model.ranker_stage.FeaturesAt` reading ``feature_service`` (default: the
    model's, :data:`recomart.features.names.FEATURE_SERVICE`) point-in-time from this deployment's
    feature store (:func:`recomart.features.point_in_time.entity_frames_at`), or ``None`` when the
    feature definitions were never applied here (no registry, e.g. marts loaded without the transform
    DAG); the learned ranker then uses only the features computed from the history."""
    import psycopg

    from recomart.features.apply_state import last_applied
    from recomart.features.names import FEATURE_SERVICE
    from recomart.features.point_in_time import entity_frames_at
    from recomart.tools import tool_env

    env = tool_env(s)
    service = feature_service or FEATURE_SERVICE
    try:
        applied = last_applied(env, env["RECOMART_FEAST_PROJECT"])
    except psycopg.OperationalError as exc:
        applied, reason = None, f"its registry is unreachable ({exc})"
    else:
        reason = f"project {env['RECOMART_FEAST_PROJECT']} was never applied"
    if applied is None:
        logging.getLogger(__name__).warning("feature service %s not read: %s", service, reason)
        return None

    def features_at(
        cutoff: pd.Timestamp, user_ids: np.ndarray, item_ids: np.ndarray
    ) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        frames = entity_frames_at(
            s.feature_repo_dir, env, cutoff.to_pydatetime(), {"user_id": user_ids, "item_id": item_ids}, service
        )
        return frames.get("user_id"), frames.get("item_id")

    return features_at
