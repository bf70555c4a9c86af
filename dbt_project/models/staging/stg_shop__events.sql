{{ config(enabled=dataset_is('generated')) }}

with

source as (

    select * from {{ source('shop', 'events') }}

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
        {{ to_utc_timestamptz(source('shop', 'events'), 'event_time') }} as event_time,

        -- load metadata
        _logical_date::date as logical_date,
        _load_id::text as load_id,
        _source_file::text as source_file,
        _line_number::integer as line_number,
        _loaded_at::timestamptz as loaded_at

    from source

)

select * from renamed
