{#
    Every snapshot of item_features ever built: one row per item and as_of
    (see user_features_history for the append/replace rules).
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_timestamp',
        on_schema_change='append_new_columns',
        full_refresh=false,
        indexes=[{'columns': ['item_id', 'event_timestamp'], 'unique': true}],
    )
}}

with

snapshot as (

    select * from {{ ref('item_features') }}

),

history as (

    select
        item_id,
        event_timestamp,
        pop_7d,
        pop_30d,
        pop_90d,
        distinct_buyers,
        revenue,
        price,
        price_band,
        category,
        brand,
        content_text,
        first_seen_at

    from snapshot

)

select * from history
