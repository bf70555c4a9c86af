"""RecoMart's Feast feature store: apply, materialize explicit windows, read online and offline.

Importing this package does not import feast (Airflow DAG files import it at parse time).
"""

from recomart.features.apply_state import apply_if_changed
from recomart.features.materialize import (
    MaterializeResult,
    RestoreResult,
    batch_views,
    delete_online_entities,
    invalidate_online_entities,
    materialize_window,
    materialized_mark,
    rematerialize_entities,
    rematerialize_window,
    restore_online_store,
    set_materialized_mark,
)
from recomart.features.names import ENTITIES, FEATURE_SERVICE, EntitySpec, entity_spec
from recomart.features.point_in_time import ViewRead, entity_frames_at, service_view_reads, training_features
from recomart.features.retrieval import OnlineReader, historical_features, online_features, service_feature_refs
from recomart.features.store import (
    FeatureStoreConfigError,
    apply,
    clear_store_cache,
    feast_command,
    feature_store,
    load_repo_config,
    overwriting_store,
    plan,
    resolve_config_text,
    serving_store,
)

__all__ = [
    "ENTITIES",
    "FEATURE_SERVICE",
    "EntitySpec",
    "FeatureStoreConfigError",
    "MaterializeResult",
    "OnlineReader",
    "RestoreResult",
    "ViewRead",
    "apply",
    "apply_if_changed",
    "batch_views",
    "clear_store_cache",
    "delete_online_entities",
    "entity_frames_at",
    "entity_spec",
    "feast_command",
    "feature_store",
    "historical_features",
    "invalidate_online_entities",
    "load_repo_config",
    "materialize_window",
    "materialized_mark",
    "online_features",
    "overwriting_store",
    "plan",
    "rematerialize_entities",
    "rematerialize_window",
    "resolve_config_text",
    "restore_online_store",
    "service_feature_refs",
    "service_view_reads",
    "serving_store",
    "set_materialized_mark",
    "training_features",
]
