{#
    One row per user and item with an interaction up to as_of (int_as_of):
    the pair's counts, revenue, first and last interaction, and its decayed
    interaction sums by type anchored at its own last interaction, so the
    marts user_item_ratings, user_features and item_features aggregate pairs
    instead of every interaction (the decay to as_of is one factor per pair:
    0.5 ^ ((as_of - t) / h) = 0.5 ^ ((as_of - last) / h) * 0.5 ^ ((last - t) / h)).
    The rating weights stay in user_item_ratings, so changing them needs no
    rebuild; the half-life is kept on every row (half_life_days).

    generated: incremental, delete+insert keyed on the pair. A build
    recomputes, from all their interactions, the pairs with an interaction
    on a day int_interactions rewrote after the latest built_at of this
    table (macro user_items_window): the days with new, late or replaced
    events, also those of a build that failed before this model.
    It rebuilds every pair (its pre-hook empties the table) when var('as_of')
    is set, after a build with it, when the half-life changed, or when the
    table lacks a state column or holds no row. uci: a table, as
    int_interactions. Indexed on the pair, and on loaded_at for the daily
    build's tests of the pairs loaded since the last build (var
    tests_of_new_rows); the marts read every pair (seq scan, hash join):
    with an index on item_id the planner walked it for user_item_ratings,
    3x slower at 6M pairs.
#}
{%- set window = user_items_window() -%}
{{ config(
    materialized=('incremental' if dataset_is('generated') else 'table'),
    incremental_strategy='delete+insert',
    unique_key=['user_id', 'item_id'],
    on_schema_change='append_new_columns',
    pre_hook="{{ empty_user_items_for_rebuild() }}",
    indexes=[{'columns': ['user_id', 'item_id'], 'unique': true}],
    post_hook=["{{ column_index('loaded_at') }}", 'analyze {{ this }}'],
) }}

{%- set half_life = var('recency_half_life_days') | float %}
{%- set built_as_of = '(select as_of.as_of from as_of)' if var('as_of') else 'null::timestamptz' %}

with

as_of as (

    select as_of from {{ ref('int_as_of') }}

),

{% if window %}

changed_pairs as (

    select distinct
        user_id,
        item_id

    from {{ ref('int_interactions') }}
    where built_at > '{{ window.built_until }}'::timestamptz

),

interactions as (

    select interactions.*
    from {{ ref('int_interactions') }} as interactions
    inner join changed_pairs
        on
            interactions.user_id = changed_pairs.user_id
            and interactions.item_id = changed_pairs.item_id
    where interactions.event_time <= (select as_of.as_of from as_of)

),

{% else %}

interactions as (

    select *
    from {{ ref('int_interactions') }}
    where event_time <= (select as_of.as_of from as_of)

),

{% endif %}

anchored as (

    select
        interaction_id,
        user_id,
        item_id,
        event_time,
        event_type,
        greatest(quantity, 1) as quantity,
        revenue,
        loaded_at,
        case
            when {{ half_life }} > 0
                then power(
                    0.5::float8,
                    extract(
                        epoch from max(event_time) over (partition by user_id, item_id) - event_time
                    )::float8 / 86400.0 / nullif({{ half_life }}, 0)
                )
            else 1.0::float8
        end as decay_to_last

    from interactions

),

pairs as (

    select
        user_id,
        item_id,
        min(event_time) as first_interaction_at,
        max(event_time) as last_interaction_at,
        count(*)::integer as interactions,
        (count(*) filter (where event_type = 'purchase'))::integer as purchases,
        sum(revenue) as revenue,
        -- float sums in a fixed order: an incremental build sums a pair's
        -- interactions in the order a full build does, to the last bit
        coalesce(
            sum(decay_to_last order by event_time, interaction_id) filter (where event_type = 'view'), 0
        ) as views_decayed,
        coalesce(
            sum(decay_to_last order by event_time, interaction_id)
            filter (where event_type = 'add_to_cart'),
            0
        ) as carts_decayed,
        coalesce(
            sum(
                (1 + ln(quantity::float8)) * decay_to_last order by event_time, interaction_id
            ) filter (where event_type = 'purchase'),
            0
        ) as purchases_decayed,
        max(loaded_at) as loaded_at,
        {{ half_life }}::float8 as half_life_days,
        {{ built_as_of }} as built_as_of,
        {{ build_time() }} as built_at

    from anchored
    group by user_id, item_id

)

select * from pairs
