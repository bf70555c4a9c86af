"""Fresh per-user session features: a ``PushSource`` and the feature view it feeds (the stream worker pushes).

The names, fields and types come from ``recomart.features.session`` (the contract the stream
worker writes with and the API reads with), so the two sides cannot drift apart. The push
source wraps a batch source over ``raw.user_session_features``, the optional offline copy of
the pushed rows (Feast's Postgres offline store cannot take pushed rows itself). Batch
materialization skips this view (``recomart.features.materialize`` materializes the batch
views only): its online rows come from pushes alone.

The view is a plain ``FeatureView`` over the push source, as in Feast's push-source docs, not a
``StreamFeatureView``: Feast 0.67's stream view registers its entity column as a feature (its
``to_proto`` writes the whole schema as features), is flagged alpha with a warning on every
registry load, and only adds a transformation step that Feast would not run for us anyway
(Feast runs no stream jobs; the worker folds events itself, ``SessionState``).
"""

from entities import user
from feast import FeatureView, Field, PushSource
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
    PostgreSQLSource,
)
from feast.types import Array, Int64, String, UnixTimestamp

from recomart.features.session import (
    FIELD_NAMES,
    SESSION_BATCH_SOURCE,
    SESSION_FEATURE_VIEW,
    SESSION_FIELDS,
    SESSION_JOIN_KEY,
    SESSION_LOG_TABLE,
    SESSION_PUSH_SOURCE,
    SESSION_TTL,
)

_FEAST_TYPES = {
    "Array(String)": Array(String),
    "Array(UnixTimestamp)": Array(UnixTimestamp),
    "Int64": Int64,
    "UnixTimestamp": UnixTimestamp,
}

session_log_source = PostgreSQLSource(
    name=SESSION_BATCH_SOURCE,
    query=f"select {SESSION_JOIN_KEY}, event_timestamp, {', '.join(FIELD_NAMES)} from {SESSION_LOG_TABLE}",
    timestamp_field="event_timestamp",
    description=f"Pushed session rows kept offline ({SESSION_LOG_TABLE}).",
)

user_session_push = PushSource(
    name=SESSION_PUSH_SOURCE,
    batch_source=session_log_source,
    description="Per-user session state pushed by the stream worker, one row per user and micro-batch.",
)

user_session_features = FeatureView(
    name=SESSION_FEATURE_VIEW,
    entities=[user],
    ttl=SESSION_TTL,
    schema=[
        Field(name=SESSION_JOIN_KEY, dtype=String),
        *(Field(name=f.name, dtype=_FEAST_TYPES[f.feast_type], description=f.description) for f in SESSION_FIELDS),
    ],
    source=user_session_push,
    online=True,
    description="Last items viewed, carted and bought with their times, and 30-minute counts (stream worker).",
    tags={"stage": "stream", "owner": "recomart"},
)
