"""A benchmark's private deployment on the configured servers: its own database prefix, Feast project,
model name and state folder, all named by one tag, and removed again at the end. Without configured
servers its embedded Postgres and Redis run on free ports under that folder (never on the ports of the
checkout's own ``./recomart services``) and are stopped at the end."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from recomart import services
from recomart.config import Settings, load_settings
from recomart.netcheck import free_port


@contextmanager
def private_deployment(tag_prefix: str, **environ: str) -> Iterator[Settings]:
    """Settings named by ``<tag_prefix>_<6 hex>`` (``RECOMART_DB_PREFIX``, ``RECOMART_FEAST_PROJECT``,
    ``RECOMART_MODEL_NAME``; state under ``/tmp/<tag>``; ``environ`` added on top), with their services
    ensured; on exit the databases, the Redis keys holding the tag (in the online store's database and,
    under ``RECOMART_EXECUTOR=celery``, the broker's) and the state folder are removed, and the embedded
    servers it started are stopped."""
    tag = f"{tag_prefix}_{uuid.uuid4().hex[:6]}"
    state = Path(f"/tmp/{tag}")
    names = {"RECOMART_DB_PREFIX": tag, "RECOMART_FEAST_PROJECT": tag, "RECOMART_MODEL_NAME": tag}
    ports = {"RECOMART_EMBEDDED_PG_PORT": str(free_port()), "RECOMART_EMBEDDED_REDIS_PORT": str(free_port())}
    s = load_settings({**ports, **os.environ, **names, "RECOMART_STATE_DIR": str(state), **environ})
    services.ensure_services(s)
    try:
        yield s
    finally:
        services.drop_databases(s)
        broker = [s.celery_broker_url] if s.executor == "celery" and s.celery_broker_url.startswith("redis") else []
        for url in {s.redis_url, *broker}:
            client = redis.Redis.from_url(url)
            for key in client.scan_iter(match=f"*{tag}*", count=1000):
                client.delete(key)
        services.stop_embedded(s)
        shutil.rmtree(state, ignore_errors=True)
