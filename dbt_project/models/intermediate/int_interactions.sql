{#
    Every user-item interaction of the active data set in one shape, so the
    marts do not care which feed they read:
      generated: shop events (view, add_to_cart, purchase), from the daily
                 files and the stream, each event once (stg_shop__all_events);
      uci:       cleaned order lines (each line is a purchase).
#}
{#
    Indexed for one item's interactions (the dashboard's product page,
    through marts.user_item_events), for the feature histories' incremental
    lookups (was this pair or order seen before the window?), whose
    (user_id, item_id, event_date) index also serves one user's
    interactions (the customer page: a user has a few hundred rows), and
    vacuumed and analyzed once built (after the transaction), so the
    planner picks those indexes at once and their lookups read the index
    only: item_features_history probes the pair index once per pair it
    changes, which read a heap page each before the table's visibility map
    was set (an autovacuum may come much later, or never). No
    index on (user_id, event_time): each randomly keyed index dirties
    leaf pages all over a large table on every daily insert (at 10M
    events, 127k rows went into the table in 5.2-6.4 s with it and
    3.0-3.4 s without, right after a checkpoint); the post-hook drops it
    from a table built before.

    generated: incremental by event day (delete+insert keyed on event_date).
    A build recomputes every day with an event loaded (loaded_at) after the
    latest loaded_at already built, however old that day: a late file or
    stream event brings its whole day back. Of the days from the latest one
    built minus var('interactions_lookback_days') (3), it recomputes those
    whose number of events differs from the rows built (a new day; an event
    committed after the last build but stamped before its latest
    loaded_at); the others are built already and stay. With
    var('interactions_from') it recomputes every day from that one. Each
    day's rows depend on that day's events only, so recomputing a day gives
    the rows a full build gives it.
    built_at is the start of the dbt invocation that wrote the row: the
    incremental models built from it recompute what changed after their own
    latest built_at (macro interactions_rebuilt_since).
    Only the window's events are read: its bounds are literals (macro
    interactions_window), so the BRIN indexes of raw.events on event_time
    and _loaded_at skip the blocks of the other days.
    uci: a table (the cleaning rules compare order lines across days).
#}
{{ config(
    materialized=('incremental' if dataset_is('generated') else 'table'),
    incremental_strategy='delete+insert',
    unique_key='event_date',
    on_schema_change='append_new_columns',
    pre_hook="{{ upgrade_to_incremental([['event_date', 'date'], ['loaded_at', 'timestamptz'], ['built_at', 'timestamptz']]) }}",
    indexes=[
        {'columns': ['item_id', 'event_time']},
        {'columns': ['event_date']},
        {'columns': ['user_id', 'item_id', 'event_date']},
        {'columns': ['order_id']},
        {'columns': ['loaded_at']},
        {'columns': ['built_at']},
    ],
    post_hook=[
        "{{ drop_index_on(['user_id', 'event_time']) }}",
        {'sql': 'vacuum (analyze) {{ this }}', 'transaction': false},
    ],
) }}

{% if dataset_is('generated') %}

with

all_events as not materialized (

    -- read twice by an incremental build: not materialized, so each read keeps its filters
    select
        *,
        (event_time at time zone 'utc')::date as event_date

    from {{ ref('stg_shop__all_events') }}

),

{% if is_incremental() %}

{%- set window = interactions_window(ref('stg_shop__all_events')) %}

built as (

    select
        {{ incremental_first_day('event_date', 'interactions_lookback_days', 'interactions_from') }} as first_day,
        (select max(loaded_at) from {{ this }}) as loaded_until

),

late_days as (

    -- the days of the events loaded after the last build, however old
    select distinct all_events.event_date
    from all_events
    cross join built
    where
        all_events.loaded_at > built.loaded_until
        {%- if window %}
        -- the same bound as a literal, for the BRIN index of raw.events (_loaded_at)
        and all_events.loaded_at > '{{ window.loaded_until }}'::timestamptz
        {%- endif %}

),

built_days as (

    select
        event_date,
        count(*) as built_rows

    from {{ this }}
    where event_date >= (select built.first_day from built)
    group by event_date

),

changed_days as (

    -- the lookback window's days whose events differ in number from the rows built: a new day, or an
    -- event that committed after the last build but is stamped before its latest loaded_at. A day whose
    -- events are all built is left as it is (a replaced or late event has a newer loaded_at: late_days)
    select window_events.event_date
    from (
        select
            all_events.event_date,
            count(*) as event_rows
        from all_events
        cross join built
        where
            all_events.event_date >= built.first_day
            {%- if window %}
            and all_events.event_time >= '{{ window.first_day }}'::timestamp at time zone 'utc'
            {%- endif %}
        group by all_events.event_date
    ) as window_events
    left join built_days on window_events.event_date = built_days.event_date
    where built_days.built_rows is distinct from window_events.event_rows

),

events as (

    select all_events.*
    from all_events
    cross join built
    where
        (
            built.first_day is null
            {%- if var('interactions_from', '') %}
            -- a backfill recomputes every day from interactions_from
            or all_events.event_date >= built.first_day
            {%- else %}
            or all_events.event_date in (select changed_days.event_date from changed_days)
            {%- endif %}
            or all_events.event_date in (select late_days.event_date from late_days)
        )
        {%- if window %}
        -- the window's first day as a literal, for the BRIN index of raw.events (event_time)
        and all_events.event_time >= '{{ window.scan_from }}'::timestamp at time zone 'utc'
        {%- endif %}

),

{% else %}

events as (

    select * from all_events

),

{% endif %}

interactions as (

    select
        event_id as interaction_id,
        source_feed,
        user_id,
        item_id,
        event_time,
        event_type,
        coalesce(quantity, 1) as quantity,
        unit_price,
        case
            when event_type = 'purchase' then coalesce(quantity, 1) * unit_price
            else 0
        end as revenue,
        case when event_type = 'purchase' then event_id end as order_id,
        null::text as item_description,
        request_id,
        event_date,
        loaded_at,
        {{ build_time() }} as built_at

    from events

)

{% else %}

with

order_lines as (

    select * from {{ ref('int_uci_order_lines_cleaned') }}

),

interactions as (

    select
        order_line_id as interaction_id,
        'uci_orders' as source_feed,
        customer_id as user_id,
        stock_code as item_id,
        invoiced_at as event_time,
        'purchase' as event_type,
        quantity,
        unit_price,
        line_revenue as revenue,
        invoice_no as order_id,
        description as item_description,
        null::text as request_id,
        (invoiced_at at time zone 'utc')::date as event_date,
        null::timestamptz as loaded_at,
        {{ build_time() }} as built_at

    from order_lines

)

{% endif %}

select * from interactions
