{#
    One row per product of dim_products, as of int_as_of: popularity over
    the 7/30/90 days before as_of (distinct users who interacted), buyers,
    revenue, price band and the text used for content similarity.

    distinct_buyers, revenue and first_seen_at are those of the item's
    latest row of item_features_history (computed up to as_of), and the
    popularity counts read only the last 90 days of interactions, so a
    daily build does not rescan the whole event history.
#}

with

as_of as (

    select
        as_of,
        ((as_of - interval '90 days') at time zone 'utc')::date as popularity_first_day

    from {{ ref('int_as_of') }}

),

products as (

    select * from {{ ref('dim_products') }}

),

interactions as (

    -- the last 90 days (the day filter lets the planner use the event_date index)
    select
        interactions.item_id,
        interactions.user_id,
        interactions.event_time,
        as_of.as_of

    from {{ ref('int_interactions') }} as interactions
    cross join as_of
    where
        interactions.event_date >= as_of.popularity_first_day
        and interactions.event_time > as_of.as_of - interval '90 days'
        and interactions.event_time <= as_of.as_of

),

popularity as (

    select
        item_id,
        count(distinct user_id) filter (
            where event_time > as_of - interval '7 days'
        ) as pop_7d,
        count(distinct user_id) filter (
            where event_time > as_of - interval '30 days'
        ) as pop_30d,
        count(distinct user_id) filter (
            where event_time > as_of - interval '90 days'
        ) as pop_90d

    from interactions
    group by item_id

),

latest as (

    select distinct on (history.item_id)
        history.item_id,
        history.distinct_buyers,
        history.revenue_to_date,
        history.first_seen_at

    from {{ ref('item_features_history') }} as history
    order by history.item_id asc, history.event_timestamp desc

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
        coalesce(popularity.pop_7d, 0)::integer as pop_7d,
        coalesce(popularity.pop_30d, 0)::integer as pop_30d,
        coalesce(popularity.pop_90d, 0)::integer as pop_90d,
        coalesce(latest.distinct_buyers, 0)::integer as distinct_buyers,
        round(coalesce(latest.revenue_to_date, 0)::numeric, 2)::float8 as revenue,
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
    left join popularity on products.item_id = popularity.item_id
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
