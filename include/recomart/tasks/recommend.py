"""Task body of the ``recommend`` DAG: rank every user through the champion and swap ``reco.*`` in."""

from __future__ import annotations

import logging
from typing import Any

import redis

from recomart.config import Settings
from recomart.recommend.cache import cache_layout, publish_cache
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
    cached = copy_live_generation_to_redis(s, dsn)
    return {
        "generation_id": result.generation_id,
        "model_version": result.model_version,
        "users": result.users,
        "rows": result.rows,
        "strategies": result.strategy_counts,
        "seconds": round(result.seconds, 2),
        "redis": cached,
    }


def copy_live_generation_to_redis(s: Settings, dsn: str) -> dict[str, Any]:
    """Copy the live generation into Redis and flip the API's pointer (after the swap). Redis is a
    copy: if it fails, the API notices that its pointer lags Postgres and reads Postgres instead."""
    client = redis.Redis.from_url(s.redis_url, socket_timeout=30)
    try:
        return publish_cache(dsn, client, cache_layout(s.db_prefix), log=log.info).as_dict()
    except redis.RedisError as exc:
        log.warning("live generation not copied to Redis (the API reads Postgres meanwhile): %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()
