{#
    Each user's interactions per catalogue category up to the end of every
    event-time day (UTC) with an interaction in that category: the state
    user_features_history's favourite_category is computed from (the
    favourite as of a day is the category with the most interactions, then
    the most recent one). interactions is cumulative; last_interaction_at
    is that day's latest, which is also the latest up to the day.

    Incremental (delete+insert keyed on as_of_date), with the window of the
    feature histories (macro feature_history_start): the days from the
    window start on are recomputed from their interactions only, each
    (user, category) continuing from its latest row before the window, so
    a day's rows equal those of a full build.
#}
{%- set window_start = feature_history_window_start(['as_of_date', 'built_at']) -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
        post_hook=["{{ column_index('built_at') }}", 'analyze {{ this }}'],
        indexes=[
            {'columns': ['user_id', 'category', 'as_of_date'], 'unique': true},
            {'columns': ['as_of_date']},
        ],
    )
}}

with

as_of as (

    select as_of from {{ ref('int_as_of') }}

),

products as (

    select
        item_id,
        category

    from {{ ref('dim_products') }}
    where category is not null

),

daily_categories as (

    select
        interactions.user_id,
        products.category,
        interactions.event_date as as_of_date,
        count(*) as interactions,
        max(interactions.event_time) as last_interaction_at

    from {{ ref('int_interactions') }} as interactions
    inner join products on interactions.item_id = products.item_id
    where
        interactions.event_time <= (select as_of.as_of from as_of)
        and interactions.event_date >= {{ window_start }}
    group by interactions.user_id, products.category, interactions.event_date

),

carried as (

    -- each (user, category) of the window: its count before the window (none in a full build)
    {% if is_incremental() %}
    select
        pairs.user_id,
        pairs.category,
        latest.interactions

    from (select distinct user_id, category from daily_categories) as pairs
    cross join lateral (
        select built.interactions
        from {{ this }} as built
        where
            built.user_id = pairs.user_id
            and built.category = pairs.category
            and built.as_of_date < {{ window_start }}
        order by built.as_of_date desc
        limit 1
    ) as latest
    {% else %}
    select
        null::text as user_id,
        null::text as category,
        null::bigint as interactions
    where false
    {% endif %}

),

running as (

    select
        daily_categories.user_id,
        daily_categories.category,
        daily_categories.as_of_date,
        (
            coalesce(carried.interactions, 0)
            + sum(daily_categories.interactions) over (
                partition by daily_categories.user_id, daily_categories.category
                order by daily_categories.as_of_date
            )
        )::bigint as interactions,
        daily_categories.last_interaction_at,
        {{ build_time() }} as built_at

    from daily_categories
    left join carried
        on
            daily_categories.user_id = carried.user_id
            and daily_categories.category = carried.category

)

select * from running
