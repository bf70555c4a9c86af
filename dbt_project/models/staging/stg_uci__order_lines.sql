{{ config(enabled=dataset_is('uci')) }}

with

source as (

    select * from {{ source('uci', 'uci_orders') }}

),

renamed as (

    select
        -- ids: one order line is one line of one landing file
        md5(_source_file::text || ':' || _line_number::text) as order_line_id,
        trim(invoice_no::text) as invoice_no,
        trim(stock_code::text) as stock_code,
        -- '17850.0' -> '17850'; empty -> null
        nullif(trim(customer_id::text), '')::numeric::bigint::text as customer_id,

        -- line
        nullif(trim(description::text), '') as description,
        quantity::integer as quantity,
        unit_price::numeric(12, 4) as unit_price,
        nullif(trim(country::text), '') as country,

        -- timestamps
        {{ to_utc_timestamptz(
            source('uci', 'uci_orders'), 'invoice_date', var('uci_source_timezone')
        ) }} as invoiced_at,

        -- load metadata
        _logical_date::date as logical_date,
        _load_id::text as load_id,
        _source_file::text as source_file,
        _line_number::integer as line_number,
        _loaded_at::timestamptz as loaded_at

    from source

)

select * from renamed
