{#
    One row per known user (users file or interactions), as of int_as_of:
    RFM (recency, frequency, monetary), breadth, taste and profile.

    The cumulative features are those of the user's latest row of
    user_features_history (which already holds every interaction up to
    as_of: its last day is computed up to as_of), so a daily build reads one
    row per user, not the whole event history; only recency and
    days_since_first_seen are measured to as_of here.
#}

with

as_of as (

    select as_of from {{ ref('int_as_of') }}

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

latest as (

    select distinct on (history.user_id)
        history.user_id,
        history.first_interaction_at,
        history.last_interaction_at,
        history.frequency,
        history.revenue_to_date,
        history.distinct_items,
        history.favourite_category

    from {{ ref('user_features_history') }} as history
    order by history.user_id asc, history.event_timestamp desc

),

all_users as (

    select user_id from profiles
    union
    select user_id from latest
    where last_interaction_at is not null

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
