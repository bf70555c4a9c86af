"""Task body of the ``recommend`` DAG: rank every user through the champion and swap ``reco.*`` in."""

from __future__ import annotations

import logging
from typing import Any

from recomart.config import Settings
from recomart.recommend.run import generate_recommendations
from recomart.tasks.common import repeat_purchases_allowed

log = logging.getLogger(__name__)


def publish_recommendations(s: Settings, dsn: str) -> dict[str, Any]:
    """Rank every user with the champion (popularity while there is none) and swap the ``reco`` tables in."""
    result = generate_recommendations(
        dsn,
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        dataset=s.dataset,
        repeat_purchases=repeat_purchases_allowed(s.dataset),
        log=log.info,
    )
    return {
        "generation_id": result.generation_id,
        "model_version": result.model_version,
        "users": result.users,
        "rows": result.rows,
        "strategies": result.strategy_counts,
        "seconds": round(result.seconds, 2),
    }
