"""Read features: one entity online (Redis), many rows point-in-time offline (Postgres).

Feast does not apply a feature view's ``ttl`` to online reads (feast-dev/feast#6821), so
:func:`online_features` returns the event time of the stored row and a ``stale`` flag
computed against the view's ``ttl`` at an explicit ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recomart.features.names import FEATURE_SERVICE, entity_spec
from recomart.features.store import feature_store

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


def service_feature_refs(store: FeatureStore, view_name: str, feature_service: str = FEATURE_SERVICE) -> list[str]:
    """The ``view:feature`` references of ``feature_service``'s projection of ``view_name``."""
    service = store.get_feature_service(feature_service)
    for projection in service.feature_view_projections:
        if projection.name == view_name:
            return [f"{projection.name_to_use()}:{feature.name}" for feature in projection.features]
    raise ValueError(f"feature service {feature_service!r} does not use the feature view {view_name!r}")


class OnlineReader:
    """A prepared online read of some feature views of a feature service, for one entity at a time.

    Built once (the service's projections, each view's ttl and join key are looked up here), then
    :meth:`read` costs one ``online_read`` of Feast's online store per view (one Redis ``HMGET``
    each). That is the store-level read ``get_online_features`` makes, without its per-call work
    of resolving references, grouping views and building a response proto (about 0.4 ms of the
    API's request, measured in ``benchmarks/serving.py``'s setup). The API keeps one per
    process; :func:`online_features` builds one per call. ``only``: read just these features of the
    service's projections (a caller that needs a few of a view's features parses no others).
    """

    def __init__(
        self,
        store: FeatureStore,
        views: Sequence[str],
        feature_service: str = FEATURE_SERVICE,
        only: Sequence[str] | None = None,
    ) -> None:
        service = store.get_feature_service(feature_service)
        projections = {p.name: p for p in service.feature_view_projections}
        missing = [name for name in views if name not in projections]
        if missing:
            raise ValueError(f"feature service {feature_service!r} does not use the feature view(s) {missing}")
        self.store = store
        self.feature_service = feature_service
        self.views = tuple(views)
        self.tables = {v: store.get_feature_view(v) for v in self.views}
        self.features = {v: [f.name for f in projections[v].features] for v in self.views}
        if only is not None:
            unknown = set(only) - {name for names in self.features.values() for name in names}
            if unknown:
                raise ValueError(f"feature service {feature_service!r} has no feature(s) {sorted(unknown)} in {views}")
            self.features = {v: [name for name in names if name in only] for v, names in self.features.items()}
        self.ttls = {v: table.ttl or timedelta(0) for v, table in self.tables.items()}
        join_keys = {store.get_entity(e).join_key for table in self.tables.values() for e in table.entities}
        if len(join_keys) != 1:
            raise ValueError(f"views {list(self.views)} do not share one join key (found {sorted(join_keys)})")
        self.join_key = join_keys.pop()
        self._provider = store._get_provider()  # Feast has no public accessor for its online store

    def read(self, entity_id: str, now: datetime | None = None) -> dict[str, dict[str, Any]]:
        """Each view's row for ``entity_id``: ``{view: {"feature_view", "found", "freshness", "stale",
        "features", "event_timestamp", "ttl_seconds", "age_seconds"}}`` (see :func:`online_features`)."""
        key = self._entity_key(entity_id)
        # a copy of the names: Feast's Redis store appends its timestamp field to the list it is given
        read = self._provider.online_read
        found = {
            view: read(self.store.config, table, [key], list(self.features[view]))
            for view, table in self.tables.items()
        }
        return self._rows(found, now)

    async def read_many_async(
        self, entity_ids: Sequence[str], now: datetime | None = None
    ) -> list[dict[str, dict[str, Any]]]:
        """:meth:`read` of several entities at once, on the event loop (Feast's asyncio Redis client): one
        ``online_read_async`` of all of them per view (Feast's Redis store pipelines their ``HMGET`` s),
        one result per entity, in order. The API's concurrent requests share these reads
        (:class:`recomart.serving.batching.Coalescer`)."""
        keys = [self._entity_key(entity_id) for entity_id in entity_ids]
        read = self._provider.online_read_async
        found = {
            view: await read(self.store.config, table, keys, list(self.features[view]))
            for view, table in self.tables.items()
        }
        return [self._rows({view: [rows[n]] for view, rows in found.items()}, now) for n in range(len(keys))]

    def _entity_key(self, entity_id: str) -> Any:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        return EntityKey(join_keys=[self.join_key], entity_values=[Value(string_val=str(entity_id))])

    def _rows(self, found: dict[str, list[tuple[Any, Any]]], now: datetime | None) -> dict[str, dict[str, Any]]:
        """The rows of :meth:`read` from each view's ``online_read`` result (one entity)."""
        at = (now or datetime.now(UTC)).astimezone(UTC)
        rows = {}
        for view, [(stamp, values)] in found.items():
            # an entity missing from Redis comes back with empty values and a zero event time
            present = stamp is not None and stamp.timestamp() > 0
            features = {
                name: _python_value(values[name]) if present and values else None for name in self.features[view]
            }
            rows[view] = self._row(view, features, stamp if present else None, at)
        return rows

    def _row(self, view: str, features: dict[str, Any], event_time: datetime | None, at: datetime) -> dict[str, Any]:
        ttl = self.ttls[view]
        age = (at - event_time).total_seconds() if event_time is not None else None
        freshness = _freshness(age, ttl)
        return {
            "feature_view": view,
            "found": event_time is not None,
            "freshness": freshness,
            "stale": freshness != "fresh",
            "features": features,
            "event_timestamp": event_time,
            "ttl_seconds": ttl.total_seconds() or None,
            "age_seconds": age,
        }


def _python_value(value: Any) -> Any:
    """A Feast ``Value`` proto as Python: scalars as they are, lists as lists, timestamps as UTC datetimes."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    raw = getattr(value, kind)
    if kind == "unix_timestamp_val":
        return datetime.fromtimestamp(raw, tz=UTC)
    if kind == "unix_timestamp_list_val":
        return [datetime.fromtimestamp(t, tz=UTC) for t in raw.val]
    if kind.endswith("_list_val"):
        return list(raw.val)
    return raw


def online_features(
    repo_dir: Path,
    env: Mapping[str, str],
    entity: str,
    entity_id: str,
    now: datetime | None = None,
    feature_service: str = FEATURE_SERVICE,
) -> dict[str, Any]:
    """The online features of one ``user`` or ``item`` in its entity's view, as ``feature_service`` defines them.

    Returns ``{"entity", "entity_id", "feature_view", "found", "freshness", "stale",
    "features", "event_timestamp", "ttl_seconds", "age_seconds"}``: ``features`` maps each
    feature of the service's projection of the entity's view to its value (``None`` when
    absent); ``event_timestamp`` is the
    stored row's event time (UTC, ``None`` when the entity is not in the online store).
    ``freshness`` is ``"missing"`` when the entity is not in the online store (``found``
    false), ``"stale"`` when ``now - event_timestamp`` exceeds the view's ttl (a ttl of 0
    means "never stale"), else ``"fresh"``; ``stale`` is true unless ``freshness`` is
    ``"fresh"``, so an absent entity is never reported as fresh. ``now`` defaults to the
    current time; pass it for reproducible checks. ``event_timestamp`` is a ``datetime``:
    serialise with ``json.dumps(..., default=str)``. Other views: :class:`OnlineReader`.
    """
    spec = entity_spec(entity)
    reader = OnlineReader(feature_store(repo_dir, env), [spec.feature_view], feature_service)
    row = reader.read(entity_id, now)[spec.feature_view]
    return {"entity": spec.name, "entity_id": str(entity_id), **row}


def _freshness(age_seconds: float | None, ttl: timedelta) -> str:
    """``"missing"`` (no stored row), ``"stale"`` (older than a non-zero ttl) or ``"fresh"``."""
    if age_seconds is None:
        return "missing"
    if ttl > timedelta(0) and age_seconds > ttl.total_seconds():
        return "stale"
    return "fresh"


def historical_features(
    repo_dir: Path,
    env: Mapping[str, str],
    entity_df: pd.DataFrame,
    feature_service: str = FEATURE_SERVICE,
) -> pd.DataFrame:
    """Point-in-time correct features for ``entity_df`` through a FeatureService.

    ``entity_df`` needs ``user_id``, ``item_id`` (text) and ``event_timestamp`` (the label
    time, timezone-aware). Each row gets the latest feature row with
    ``event_timestamp <= label time`` and not older than the view's ttl; later values are
    never seen. Feast uploads ``entity_df`` row by row into a scratch table of the
    warehouse, so keep it bounded (tens of thousands of rows per call).
    """
    import pandas as pd

    required = {"user_id", "item_id", "event_timestamp"}
    missing = required - set(entity_df.columns)
    if missing:
        raise ValueError(f"entity_df lacks {sorted(missing)}")
    if not isinstance(entity_df["event_timestamp"].dtype, pd.DatetimeTZDtype):
        raise ValueError("entity_df.event_timestamp must be timezone-aware (UTC)")
    store = feature_store(repo_dir, env)
    service = store.get_feature_service(feature_service)
    job = store.get_historical_features(entity_df=entity_df, features=service)
    return job.to_df()
