{#
    One row per known user (users file or interactions up to as_of), as of int_as_of:
    RFM (recency, frequency, monetary), breadth, taste and profile.

    The cumulative features (frequency, monetary, distinct items, favourite category, first and last
    interaction) are those of the user's latest user_features_history row up to as_of's day, which
    counts the same interactions up to as_of; recency and age are then measured to as_of. One index
    lookup per user (user_id, event_timestamp) instead of a second pass over every interaction and
    pair, so a daily build costs the number of users, not the length of the history.

    Analyzed once built, for the tests and readers that follow.
#}

{{ config(post_hook='analyze {{ this }}') }}

with recursive

as_of as (

    select
        as_of,
        (as_of at time zone 'utc')::date as last_date

    from {{ ref('int_as_of') }}

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

history_users (user_id) as (

    -- the history's distinct users, one index probe each
    {{ loose_index_scan(ref('user_features_history'), 'user_id', 'history_users') }}

),

all_users as (

    select user_id from profiles
    union
    select user_id from history_users
    where user_id is not null

),

latest as (

    -- each user's latest history row up to as_of's day (none: a profile without activity or signup row)
    select
        all_users.user_id,
        latest_row.frequency,
        latest_row.revenue_to_date,
        latest_row.distinct_items,
        latest_row.favourite_category,
        latest_row.first_interaction_at,
        latest_row.last_interaction_at

    from all_users
    cross join as_of
    {{ cross_join_latest_history_row(ref('user_features_history'), 'user_id', 'all_users') }}

),

features as (

    select
        all_users.user_id,
        as_of.as_of as event_timestamp,
        round(
            (extract(epoch from as_of.as_of - latest.last_interaction_at) / 86400.0)::numeric, 4
        )::float8 as recency_days,
        coalesce(latest.frequency, 0)::integer as frequency,
        round(coalesce(latest.revenue_to_date, 0)::numeric, 2)::float8 as monetary,
        coalesce(latest.distinct_items, 0)::integer as distinct_items,
        latest.favourite_category,
        profiles.country,
        profiles.segment,
        round(
            (
                extract(
                    epoch from as_of.as_of - least(
                        latest.first_interaction_at,
                        profiles.signup_date::timestamp at time zone 'utc'
                    )
                ) / 86400.0
            )::numeric,
            4
        )::float8 as days_since_first_seen,
        latest.last_interaction_at

    from all_users
    cross join as_of
    left join profiles on all_users.user_id = profiles.user_id
    left join latest on all_users.user_id = latest.user_id

)

select * from features
