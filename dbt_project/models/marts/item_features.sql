{#
    One row per product of dim_products, as of int_as_of: popularity over
    the 7/30/90 event days up to as_of's day (distinct users who interacted),
    buyers, revenue, price band and the text used for content similarity.

    The counts are those of the product's latest item_features_history row
    up to as_of's day (one index lookup per product), so a daily build costs
    the size of the catalogue, not the length of the history; the catalogue
    attributes are dim_products' current ones.

    Analyzed once built, for the tests and readers that follow.
#}

{{ config(post_hook='analyze {{ this }}') }}

with

as_of as (

    select (as_of at time zone 'utc')::date as last_date
    from {{ ref('int_as_of') }}

),

products as (

    select * from {{ ref('dim_products') }}

),

latest as (

    -- each product's latest item_features_history row up to as_of's day: the history has a row on
    -- every day a window count changes, so its counts hold until as_of
    select
        products.item_id,
        latest_row.pop_7d,
        latest_row.pop_30d,
        latest_row.pop_90d,
        latest_row.distinct_buyers,
        latest_row.revenue_to_date as revenue,
        latest_row.first_seen_at

    from products
    cross join as_of
    {{ cross_join_latest_history_row(ref('item_features_history'), 'item_id', 'products') }}

),

price_quartiles as (

    select
        item_id,
        ntile(4) over (order by price asc, item_id asc) as price_quartile

    from products
    where price is not null

),

features as (

    select
        products.item_id,
        products.event_timestamp,
        coalesce(latest.pop_7d, 0)::integer as pop_7d,
        coalesce(latest.pop_30d, 0)::integer as pop_30d,
        coalesce(latest.pop_90d, 0)::integer as pop_90d,
        coalesce(latest.distinct_buyers, 0)::integer as distinct_buyers,
        round(coalesce(latest.revenue, 0)::numeric, 2)::float8 as revenue,
        products.price::float8 as price,
        case price_quartiles.price_quartile
            when 1 then 'budget'
            when 2 then 'mid'
            when 3 then 'upper'
            when 4 then 'premium'
            else 'unknown'
        end as price_band,
        products.category,
        products.brand,
        latest.first_seen_at,
        products.title,
        products.description

    from products
    left join latest on products.item_id = latest.item_id
    left join price_quartiles on products.item_id = price_quartiles.item_id

),

with_text as (

    select
        item_id,
        event_timestamp,
        pop_7d,
        pop_30d,
        pop_90d,
        distinct_buyers,
        revenue,
        price,
        price_band,
        category,
        brand,
        lower(
            concat_ws(' ', title, description, category, brand, 'price_' || price_band)
        ) as content_text,
        first_seen_at

    from features

)

select * from with_text
