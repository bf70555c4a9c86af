{{ config(enabled=dataset_is('uci')) }}

with

classified as (

    select * from {{ ref('int_uci_order_lines_classified') }}

),

cleaned as (

    select
        order_line_id,
        invoice_no,
        stock_code,
        customer_id,
        description,
        quantity,
        unit_price,
        country,
        invoiced_at,
        quantity * unit_price as line_revenue,
        source_file,
        line_number

    from classified
    where exclusion_reason is null

)

select * from cleaned
