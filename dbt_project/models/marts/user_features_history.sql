{#
    The user features as of the end of each event-time day (UTC) on which
    the user changed: a row per user and day with activity, plus the signup
    day. event_timestamp is the end of that day (midnight after it), and the
    row uses only interactions before it, so a point-in-time join at time T
    gets the latest day that ended by T. The features are those of
    user_features, computed cumulatively, so the rows of a day never depend
    on later events.

    Incremental (delete+insert keyed on as_of_date): a build recomputes the
    days from the window start (macro feature_history_start) on, from those
    days' interactions only: each user's running sums continue from their
    latest row before the window (the state columns first_interaction_at,
    revenue_to_date), an order or item counts as new unless an interaction
    before the window has it (index lookups on int_interactions), and the
    favourite category comes from int_user_category_history. So a day's rows
    equal those of a full build. See the yml for the choice of change-driven
    rows.
#}
{%- set window_start = feature_history_window_start(
    ['as_of_date', 'first_interaction_at', 'revenue_to_date', 'built_at']
) -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ upgrade_feature_history([['first_interaction_at', 'timestamptz'], ['built_at', 'timestamptz']]) }}",
        post_hook=["{{ column_index('built_at') }}", 'analyze {{ this }}'],
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
        (as_of at time zone 'utc')::date as last_date

    from {{ ref('int_as_of') }}

),

interactions as (

    -- the interactions of the days the build (re)computes (a full build: all)
    select
        interactions.user_id,
        interactions.item_id,
        interactions.event_time,
        interactions.event_type,
        interactions.order_id,
        interactions.revenue,
        interactions.event_date as activity_date

    from {{ ref('int_interactions') }} as interactions
    where
        interactions.event_time <= (select as_of.as_of from as_of)
        and interactions.event_date >= {{ window_start }}

),

profiles as (

    -- the current users snapshot: a row's country and segment do not depend on as_of, so a day built
    -- before the user's signup date carries them as a full build does
    select
        user_profiles.user_id,
        user_profiles.country,
        user_profiles.segment,
        user_profiles.signup_date

    from {{ ref('int_users') }} as user_profiles

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

window_orders as (

    select
        user_id,
        order_id,
        min(activity_date) as activity_date

    from interactions
    where event_type = 'purchase' and order_id is not null
    group by user_id, order_id

),

window_items as (

    select
        user_id,
        item_id,
        min(activity_date) as activity_date

    from interactions
    group by user_id, item_id

),

{% if is_incremental() %}

first_orders as (

    -- the window's orders that no purchase before the window has
    select window_orders.*
    from window_orders
    where not exists (
        select earlier.order_id
        from {{ ref('int_interactions') }} as earlier
        where
            earlier.order_id = window_orders.order_id
            and earlier.user_id = window_orders.user_id
            and earlier.event_type = 'purchase'
            and earlier.event_date < {{ window_start }}
    )

),

first_items as (

    -- the window's (user, item) pairs that no interaction before the window has
    select window_items.*
    from window_items
    where not exists (
        select earlier.item_id
        from {{ ref('int_interactions') }} as earlier
        where
            earlier.user_id = window_items.user_id
            and earlier.item_id = window_items.item_id
            and earlier.event_date < {{ window_start }}
    )

),

{% else %}

first_orders as (

    select * from window_orders

),

first_items as (

    select * from window_items

),

{% endif %}

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
        profiles.user_id,
        profiles.signup_date as as_of_date
    from profiles
    cross join as_of
    where profiles.signup_date >= {{ window_start }} and profiles.signup_date <= as_of.last_date

),

category_keys as (

    -- the favourite's order (most interactions, then most recent) as one number: a category's key
    -- only grows, so the favourite as of a day is the category of the largest key up to that day
    select
        user_id,
        as_of_date,
        category,
        interactions::numeric * 1e18 + extract(epoch from last_interaction_at) * 1e6 as favourite_key

    from {{ ref('int_user_category_history') }}
    where as_of_date >= {{ window_start }}

),

daily_keys as (

    select
        user_id,
        as_of_date,
        max(favourite_key) as favourite_key

    from category_keys
    group by user_id, as_of_date

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

carried as (

    -- each user's latest row before the window, and its favourite's key (none in a full build)
    {% if is_incremental() %}
    select
        users.user_id,
        latest.first_interaction_at,
        latest.last_interaction_at,
        latest.revenue_to_date,
        latest.frequency,
        latest.distinct_items,
        latest.favourite_category,
        favourite.interactions::numeric * 1e18
        + extract(epoch from favourite.last_interaction_at) * 1e6 as favourite_key

    from (select distinct user_days.user_id from user_days) as users
    cross join lateral (
        select built.*
        from {{ this }} as built
        where
            built.user_id = users.user_id
            and built.as_of_date < {{ window_start }}
        order by built.event_timestamp desc
        limit 1
    ) as latest
    left join lateral (
        select
            categories.interactions,
            categories.last_interaction_at
        from {{ ref('int_user_category_history') }} as categories
        where
            categories.user_id = users.user_id
            and categories.category = latest.favourite_category
            and categories.as_of_date < {{ window_start }}
        order by categories.as_of_date desc
        limit 1
    ) as favourite on true
    {% else %}
    select
        null::text as user_id,
        null::timestamptz as first_interaction_at,
        null::timestamptz as last_interaction_at,
        null::numeric as revenue_to_date,
        null::integer as frequency,
        null::integer as distinct_items,
        null::text as favourite_category,
        null::numeric as favourite_key
    where false
    {% endif %}

),

running as (

    -- the window's running sums, continued from the carried row (least/greatest skip nulls)
    select
        user_days.user_id,
        user_days.as_of_date,
        (user_days.as_of_date + 1)::timestamp at time zone 'utc' as event_timestamp,
        least(
            carried.first_interaction_at, min(daily_activity.first_interaction_at) over user_window
        ) as first_interaction_at,
        greatest(
            carried.last_interaction_at, max(daily_activity.last_interaction_at) over user_window
        ) as last_interaction_at,
        coalesce(carried.revenue_to_date, 0)
        + sum(coalesce(daily_activity.revenue, 0)) over user_window as revenue_to_date,
        coalesce(carried.frequency, 0)
        + sum(coalesce(daily_new.new_orders, 0)) over user_window as frequency,
        coalesce(carried.distinct_items, 0)
        + sum(coalesce(daily_new.new_items, 0)) over user_window as distinct_items,
        carried.favourite_key as prior_favourite_key,
        carried.favourite_category as prior_favourite_category,
        greatest(carried.favourite_key, max(daily_keys.favourite_key) over user_window) as favourite_key

    from user_days
    left join carried on user_days.user_id = carried.user_id
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
            and user_days.as_of_date = daily_keys.as_of_date
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
        round(running.revenue_to_date::numeric, 2)::float8 as monetary,
        running.distinct_items::integer as distinct_items,
        case
            when running.favourite_key = running.prior_favourite_key then running.prior_favourite_category
            else key_categories.favourite_category
        end as favourite_category,
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
        running.last_interaction_at,
        running.first_interaction_at,
        running.revenue_to_date,
        {{ build_time() }} as built_at

    from running
    cross join as_of
    left join profiles on running.user_id = profiles.user_id
    left join key_categories
        on
            running.user_id = key_categories.user_id
            and running.favourite_key = key_categories.favourite_key
    where running.as_of_date <= as_of.last_date

)

select * from features
