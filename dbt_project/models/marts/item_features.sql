{#
    One row per product of dim_products, as of int_as_of: popularity over
    the 7/30/90 days before as_of (distinct users who interacted), buyers,
    revenue, price band and the text used for content similarity.
#}

with

as_of as (

    select as_of from {{ ref('int_as_of') }}

),

products as (

    select * from {{ ref('dim_products') }}

),

item_users as (

    -- one row per item and user (int_user_items): the distinct counts below
    -- are plain counts over these
    select
        item_id,
        user_id,
        last_interaction_at,
        purchases > 0 as bought,
        revenue,
        first_interaction_at

    from {{ ref('int_user_items') }}

),

activity as (

    select
        item_users.item_id,
        count(*) filter (
            where item_users.last_interaction_at > as_of.as_of - interval '7 days'
        ) as pop_7d,
        count(*) filter (
            where item_users.last_interaction_at > as_of.as_of - interval '30 days'
        ) as pop_30d,
        count(*) filter (
            where item_users.last_interaction_at > as_of.as_of - interval '90 days'
        ) as pop_90d,
        count(*) filter (where item_users.bought) as distinct_buyers,
        coalesce(sum(item_users.revenue), 0) as revenue,
        min(item_users.first_interaction_at) as first_seen_at

    from item_users
    cross join as_of
    group by item_users.item_id

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
        coalesce(activity.pop_7d, 0)::integer as pop_7d,
        coalesce(activity.pop_30d, 0)::integer as pop_30d,
        coalesce(activity.pop_90d, 0)::integer as pop_90d,
        coalesce(activity.distinct_buyers, 0)::integer as distinct_buyers,
        round(coalesce(activity.revenue, 0)::numeric, 2)::float8 as revenue,
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
        activity.first_seen_at,
        products.title,
        products.description

    from products
    left join activity on products.item_id = activity.item_id
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
