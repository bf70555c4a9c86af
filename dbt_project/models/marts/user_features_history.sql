{#
    The user features as of the end of each event-time day (UTC) on which
    the user changed: a row per user and day with activity, plus the signup
    day. event_timestamp is the end of that day (midnight after it), and the
    row uses only interactions before it, so a point-in-time join at time T
    gets the latest day that ended by T. The features are those of
    user_features, computed cumulatively (running sums over the user's days),
    so the rows of a day never depend on later events: an incremental build
    that recomputes the last days (macro feature_history_start), from the
    whole history of the users with a row on those days, gives the rows a
    full build gives. See the yml for the choice of change-driven rows.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ upgrade_feature_history() }}",
        post_hook='analyze {{ this }}',
        indexes=[
            {'columns': ['user_id', 'event_timestamp'], 'unique': true},
            {'columns': ['as_of_date']},
        ],
    )
}}

with

as_of as (

    select
        as_of,
        (as_of at time zone 'utc')::date as last_date,
        {{ feature_history_start() }} as first_date

    from {{ ref('int_as_of') }}

),

all_interactions as (

    select
        interactions.user_id,
        interactions.item_id,
        interactions.event_time,
        interactions.event_type,
        interactions.order_id,
        interactions.revenue,
        (interactions.event_time at time zone 'utc')::date as activity_date

    from {{ ref('int_interactions') }} as interactions
    where interactions.event_time <= (select as_of.as_of from as_of)

),

profiles as (

    select
        user_profiles.user_id,
        user_profiles.country,
        user_profiles.segment,
        user_profiles.signup_date

    from {{ ref('int_users') }} as user_profiles
    cross join as_of
    where user_profiles.signup_date is null or user_profiles.signup_date <= as_of.last_date

),

window_users as (

    -- the users with a row on a day the build (re)computes: activity or signup from first_date on
    -- (a full build: everyone)
    select all_interactions.user_id
    from all_interactions
    cross join as_of
    where as_of.first_date is null or all_interactions.activity_date >= as_of.first_date
    union
    select profiles.user_id
    from profiles
    cross join as_of
    where as_of.first_date is null or profiles.signup_date >= as_of.first_date

),

interactions as (

    -- their whole history: the running sums start at their first day
    select all_interactions.*
    from all_interactions
    inner join window_users on all_interactions.user_id = window_users.user_id

),

products as (

    select
        item_id,
        category

    from {{ ref('dim_products') }}
    where category is not null

),

daily_activity as (

    select
        user_id,
        activity_date,
        min(event_time) as first_interaction_at,
        max(event_time) as last_interaction_at,
        sum(revenue) as revenue

    from interactions
    group by user_id, activity_date

),

first_orders as (

    select
        user_id,
        order_id,
        min(activity_date) as activity_date

    from interactions
    where event_type = 'purchase' and order_id is not null
    group by user_id, order_id

),

first_items as (

    select
        user_id,
        item_id,
        min(activity_date) as activity_date

    from interactions
    group by user_id, item_id

),

daily_new as (

    select
        user_id,
        activity_date,
        count(*) filter (where kind = 'order') as new_orders,
        count(*) filter (where kind = 'item') as new_items

    from (
        select
            user_id,
            activity_date,
            'order' as kind
        from first_orders
        union all
        select
            user_id,
            activity_date,
            'item' as kind
        from first_items
    ) as firsts
    group by user_id, activity_date

),

user_days as (

    select
        user_id,
        activity_date as as_of_date
    from daily_activity
    union
    select
        user_id,
        signup_date as as_of_date
    from profiles
    where signup_date is not null

),

daily_categories as (

    select
        interactions.user_id,
        interactions.activity_date,
        products.category,
        count(*) as category_interactions,
        max(interactions.event_time) as last_category_interaction_at

    from interactions
    inner join products on interactions.item_id = products.item_id
    group by interactions.user_id, interactions.activity_date, products.category

),

running_categories as (

    -- each category's interactions up to the day; last_category_interaction_at is that day's latest,
    -- which is also the latest up to the day
    select
        user_id,
        activity_date,
        category,
        sum(category_interactions) over (
            partition by user_id, category order by activity_date
        ) as category_interactions,
        last_category_interaction_at

    from daily_categories

),

category_keys as (

    -- the favourite's order (most interactions, then most recent) as one number: a category's key
    -- only grows, so the favourite as of a day is the category of the largest key up to that day
    select
        user_id,
        activity_date,
        category,
        category_interactions::numeric * 1e18
        + extract(epoch from last_category_interaction_at) * 1e6 as favourite_key

    from running_categories

),

daily_keys as (

    select
        user_id,
        activity_date,
        max(favourite_key) as favourite_key

    from category_keys
    group by user_id, activity_date

),

key_categories as (

    -- ties of the whole key (same count, same microsecond): the first category by name
    select
        user_id,
        favourite_key,
        min(category) as favourite_category

    from category_keys
    group by user_id, favourite_key

),

running as (

    select
        user_days.user_id,
        user_days.as_of_date,
        (user_days.as_of_date + 1)::timestamp at time zone 'utc' as event_timestamp,
        min(daily_activity.first_interaction_at) over user_window as first_interaction_at,
        max(daily_activity.last_interaction_at) over user_window as last_interaction_at,
        sum(coalesce(daily_activity.revenue, 0)) over user_window as monetary,
        sum(coalesce(daily_new.new_orders, 0)) over user_window as frequency,
        sum(coalesce(daily_new.new_items, 0)) over user_window as distinct_items,
        max(daily_keys.favourite_key) over user_window as favourite_key

    from user_days
    left join daily_activity
        on
            user_days.user_id = daily_activity.user_id
            and user_days.as_of_date = daily_activity.activity_date
    left join daily_new
        on
            user_days.user_id = daily_new.user_id
            and user_days.as_of_date = daily_new.activity_date
    left join daily_keys
        on
            user_days.user_id = daily_keys.user_id
            and user_days.as_of_date = daily_keys.activity_date
    window user_window as (partition by user_days.user_id order by user_days.as_of_date)

),

features as (

    select
        running.user_id,
        running.event_timestamp,
        running.as_of_date,
        round(
            (extract(epoch from running.event_timestamp - running.last_interaction_at) / 86400.0)::numeric,
            4
        )::float8 as recency_days,
        running.frequency::integer as frequency,
        round(running.monetary::numeric, 2)::float8 as monetary,
        running.distinct_items::integer as distinct_items,
        key_categories.favourite_category,
        profiles.country,
        profiles.segment,
        round(
            (
                extract(
                    epoch from running.event_timestamp - least(
                        running.first_interaction_at,
                        profiles.signup_date::timestamp at time zone 'utc'
                    )
                ) / 86400.0
            )::numeric,
            4
        )::float8 as days_since_first_seen,
        running.last_interaction_at

    from running
    cross join as_of
    left join profiles on running.user_id = profiles.user_id
    left join key_categories
        on
            running.user_id = key_categories.user_id
            and running.favourite_key = key_categories.favourite_key
    where
        running.as_of_date <= as_of.last_date
        and (as_of.first_date is null or running.as_of_date >= as_of.first_date)

)

select * from features
