{#
    Every snapshot of user_features ever built: one row per user and as_of.
    Each build appends the current snapshot; a rebuild with the same as_of
    replaces that whole snapshot (delete+insert on event_timestamp), so a
    correction never leaves the old rows behind. full_refresh is off: the
    history cannot be rebuilt from raw (it records what each build saw), so
    `dbt build --full-refresh` keeps it. Feast's point-in-time join reads
    this table, so a training label at time T sees the latest snapshot with
    as_of <= T.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_timestamp',
        on_schema_change='append_new_columns',
        full_refresh=false,
        indexes=[{'columns': ['user_id', 'event_timestamp'], 'unique': true}],
    )
}}

with

snapshot as (

    select * from {{ ref('user_features') }}

),

history as (

    select
        user_id,
        event_timestamp,
        recency_days,
        frequency,
        monetary,
        distinct_items,
        favourite_category,
        country,
        segment,
        days_since_first_seen,
        last_interaction_at

    from snapshot

)

select * from history
