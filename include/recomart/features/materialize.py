"""Load explicit time windows of the offline store (Postgres marts) into the online store (Redis).

Windows are always given by the caller (an Airflow data interval, a CLI argument): never
``now()``, so a re-run or a backfill loads exactly the same rows. Feast selects, per
entity, the latest row with ``start <= event_timestamp <= end`` (both ends inclusive).

Re-running a window is a no-op: Feast's Redis writer skips a row whose event time is not
newer than the stored one (``RedisOnlineStore.online_write_batch``). The same rule also
skips *corrections*, a changed value with an unchanged ``event_timestamp`` (for example
a dbt rebuild of the marts with the same ``as_of``). Two remedies:

- :func:`rematerialize_entities` for known entities: remove their fields of the view from
  Redis, then materialize the window again (only they are rewritten);
- :func:`rematerialize_window` for a whole snapshot: materialize the window through a
  store configured with Feast's ``skip_dedup``, which overwrites every entity that has a
  row in the window with its latest row there, with no moment where the entity is absent.

Both make the online store reflect the offline store *as of the window's end*: the window
must reach each corrected entity's latest row, or an older row replaces a newer value.

After Redis lost its data (a restart without persistence, a flush, a crash during a
write), :func:`restore_online_store` re-materializes what the registry records as
materialized.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from recomart.features.names import entity_spec
from recomart.features.store import feature_store, overwriting_store


@dataclass(frozen=True)
class MaterializeResult:
    """What one materialization did: the window, the feature views and how long it took."""

    start: datetime
    end: datetime
    feature_views: tuple[str, ...]
    seconds: float
    invalidated_entities: int = 0
    entity_ids: tuple[str, ...] = field(default_factory=tuple)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(UTC)


def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start_utc, end_utc = _utc(start, "start"), _utc(end, "end")
    if start_utc > end_utc:
        raise ValueError(f"window ends before it starts: {start_utc.isoformat()} > {end_utc.isoformat()}")
    return start_utc, end_utc


def batch_views(store) -> list:
    """The online feature views fed from the marts, i.e. without a push source.

    Views fed by a push source (``user_session_features``) get their online rows from the
    stream worker only: materializing their batch source would write older rows over pushed
    ones (the overwriting store skips Feast's event-time check), so windows leave them alone.
    """
    return [fv for fv in store.list_feature_views() if fv.online and getattr(fv, "stream_source", None) is None]


def _materialize(store, start: datetime, end: datetime, feature_views: Sequence[str] | None) -> MaterializeResult:
    start_utc, end_utc = _window(start, end)
    names = list(feature_views) if feature_views else sorted(fv.name for fv in batch_views(store))
    began = time.perf_counter()
    store.materialize(start_date=start_utc, end_date=end_utc, feature_views=names)
    return MaterializeResult(
        start=start_utc, end=end_utc, feature_views=tuple(names), seconds=time.perf_counter() - began
    )


def materialize_window(
    repo_dir: Path,
    env: Mapping[str, str],
    start: datetime,
    end: datetime,
    feature_views: Sequence[str] | None = None,
) -> MaterializeResult:
    """Materialize ``[start, end]`` (timezone-aware, both ends inclusive) of ``feature_views`` (default:
    every batch view, see :func:`batch_views`).

    Idempotent: running the same window again leaves Redis unchanged.
    """
    _window(start, end)
    return _materialize(feature_store(repo_dir, env), start, end, feature_views)


def _redis_keys(store, join_key: str, entity_ids: Sequence[str]) -> list[bytes]:
    """Feast's Redis key of each entity id (serialized entity key + project name)."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    version = store.config.entity_key_serialization_version
    return [
        _redis_key(
            store.project,
            EntityKey(join_keys=[join_key], entity_values=[Value(string_val=str(entity_id))]),
            entity_key_serialization_version=version,
        )
        for entity_id in entity_ids
    ]


def invalidate_online_entities(store, entity: str, entity_ids: Sequence[str]) -> int:
    """Remove ``entity_ids``' fields of the entity's feature view from Redis; return keys touched.

    Only that view's hash fields (its features and its ``_ts:<view>`` event time) are
    deleted, exactly as Feast's ``RedisOnlineStore.delete_table`` does for a whole view;
    fields of other views on the same key stay. Redis drops a hash left empty.
    """
    from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    if not isinstance(store.config.online_store, RedisOnlineStoreConfig):
        raise NotImplementedError("invalidating online entities is implemented for the Redis store only")
    spec = entity_spec(entity)
    view = store.get_feature_view(spec.feature_view)
    view_name = compute_versioned_name(view, store.config.registry.enable_online_feature_view_versioning)
    fields = [_mmh3(f"{view_name}:{feature.name}") for feature in view.features]
    fields.append(f"_ts:{view_name}".encode())
    keys = _redis_keys(store, spec.join_key, entity_ids)
    client = store.provider.online_store._get_client(store.config.online_store)
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hdel(key, *fields)
        removed = pipe.execute()
    return sum(1 for count in removed if count)


def delete_online_entities(store, entity: str, entity_ids: Sequence[str]) -> int:
    """Delete ``entity_ids`` from the Redis online store: the entity's whole key (every feature view's
    fields and event times); return how many keys existed.

    Feast 0.67's ``RedisOnlineStore`` has no delete for single entities (``delete_entity_values`` drops
    every key of an entity type, ``delete_table`` a whole view), so the keys are Feast's own
    (``_redis_key``: the serialized entity key followed by the project) and are deleted with the store's
    own Redis client.
    """
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    if not isinstance(store.config.online_store, RedisOnlineStoreConfig):
        raise NotImplementedError("deleting online entities is implemented for the Redis store only")
    keys = _redis_keys(store, entity_spec(entity).join_key, entity_ids)
    client = store.provider.online_store._get_client(store.config.online_store)
    return int(client.delete(*keys)) if keys else 0


def rematerialize_entities(
    repo_dir: Path,
    env: Mapping[str, str],
    entity: str,
    entity_ids: Sequence[str],
    start: datetime,
    end: datetime,
) -> MaterializeResult:
    """Push corrected offline rows of ``entity_ids`` to Redis even if their event time is unchanged.

    Deletes those entities' fields of the entity's feature view, then materializes
    ``[start, end]`` for that view; other entities are skipped by Feast's event-time check
    (they are unchanged). Between the two steps a read of an affected entity finds no
    features (for a few hundred milliseconds); an entity whose row left the window stays
    absent, which is the correct outcome for a deleted row.
    """
    start_utc, end_utc = _window(start, end)
    ids = tuple(dict.fromkeys(str(entity_id) for entity_id in entity_ids))
    spec = entity_spec(entity)
    store = feature_store(repo_dir, env)
    began = time.perf_counter()
    invalidated = invalidate_online_entities(store, entity, ids) if ids else 0
    store.materialize(start_date=start_utc, end_date=end_utc, feature_views=[spec.feature_view])
    return MaterializeResult(
        start=start_utc,
        end=end_utc,
        feature_views=(spec.feature_view,),
        seconds=time.perf_counter() - began,
        invalidated_entities=invalidated,
        entity_ids=ids,
    )


def rematerialize_window(
    repo_dir: Path,
    env: Mapping[str, str],
    start: datetime,
    end: datetime,
    feature_views: Sequence[str] | None = None,
) -> MaterializeResult:
    """Overwrite Redis with each entity's latest row in ``[start, end]``, whatever the stored event time.

    Use after the offline rows of the window were corrected in place. Rows are written
    even when their event time equals (or precedes) the stored one, so pick a window that
    reaches each entity's latest row (``transform`` uses the span of the feature histories).
    """
    _window(start, end)
    return _materialize(overwriting_store(repo_dir, env), start, end, feature_views)


@dataclass(frozen=True)
class RestoreResult:
    """What :func:`restore_online_store` rewrote: one :class:`MaterializeResult` per view, and the
    number of Redis keys of the project afterwards (one per entity that has features)."""

    views: tuple[MaterializeResult, ...]
    online_keys: int

    @property
    def seconds(self) -> float:
        return sum(view.seconds for view in self.views)


def materialized_span(view) -> tuple[datetime, datetime] | None:
    """``(earliest start, latest end)`` of the windows Feast recorded as materialized for ``view``
    (``FeatureView.materialization_intervals``), or None if it was never materialized."""
    intervals = view.materialization_intervals
    if not intervals:
        return None
    return min(start for start, _ in intervals).astimezone(UTC), max(end for _, end in intervals).astimezone(UTC)


def _mark_key(store) -> str:
    return f"recomart:{store.project}:materialized_built_at"


def materialized_mark(repo_dir: Path, env: Mapping[str, str]) -> datetime | None:
    """The ``built_at`` of the feature histories that the last complete ``transform`` materialization
    wrote to Redis (:func:`set_materialized_mark`), or None: never, or Redis lost it with its data."""
    store = feature_store(repo_dir, env)
    client = store.provider.online_store._get_client(store.config.online_store)
    value = client.get(_mark_key(store))
    return datetime.fromisoformat(value.decode()) if value else None


def set_materialized_mark(repo_dir: Path, env: Mapping[str, str], built_at: datetime) -> None:
    """Record in Redis, after a materialization, the latest ``built_at`` of the history rows it read.

    Written last, so it is in Redis only with the writes before it: an append-only file or a snapshot
    replays a prefix of the writes, and a Redis restarted empty or flushed has no mark, so the next
    materialization loads every entity again."""
    store = feature_store(repo_dir, env)
    client = store.provider.online_store._get_client(store.config.online_store)
    client.set(_mark_key(store), _utc(built_at, "built_at").isoformat())


def count_online_keys(store) -> int:
    """Redis keys of ``store``'s project (Feast's keys end with the project name)."""
    client = store.provider.online_store._get_client(store.config.online_store)
    return sum(1 for _ in client.scan_iter(match=b"*" + store.project.encode(), count=1000))


def restore_online_store(
    repo_dir: Path,
    env: Mapping[str, str],
    feature_views: Sequence[str] | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> RestoreResult:
    """Rebuild the online store after Redis lost it (a restart without persistence, a flush).

    For each batch view (default: all, see :func:`batch_views`), re-materializes the span of every window Feast
    recorded as materialized for it in the registry (:func:`materialized_span`), through
    the overwriting store: each entity gets its latest row of that span, which is what the
    runs that filled Redis left there (``transform``'s first window starts at the first
    loaded day; later ones at the first day rebuilt since), without waiting for new data.
    Safe on a healthy store (the same values are written again) and after a partial write
    (Redis killed mid-materialize).
    ``progress`` receives one line per step. Raises ``ValueError`` for an unknown view and
    ``RuntimeError`` naming the views that were never materialized (run ``transform`` first).
    """
    store = overwriting_store(repo_dir, env)
    views = [fv for fv in batch_views(store) if not feature_views or fv.name in feature_views]
    unknown = sorted(set(feature_views or ()) - {fv.name for fv in views})
    if unknown:
        raise ValueError(f"no online feature view named {', '.join(unknown)} in project {store.project}")
    spans = {fv.name: materialized_span(fv) for fv in views}
    never = sorted(name for name, span in spans.items() if span is None)
    if never:
        raise RuntimeError(f"{', '.join(never)} never materialized in project {store.project}: run transform first")
    results = []
    for name, (start, end) in sorted(spans.items()):
        progress(f"{name}: re-materializing [{start.isoformat()}, {end.isoformat()}]")
        result = _materialize(store, start, end, [name])
        progress(f"{name}: done in {result.seconds:.1f} s")
        results.append(result)
    return RestoreResult(views=tuple(results), online_keys=count_online_keys(store))
