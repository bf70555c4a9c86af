{{ config(enabled=dataset_is('generated')) }}

{#
    Every shop event once: the daily files' events, plus the events that
    arrived through the stream (POST /v1/events) and are in no file yet. An
    event in both feeds (same event_id) counts once, as the file's row: the
    file is the shop's record of the day. file_events is read twice but not
    materialized, so a filter on this view (a data test, int_interactions'
    window) reaches the scan of raw.events instead of a copy of every row.
#}

with

file_events as not materialized (

    select * from {{ ref('stg_shop__events') }}

),

stream_events as (

    select * from {{ ref('stg_shop__stream_events') }}

),

from_files as (

    select
        event_id,
        user_id,
        item_id,
        event_type,
        quantity,
        unit_price,
        event_time,
        null::text as request_id,
        'shop_events' as source_feed,
        load_id,
        loaded_at

    from file_events

),

from_stream as (

    select
        stream_events.event_id,
        stream_events.user_id,
        stream_events.item_id,
        stream_events.event_type,
        stream_events.quantity,
        stream_events.unit_price,
        stream_events.event_time,
        stream_events.request_id,
        'shop_stream' as source_feed,
        stream_events.load_id,
        stream_events.loaded_at

    from stream_events
    where not exists (
        select file_events.event_id from file_events
        where file_events.event_id = stream_events.event_id
    )

)

select * from from_files
union all
select * from from_stream
