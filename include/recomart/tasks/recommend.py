"""Task bodies of the ``recommend`` DAG: rank every user through the champion and swap ``reco.*`` in.

The DAG fans out (:func:`prepare_shards`, :func:`rank_one_shard` per shard, :func:`publish_shards`,
:func:`discard_unpublished`); :func:`publish_recommendations` does the same in one process.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from recomart.config import Settings
from recomart.marts import marts_digest
from recomart.model.registry import current_champion_version
from recomart.recommend.cache import cache_layout, publish_cache
from recomart.recommend.run import generate_recommendations
from recomart.recommend.shards import (
    Shard,
    begin_sharded_generation,
    discard_sharded_generation,
    publish_sharded_generation,
    rank_shard,
)
from recomart.recommend.tables import live_generation
from recomart.tasks.common import repeat_purchases_allowed, store_features_at

log = logging.getLogger(__name__)


def unchanged_reason(dsn: str, champion: str | None, digest: str | None) -> str | None:
    """Why ranking again would publish the live generation once more (its model version and marts
    digest equal the champion's and the marts' now), or None when something changed."""
    live = live_generation(dsn)
    if live is None or digest is None or (live[1], live[2]) != (champion, digest):
        return None
    model = f"model version {champion}" if champion else "no model"
    return f"generation {live[0]} stays live: ranked with {model} from the same marts (digest {digest[:12]})"


def _nothing_to_rank(s: Settings, dsn: str, force: bool) -> tuple[str, dict[str, Any] | None]:
    """The marts' digest, and the task's ``no_change`` summary when the live generation already has the
    current champion and these marts (None when there is work to do, or with ``force``)."""
    digest = marts_digest(dsn)
    champion = current_champion_version(s.mlflow_tracking_uri, s.model_name)
    reason = None if force else unchanged_reason(dsn, champion, digest)
    if reason is None:
        return digest, None
    log.info("nothing to rank: %s", reason)
    return digest, {"model_version": champion, "marts_digest": digest, "no_change": reason}


def publish_recommendations(s: Settings, dsn: str, *, force: bool = False) -> dict[str, Any]:
    """Rank every user with the champion (popularity while there is none) and swap the ``reco`` tables in;
    a no-op (``no_change``: the reason) when the live generation already has this champion and marts,
    unless ``force``."""
    digest, skipped = _nothing_to_rank(s, dsn, force)
    if skipped is not None:
        return skipped
    result = generate_recommendations(
        dsn,
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        dataset=s.dataset,
        repeat_purchases=repeat_purchases_allowed(s.dataset),
        marts_digest=digest,
        log=log.info,
        store_features=lambda service: store_features_at(s, service),
    )
    cached = copy_live_generation_to_redis(s, dsn)
    return {
        "generation_id": result.generation_id,
        "model_version": result.model_version,
        "users": result.users,
        "rows": result.rows,
        "strategies": result.strategy_counts,
        "similar_items": result.similar_kinds,
        "seconds": round(result.seconds, 2),
        "redis": cached,
        "marts_digest": digest,
    }


def prepare_shards(s: Settings, dsn: str, *, force: bool = False) -> dict[str, Any]:
    """The sharded run's first task: ``{"shards": [shard dicts]}`` of a generation begun for
    ``s.recommend_shards`` shard tasks, or ``{"no_change": reason}`` as :func:`publish_recommendations`."""
    digest, skipped = _nothing_to_rank(s, dsn, force)
    if skipped is not None:
        return skipped
    shards = begin_sharded_generation(
        dsn,
        s.recommend_shards,
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        dataset=s.dataset,
        repeat_purchases=repeat_purchases_allowed(s.dataset),
        digest=digest,
        log=log.info,
    )
    return {"shards": [shard.as_dict() for shard in shards]}


def rank_one_shard(s: Settings, dsn: str, shard: dict[str, Any]) -> dict[str, Any]:
    """A shard task: rank one shard's users into its generation's table (see :mod:`recomart.recommend.shards`)."""
    return rank_shard(
        dsn,
        Shard.from_dict(shard),
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        repeat_purchases=repeat_purchases_allowed(s.dataset),
        log=log.info,
        store_features=lambda service: store_features_at(s, service),
    )


def publish_shards(s: Settings, dsn: str, shards: list[dict[str, Any]], ranked: list[dict[str, Any]]) -> dict[str, Any]:
    """The sharded run's final task: verify and swap the generation in, then copy it to Redis;
    ``ranked`` are the shard tasks' summaries (their seconds go to the summary)."""
    plan = [Shard.from_dict(shard) for shard in shards]
    result = publish_sharded_generation(dsn, plan, log=log.info)
    return {
        "generation_id": result.generation_id,
        "model_version": result.model_version,
        "users": result.users,
        "rows": result.rows,
        "strategies": result.strategy_counts,
        "shards": len(plan),
        "shard_seconds": [r["seconds"] for r in sorted(ranked, key=lambda r: r["shard"])],
        "seconds": round(result.seconds, 2),
        "redis": copy_live_generation_to_redis(s, dsn),
        "marts_digest": plan[0].marts_digest,
    }


def discard_unpublished(dsn: str, shards: list[dict[str, Any]]) -> bool:
    """The sharded run's teardown: mark its generation failed unless published, drop its tables."""
    return bool(shards) and discard_sharded_generation(dsn, int(shards[0]["generation_id"]), log=log.info)


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
