{{ config(materialized='table', post_hook='analyze {{ this }}') }}

{#
    One row: the time the marts are computed as of. var('as_of') when set,
    else the latest interaction time (else the latest catalog change), never
    now(): re-running on the same data gives the same marts. var('as_of') is
    read as UTC. Analyzed once built: the marts cross join this one row, and
    an unanalyzed table is estimated at thousands of rows, which inflates
    their plans (sort-merge joins, JIT optimisation of every expression).
#}

with

interactions as (

    select max(event_time) as max_event_time
    from {{ ref('int_interactions') }}

),

products as (

    select max(coalesce(updated_at, loaded_at)) as max_product_time
    from {{ ref('stg_catalog__products') }}

),

as_of as (

    select
        coalesce(
            {%- if var('as_of') %}
            '{{ var("as_of") }}'::timestamp at time zone 'utc',
            {%- endif %}
            interactions.max_event_time,
            products.max_product_time,
            '1970-01-01 00:00:00+00'::timestamptz
        ) as as_of

    from interactions
    cross join products

)

select * from as_of
