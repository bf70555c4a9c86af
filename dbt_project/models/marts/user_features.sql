{#
    One row per known user (users file or interactions), as of int_as_of:
    RFM (recency, frequency, monetary), breadth, taste and profile.
#}

with

as_of as (

    select as_of from {{ ref('int_as_of') }}

),

orders as (

    -- orders are not per pair (an order may hold several items)
    select distinct
        interactions.user_id,
        interactions.order_id

    from {{ ref('int_interactions') }} as interactions
    where
        interactions.event_type = 'purchase'
        and interactions.order_id is not null
        and interactions.event_time <= (select as_of.as_of from as_of)

),

profiles as (

    select
        user_profiles.user_id,
        user_profiles.country,
        user_profiles.segment,
        user_profiles.signup_date

    from {{ ref('int_users') }} as user_profiles
    cross join as_of
    where user_profiles.signup_date is null or user_profiles.signup_date <= as_of.as_of

),

products as (

    select
        item_id,
        category

    from {{ ref('dim_products') }}

),

user_categories as (

    -- the pairs (int_user_items) aggregated once, per user and category (null: a product with none or
    -- not in dim_products): the user's activity and favourite below aggregate these few rows
    select
        user_items.user_id,
        products.category,
        min(user_items.first_interaction_at) as first_interaction_at,
        max(user_items.last_interaction_at) as last_interaction_at,
        sum(user_items.revenue) as revenue,
        count(*) as distinct_items,
        sum(user_items.interactions) as category_interactions

    from {{ ref('int_user_items') }} as user_items
    left join products on user_items.item_id = products.item_id
    group by user_items.user_id, products.category

),

user_orders as (

    select
        user_id,
        count(*) as frequency

    from orders
    group by user_id

),

activity as (

    select
        user_categories.user_id,
        min(user_categories.first_interaction_at) as first_interaction_at,
        max(user_categories.last_interaction_at) as last_interaction_at,
        coalesce(max(user_orders.frequency), 0) as frequency,
        coalesce(sum(user_categories.revenue), 0) as monetary,
        sum(user_categories.distinct_items) as distinct_items

    from user_categories
    left join user_orders on user_categories.user_id = user_orders.user_id
    group by user_categories.user_id

),

favourite_categories as (

    select distinct on (user_id)
        user_id,
        category as favourite_category

    from user_categories
    where category is not null
    order by
        user_id asc,
        category_interactions desc,
        last_interaction_at desc,
        category asc

),

all_users as (

    select user_id from profiles
    union
    select user_id from activity

),

features as (

    select
        all_users.user_id,
        as_of.as_of as event_timestamp,
        round(
            (extract(epoch from as_of.as_of - activity.last_interaction_at) / 86400.0)::numeric, 4
        )::float8 as recency_days,
        coalesce(activity.frequency, 0)::integer as frequency,
        round(coalesce(activity.monetary, 0)::numeric, 2)::float8 as monetary,
        coalesce(activity.distinct_items, 0)::integer as distinct_items,
        favourite_categories.favourite_category,
        profiles.country,
        profiles.segment,
        round(
            (
                extract(
                    epoch from as_of.as_of - least(
                        activity.first_interaction_at,
                        profiles.signup_date::timestamp at time zone 'utc'
                    )
                ) / 86400.0
            )::numeric,
            4
        )::float8 as days_since_first_seen,
        activity.last_interaction_at

    from all_users
    cross join as_of
    left join profiles on all_users.user_id = profiles.user_id
    left join activity on all_users.user_id = activity.user_id
    left join favourite_categories on all_users.user_id = favourite_categories.user_id

)

select * from features
