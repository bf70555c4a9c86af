{{ config(enabled=dataset_is('generated')) }}

{#
    raw.stream_events is created by the warehouse migration 0009_stream_events
    and filled by the stream worker (./recomart stream). In a warehouse built
    without it (raw tables made by hand, as dbt's own tests do) this model is
    an empty relation of the same shape.
#}
{%- set stream_table = adapter.get_relation(
    database=target.database, schema='raw', identifier='stream_events'
) if execute else none -%}

{% if stream_table is none and execute %}

select
    null::text as event_id,
    null::text as user_id,
    null::text as item_id,
    null::text as event_type,
    null::integer as quantity,
    null::numeric(12, 4) as unit_price,
    null::timestamptz as event_time,
    null::timestamptz as received_at,
    null::text as request_id,
    null::text as stream_id,
    null::text as load_id,
    null::timestamptz as loaded_at
where false

{% else %}

with

source as (

    select * from {{ source('stream', 'stream_events') }}

),

renamed as (

    select
        -- ids
        event_id::text as event_id,
        user_id::text as user_id,
        item_id::text as item_id,

        -- event
        event_type::text as event_type,
        quantity::integer as quantity,
        unit_price::numeric(12, 4) as unit_price,

        -- timestamps
        event_time::timestamptz as event_time,
        received_at::timestamptz as received_at,

        -- the recommendations response it responds to (migration 0012)
        request_id::text as request_id,

        -- load metadata
        _stream_id::text as stream_id,
        _load_id::text as load_id,
        _loaded_at::timestamptz as loaded_at

    from source

)

select * from renamed

{% endif %}
