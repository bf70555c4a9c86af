{#
    Interactions per event-time day and hour (UTC): the data report's
    weekday x hour heatmap sums these rows (a few per day) instead of
    grouping every interaction on every run.

    generated: incremental (delete+insert keyed on activity_date) with the
    window of the feature histories (macro feature_history_window_start):
    from the first day int_interactions rewrote since this table's latest
    built_at, or the day after its latest day. Each day's rows depend on
    that day's interactions only, so they equal a full build's. uci: a
    table, as int_interactions.
#}
{%- set window_start = feature_history_window_start(['activity_date', 'built_at'], 'activity_date') -%}
{{
    config(
        materialized=('incremental' if dataset_is('generated') else 'table'),
        incremental_strategy='delete+insert',
        unique_key='activity_date',
        on_schema_change='append_new_columns',
        post_hook=["{{ column_index('built_at') }}", 'analyze {{ this }}'],
        indexes=[{'columns': ['activity_date', 'hour_of_day'], 'unique': true}],
    )
}}

with

interactions as (

    select
        event_date,
        event_time

    from {{ ref('int_interactions') }}
    where event_date >= {{ window_start }}

),

hourly as (

    select
        event_date as activity_date,
        extract(hour from event_time at time zone 'utc')::integer as hour_of_day,
        count(*)::bigint as interactions,
        {{ build_time() }} as built_at

    from interactions
    group by event_date, extract(hour from event_time at time zone 'utc')

)

select * from hourly
