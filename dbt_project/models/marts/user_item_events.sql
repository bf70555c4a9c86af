{#
    One row per user-item interaction up to as_of: the event grain the
    training split needs for feeds with repeat purchases (UCI), where a
    pair bought before a cut and again after it must be in the training
    part and relevant in the test window. user_item_ratings aggregates
    the same rows per pair: only products of dim_products (a product the
    catalog marked inactive is neither trained on nor recommended).
#}
{{ config(materialized='view') }}

with

as_of as (

    select as_of from {{ ref('int_as_of') }}

),

interactions as (

    select * from {{ ref('int_interactions') }}

),

products as (

    select item_id from {{ ref('dim_products') }}

),

events as (

    select
        interactions.interaction_id,
        interactions.user_id,
        interactions.item_id,
        interactions.event_time,
        interactions.event_type,
        interactions.order_id,
        interactions.quantity,
        interactions.loaded_at

    from interactions
    inner join products on interactions.item_id = products.item_id
    cross join as_of
    where interactions.event_time <= as_of.as_of

)

select * from events
