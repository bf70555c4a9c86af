"""Read features: one entity online (Redis), many rows point-in-time offline (Postgres).

Feast does not apply a feature view's ``ttl`` to online reads (feast-dev/feast#6821), so
:func:`online_features` returns the event time of the stored row and a ``stale`` flag
computed against the view's ``ttl`` at an explicit ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def online_features(
    repo_dir: Path,
    env: Mapping[str, str],
    entity: str,
    entity_id: str,
    now: datetime | None = None,
    feature_service: str = FEATURE_SERVICE,
) -> dict[str, Any]:
    """The online features of one ``user`` or ``item``, as ``feature_service`` defines them.

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
    serialise with ``json.dumps(..., default=str)``.
    """
    spec = entity_spec(entity)
    store = feature_store(repo_dir, env)
    view = store.get_feature_view(spec.feature_view)
    refs = service_feature_refs(store, view.name, feature_service)
    response = store.get_online_features(features=refs, entity_rows=[{spec.join_key: str(entity_id)}])
    values = response.to_dict()
    names = [ref.split(":", 1)[1] for ref in refs]
    features = {name: values[name][0] for name in names}

    # Feast 0.67 reports an entity missing from Redis as PRESENT with empty values and a
    # zero event timestamp, so "found" is decided by the timestamp, not the status.
    event_time: datetime | None = None
    for ref, vector in zip(response.proto.metadata.feature_names.val, response.proto.results, strict=True):
        stamp = vector.event_timestamps[0]
        if ref in features and (stamp.seconds or stamp.nanos):
            candidate = datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=UTC)
            event_time = candidate if event_time is None else max(event_time, candidate)

    ttl = view.ttl or timedelta(0)
    at = (now or datetime.now(UTC)).astimezone(UTC)
    age = (at - event_time).total_seconds() if event_time is not None else None
    freshness = _freshness(age, ttl)
    return {
        "entity": spec.name,
        "entity_id": str(entity_id),
        "feature_view": view.name,
        "found": event_time is not None,
        "freshness": freshness,
        "stale": freshness != "fresh",
        "features": features,
        "event_timestamp": event_time,
        "ttl_seconds": ttl.total_seconds() or None,
        "age_seconds": age,
    }


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
