{#
    Every user-item interaction of the active data set in one shape, so the
    marts do not care which feed they read:
      generated: shop events (view, add_to_cart, purchase), from the daily
                 files and the stream, each event once (stg_shop__all_events);
      uci:       cleaned order lines (each line is a purchase).
#}
{#
    Indexed for one user's or one item's interactions (the dashboard's
    customer and product pages, through marts.user_item_events), and
    analyzed once built, so the planner picks those indexes at once.
#}
{{ config(
    materialized='table',
    indexes=[
        {'columns': ['user_id', 'event_time']},
        {'columns': ['item_id', 'event_time']},
    ],
    post_hook='analyze {{ this }}',
) }}

{% if dataset_is('generated') %}

with

events as (

    select * from {{ ref('stg_shop__all_events') }}

),

interactions as (

    select
        event_id as interaction_id,
        source_feed,
        user_id,
        item_id,
        event_time,
        event_type,
        coalesce(quantity, 1) as quantity,
        unit_price,
        case
            when event_type = 'purchase' then coalesce(quantity, 1) * unit_price
            else 0
        end as revenue,
        case when event_type = 'purchase' then event_id end as order_id,
        null::text as item_description,
        request_id

    from events

)

{% else %}

with

order_lines as (

    select * from {{ ref('int_uci_order_lines_cleaned') }}

),

interactions as (

    select
        order_line_id as interaction_id,
        'uci_orders' as source_feed,
        customer_id as user_id,
        stock_code as item_id,
        invoiced_at as event_time,
        'purchase' as event_type,
        quantity,
        unit_price,
        line_revenue as revenue,
        invoice_no as order_id,
        description as item_description,
        null::text as request_id

    from order_lines

)

{% endif %}

select * from interactions
