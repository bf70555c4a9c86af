{#
    The item features as of the end of each event-time day (UTC) on which
    they changed: a row per product of dim_products and day with activity,
    plus the days an interaction leaves the 7, 30 or 90 day popularity
    window, so pop_7d/pop_30d/pop_90d are exact at any point in time.
    event_timestamp is the end of the day (midnight after it); the row uses
    only interactions before it. A user counts in pop_<n>d from the day of
    an interaction until n days after their last interaction with the item
    (+1 when a run of their days starts, -1 when it ends; the popularity is
    the running sum). Catalogue attributes (price, price band, category,
    brand, text) are those of dim_products at the build.

    Incremental (delete+insert keyed on as_of_date): a build recomputes the
    days from the window start (macro feature_history_start) on. The window
    changes of those days need the activity days on them and 7, 30 or 90
    days before one, the pair's previous day of each of its first days in
    the window (a +1: the latest day before the window, one backward probe
    of the pair's index on int_interactions) and the next day of each day
    whose -1 can fall in the window (one forward probe), not the pairs'
    whole history; everything else comes from
    those days' interactions, continued from the item's latest row before
    the window (pop_<n>d, distinct_buyers, revenue_to_date, first_seen_at).
    A buyer counts as new unless a purchase before the window has the pair
    (index lookup on int_interactions). So a day's rows equal those of a
    full build.
#}
{%- set window_start = feature_history_window_start(['as_of_date', 'revenue_to_date', 'built_at']) -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ upgrade_feature_history([['built_at', 'timestamptz']]) }}",
        post_hook=["{{ column_index('built_at') }}", 'analyze {{ this }}'],
        indexes=[
            {'columns': ['item_id', 'event_timestamp'], 'unique': true},
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

products as (

    select * from {{ ref('dim_products') }}

),

window_interactions as (

    -- the interactions of the days the build (re)computes (a full build: all)
    select
        interactions.item_id,
        interactions.user_id,
        interactions.event_time,
        interactions.event_type,
        interactions.revenue,
        interactions.event_date as activity_date

    from {{ ref('int_interactions') }} as interactions
    where
        interactions.event_time <= (select as_of.as_of from as_of)
        and interactions.event_date >= {{ window_start }}

),

{% if is_incremental() and '-infinity' not in window_start %}

range_days as (

    -- the activity days of the build's days and of the days 7, 30 or 90 before one (a -1 on one of them)
    select distinct
        interactions.item_id,
        interactions.user_id,
        interactions.event_date as activity_date

    from {{ ref('int_interactions') }} as interactions
    cross join as_of
    where
        interactions.event_time <= as_of.as_of
        and (
            interactions.event_date >= {{ window_start }}
            {%- for days in [7, 30, 90] %}
            or interactions.event_date between {{ window_start }} - {{ days }} and as_of.last_date - {{ days }}
            {%- endfor %}
        )

),

window_pairs as (

    select distinct
        item_id,
        user_id

    from range_days
    where activity_date >= {{ window_start }}

),

item_user_activity as (

    -- those days, the latest day before the window of each pair active in it, and the next day of each
    -- day at least 7 days before as_of's: every day whose change can fall on the build's days has its
    -- previous and next day here, so lag and lead below give them what a full build gives. A next day
    -- on as_of's day or later is at least 7 days after such a day, so the probe stops before it (and
    -- reads the pair's index only: the rows of as_of's day may end at as_of)
    select * from range_days
    union
    select
        window_pairs.item_id,
        window_pairs.user_id,
        earlier.event_date as activity_date
    from window_pairs
    cross join lateral (
        select interactions.event_date
        from {{ ref('int_interactions') }} as interactions
        where
            interactions.user_id = window_pairs.user_id
            and interactions.item_id = window_pairs.item_id
            and interactions.event_date < {{ window_start }}
        order by interactions.event_date desc
        limit 1
    ) as earlier
    union
    select
        range_days.item_id,
        range_days.user_id,
        later.event_date as activity_date
    from range_days
    cross join as_of
    cross join lateral (
        select interactions.event_date
        from {{ ref('int_interactions') }} as interactions
        where
            interactions.user_id = range_days.user_id
            and interactions.item_id = range_days.item_id
            and interactions.event_date > range_days.activity_date
            and interactions.event_date < as_of.last_date
        order by interactions.event_date asc
        limit 1
    ) as later
    where range_days.activity_date <= as_of.last_date - 7

),

{% else %}

item_user_activity as (

    -- every activity day (a full build, or a table with no day built yet)
    select distinct
        interactions.item_id,
        interactions.user_id,
        interactions.event_date as activity_date

    from {{ ref('int_interactions') }} as interactions
    where interactions.event_time <= (select as_of.as_of from as_of)

),

{% endif %}

item_user_days as (

    select
        item_id,
        user_id,
        activity_date,
        lag(activity_date) over item_user_window as previous_date,
        lead(activity_date) over item_user_window as next_date

    from item_user_activity
    window item_user_window as (partition by item_id, user_id order by activity_date)

),

window_changes as (

    select
        item_id,
        activity_date as change_date,
        (previous_date is null or activity_date - previous_date >= 7)::integer as pop_7d,
        (previous_date is null or activity_date - previous_date >= 30)::integer as pop_30d,
        (previous_date is null or activity_date - previous_date >= 90)::integer as pop_90d
    from item_user_days
    union all
    select
        item_id,
        activity_date + 7 as change_date,
        -1 as pop_7d,
        0 as pop_30d,
        0 as pop_90d
    from item_user_days
    where next_date is null or next_date - activity_date >= 7
    union all
    select
        item_id,
        activity_date + 30 as change_date,
        0 as pop_7d,
        -1 as pop_30d,
        0 as pop_90d
    from item_user_days
    where next_date is null or next_date - activity_date >= 30
    union all
    select
        item_id,
        activity_date + 90 as change_date,
        0 as pop_7d,
        0 as pop_30d,
        -1 as pop_90d
    from item_user_days
    where next_date is null or next_date - activity_date >= 90

),

daily_windows as (

    select
        window_changes.item_id,
        window_changes.change_date as as_of_date,
        sum(window_changes.pop_7d) as pop_7d,
        sum(window_changes.pop_30d) as pop_30d,
        sum(window_changes.pop_90d) as pop_90d

    -- the window's days up to as_of (a -1 falls up to 90 days after the last activity); as_of joined,
    -- not a scalar subquery: a range between a literal and a parameter is estimated at 0.5 % of the
    -- rows, which makes the planner join the carried rows below by a nested loop over every item
    from window_changes
    inner join as_of on window_changes.change_date <= as_of.last_date
    where window_changes.change_date >= {{ window_start }}
    group by window_changes.item_id, window_changes.change_date

),

window_buyers as (

    select
        item_id,
        user_id,
        min(activity_date) as activity_date

    from window_interactions
    where event_type = 'purchase'
    group by item_id, user_id

),

first_buyers as (

    -- the window's buyers of an item that no purchase before the window has
    select window_buyers.*
    from window_buyers
    {%- if is_incremental() %}
    where not exists (
        select earlier.item_id
        from {{ ref('int_interactions') }} as earlier
        where
            earlier.user_id = window_buyers.user_id
            and earlier.item_id = window_buyers.item_id
            and earlier.event_type = 'purchase'
            and earlier.event_date < {{ window_start }}
    )
    {%- endif %}

),

daily_activity as (

    select
        interactions.item_id,
        interactions.activity_date as as_of_date,
        sum(interactions.revenue) as revenue,
        min(interactions.event_time) as first_seen_at

    from window_interactions as interactions
    group by interactions.item_id, interactions.activity_date

),

daily_buyers as (

    select
        item_id,
        activity_date as as_of_date,
        count(*) as new_buyers

    from first_buyers
    group by item_id, activity_date

),

carried as (

    -- each item's latest row before the window (none in a full build)
    {% if is_incremental() %}
    select latest.*
    from (select distinct daily_windows.item_id from daily_windows) as items
    cross join lateral (
        select
            built.item_id,
            built.pop_7d,
            built.pop_30d,
            built.pop_90d,
            built.distinct_buyers,
            built.revenue_to_date,
            built.first_seen_at
        from {{ this }} as built
        where
            built.item_id = items.item_id
            and built.as_of_date < {{ window_start }}
        order by built.event_timestamp desc
        limit 1
    ) as latest
    {% else %}
    select
        null::text as item_id,
        null::integer as pop_7d,
        null::integer as pop_30d,
        null::integer as pop_90d,
        null::integer as distinct_buyers,
        null::numeric as revenue_to_date,
        null::timestamptz as first_seen_at
    where false
    {% endif %}

),

running as (

    -- the window's running sums, continued from the carried row (least skips nulls)
    select
        daily_windows.item_id,
        daily_windows.as_of_date,
        coalesce(carried.pop_7d, 0) + sum(daily_windows.pop_7d) over item_window as pop_7d,
        coalesce(carried.pop_30d, 0) + sum(daily_windows.pop_30d) over item_window as pop_30d,
        coalesce(carried.pop_90d, 0) + sum(daily_windows.pop_90d) over item_window as pop_90d,
        coalesce(carried.distinct_buyers, 0)
        + sum(coalesce(daily_buyers.new_buyers, 0)) over item_window as distinct_buyers,
        coalesce(carried.revenue_to_date, 0)
        + sum(coalesce(daily_activity.revenue, 0)) over item_window as revenue_to_date,
        least(carried.first_seen_at, min(daily_activity.first_seen_at) over item_window) as first_seen_at

    from daily_windows
    left join carried on daily_windows.item_id = carried.item_id
    left join daily_activity
        on
            daily_windows.item_id = daily_activity.item_id
            and daily_windows.as_of_date = daily_activity.as_of_date
    left join daily_buyers
        on
            daily_windows.item_id = daily_buyers.item_id
            and daily_windows.as_of_date = daily_buyers.as_of_date
    window item_window as (partition by daily_windows.item_id order by daily_windows.as_of_date)

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
        running.item_id,
        (running.as_of_date + 1)::timestamp at time zone 'utc' as event_timestamp,
        running.as_of_date,
        running.pop_7d::integer as pop_7d,
        running.pop_30d::integer as pop_30d,
        running.pop_90d::integer as pop_90d,
        running.distinct_buyers::integer as distinct_buyers,
        round(running.revenue_to_date::numeric, 2)::float8 as revenue,
        running.revenue_to_date,
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
        products.title,
        products.description,
        running.first_seen_at

    from running
    inner join products on running.item_id = products.item_id
    left join price_quartiles on running.item_id = price_quartiles.item_id

),

with_text as (

    select
        item_id,
        event_timestamp,
        as_of_date,
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
        first_seen_at,
        revenue_to_date,
        {{ build_time() }} as built_at

    from features

)

select * from with_text
