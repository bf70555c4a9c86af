"""Feature views: one per entity, so an online lookup costs one Redis read per entity.

``ttl`` bounds the point-in-time join (a value older than ``ttl`` before the label time
is not used). The sources hold a row per entity and event-time day on which its features
changed (``dbt_project/README.md``), so at a label time T the join finds the features as of
the last day that ended by T, unless the entity did not change during the ``ttl`` before T.
Feast does not enforce the ``ttl`` on online reads, so ``recomart.features.online_features``
flags values older than ``ttl`` as stale.

Each view's ``materialization_intervals`` is a :class:`RecordedIntervals` (see there), so
``feast plan`` on an unchanged repository reports no changes after a materialization.
"""

from datetime import timedelta

from data_sources import item_features_source, user_features_source
from entities import item, user
from feast import FeatureView, Field
from feast.types import Float64, Int64, String, UnixTimestamp

FEATURE_TTL = timedelta(days=90)


class RecordedIntervals(list):
    """The materialization intervals of a declared view: whatever the registry recorded.

    ``materialize`` appends each window to the registered view, and Feast's
    ``FeatureView.__eq__`` compares these intervals. A repository declares none, so after
    the first materialization ``feast plan`` reported both views as updated (printing the
    embedded source's ``created_timestamp``, the parse time, as the difference) and every
    ``feast apply`` rewrote them. This list, empty as declared, compares equal to any
    recorded list (Python asks the subclass first, in either operand order), so only a
    change of the definition itself counts. ``feast apply`` still copies the recorded
    intervals into it before writing a changed view, as Feast does for a plain list.
    """

    def __eq__(self, other: object) -> bool:
        return isinstance(other, list)

    def __ne__(self, other: object) -> bool:
        return not isinstance(other, list)

    __hash__ = None  # a list: unhashable


user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=FEATURE_TTL,
    schema=[
        Field(name="user_id", dtype=String),
        Field(name="recency_days", dtype=Float64, description="Days since the last interaction."),
        Field(name="frequency", dtype=Int64, description="Number of interactions."),
        Field(name="monetary", dtype=Float64, description="Purchase revenue."),
        Field(name="distinct_items", dtype=Int64),
        Field(name="favourite_category", dtype=String),
        Field(name="country", dtype=String),
        Field(name="segment", dtype=String),
        Field(name="days_since_first_seen", dtype=Float64),
    ],
    online=True,
    source=user_features_source,
    tags={"stage": "features", "owner": "recomart"},
)

item_features = FeatureView(
    name="item_features",
    entities=[item],
    ttl=FEATURE_TTL,
    schema=[
        Field(name="item_id", dtype=String),
        Field(name="pop_7d", dtype=Int64, description="Distinct users in the last 7 days."),
        Field(name="pop_30d", dtype=Int64),
        Field(name="pop_90d", dtype=Int64),
        Field(name="distinct_buyers", dtype=Int64),
        Field(name="revenue", dtype=Float64),
        Field(name="price", dtype=Float64),
        Field(name="price_band", dtype=String),
        Field(name="category", dtype=String),
        Field(name="brand", dtype=String),
        Field(name="content_text", dtype=String),
        Field(name="first_seen_at", dtype=UnixTimestamp),
    ],
    online=True,
    source=item_features_source,
    tags={"stage": "features", "owner": "recomart"},
)

for _view in (user_features, item_features):
    _view.materialization_intervals = RecordedIntervals()
