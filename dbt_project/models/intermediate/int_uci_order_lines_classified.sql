{{ config(enabled=dataset_is('uci'), materialized='table') }}

{%- set rules = uci_exclusion_rules() %}

with

order_lines as (

    select * from {{ ref('stg_uci__order_lines') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by
                invoice_no,
                stock_code,
                description,
                quantity,
                invoiced_at,
                unit_price,
                customer_id,
                country
            order by source_file asc, line_number asc
        ) as duplicate_rank

    from order_lines

),

classified as (

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
        logical_date,
        load_id,
        source_file,
        line_number,
        loaded_at,
        duplicate_rank,
        case
            {%- for rule in rules %}
            when {{ rule.condition }} then '{{ rule.rule }}'
            {%- endfor %}
        end as exclusion_reason

    from ranked

)

select * from classified
