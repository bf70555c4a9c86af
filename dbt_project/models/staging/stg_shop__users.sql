{{ config(enabled=dataset_is('generated')) }}

with

source as (

    select * from {{ source('shop', 'users') }}

),

renamed as (

    select
        user_id::text as user_id,
        country::text as country,
        segment::text as segment,
        signup_date::date as signup_date,
        _logical_date::date as logical_date,
        _load_id::text as load_id,
        _loaded_at::timestamptz as loaded_at

    from source

),

-- users.csv is a snapshot: when several loads are kept, the newest row of each user wins
latest as (

    select distinct on (user_id) *
    from renamed
    order by user_id asc, logical_date desc nulls last, loaded_at desc nulls last

)

select * from latest
