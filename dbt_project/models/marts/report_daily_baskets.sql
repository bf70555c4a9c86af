{#
    Purchase baskets per day and size, with their repeat lines: the rows of
    the data report's basket-size histogram and weekly repeat-purchase share.
    A basket is an order where the feed has order numbers (uci: the
    invoice); the generated shop's purchases carry none, so there it is one
    user's purchases on one UTC day. A line is an item once per basket
    (bought at its first purchase in it); it is a repeat when the user
    bought the item in an earlier basket (by time, then basket key). A
    basket counts on the day of its first line.

    generated: incremental (delete+insert keyed on basket_date) with the
    window of the feature histories (macro feature_history_window_start). A
    basket is one day's, so each day of the window is recomputed from its
    purchases; a line repeats a basket before the window when a purchase of
    the pair is on an earlier day (index lookup on int_interactions), so the
    rows equal a full build's. uci: a table, as int_interactions.
#}
{%- set window_start = feature_history_window_start(['basket_date', 'built_at'], 'basket_date') -%}
{%- set basket = "user_id || ':' || event_date::text" if dataset_is('generated') else 'order_id' -%}
{{
    config(
        materialized=('incremental' if dataset_is('generated') else 'table'),
        incremental_strategy='delete+insert',
        unique_key='basket_date',
        on_schema_change='append_new_columns',
        post_hook=["{{ column_index('built_at') }}", 'analyze {{ this }}'],
        indexes=[{'columns': ['basket_date', 'basket_items'], 'unique': true}],
    )
}}

with

purchases as (

    select
        user_id,
        item_id,
        event_time,
        event_date,
        {{ basket }} as basket

    from {{ ref('int_interactions') }}
    where
        event_type = 'purchase'
        and event_date >= {{ window_start }}

),

lines as (

    select
        user_id,
        item_id,
        basket,
        min(event_time) as bought_at

    from purchases
    group by user_id, item_id, basket

),

ranked_lines as (

    select
        basket,
        bought_at,
        row_number() over (partition by user_id, item_id order by bought_at, basket) > 1
        {%- if is_incremental() %}
            or exists (
                select earlier.item_id
                from {{ ref('int_interactions') }} as earlier
                where
                    earlier.user_id = lines.user_id
                    and earlier.item_id = lines.item_id
                    and earlier.event_type = 'purchase'
                    and earlier.event_date < {{ window_start }}
            )
        {%- endif %} as is_repeat

    from lines

),

baskets as (

    select
        basket,
        (min(bought_at) at time zone 'utc')::date as basket_date,
        count(*) as basket_items,
        count(*) filter (where is_repeat) as repeat_lines

    from ranked_lines
    group by basket

),

per_day as (

    select
        basket_date,
        basket_items::integer as basket_items,
        count(*)::bigint as baskets,
        sum(repeat_lines)::bigint as repeat_lines,
        {{ build_time() }} as built_at

    from baskets
    group by basket_date, basket_items

)

select * from per_day
