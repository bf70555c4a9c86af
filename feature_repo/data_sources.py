"""Offline sources: the dbt history marts ``marts.user_features_history`` and ``marts.item_features_history``
(the features as of the end of each event-time day on which they changed, ``event_timestamp`` = the midnight
after the day, computed from the events before it), so a point-in-time join at a label time T gets the values
as of the last day that ended by T, within the view's ttl.

Each source is a query that casts every column to the type its feature view declares,
so Feast's Postgres reader (which maps ``numeric`` to float64 in Arrow but receives
``Decimal`` values) and ``int4``/``int8`` differences in the dbt models cannot break
materialization. ``event_timestamp`` is passed through untouched (``timestamptz`` in the
marts) so Feast's window filter and point-in-time join compare timestamps directly.
"""

from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
    PostgreSQLSource,
)

user_features_source = PostgreSQLSource(
    name="marts_user_features",
    query="""
        select
            user_id::text as user_id,
            event_timestamp,
            recency_days::double precision as recency_days,
            frequency::bigint as frequency,
            monetary::double precision as monetary,
            distinct_items::bigint as distinct_items,
            favourite_category::text as favourite_category,
            country::text as country,
            segment::text as segment,
            days_since_first_seen::double precision as days_since_first_seen
        from marts.user_features_history
    """,
    timestamp_field="event_timestamp",
    description="One row per user and event-time day on which its features changed (marts.user_features_history).",
)

item_features_source = PostgreSQLSource(
    name="marts_item_features",
    query="""
        select
            item_id::text as item_id,
            event_timestamp,
            pop_7d::bigint as pop_7d,
            pop_30d::bigint as pop_30d,
            pop_90d::bigint as pop_90d,
            distinct_buyers::bigint as distinct_buyers,
            revenue::double precision as revenue,
            price::double precision as price,
            price_band::text as price_band,
            category::text as category,
            brand::text as brand,
            content_text::text as content_text,
            first_seen_at::timestamptz as first_seen_at
        from marts.item_features_history
    """,
    timestamp_field="event_timestamp",
    description="One row per item and event-time day on which its features changed (marts.item_features_history).",
)
