{#
    Implicit rating per user x item, the training signal of the recommender.
    Formula (documented in user_item_ratings.yml):
        strength = w_view | w_add_to_cart | w_purchase * (1 + ln(quantity))
        decay    = 0.5 ^ (age_days / recency_half_life_days)
        score    = sum(strength * decay)
        rating   = 1 + 4 * (1 - exp(-score / rating_saturation))   in [1, 5)
    computed per pair from int_user_items (its decayed sums by type, anchored
    at the pair's last interaction), not from every interaction.

    Analyzed once built, for the tests and readers that follow. loaded_at is
    the pair's latest load (int_user_items), indexed: a daily `dbt build`
    tests the pairs loaded since the last build only (var tests_of_new_rows;
    16 tests of about 0.9 s each over 6M rows, 0.1 s by the index, which
    costs about 2.4 s to build); the others differ from the last build's
    rows by their decay to as_of.

    Unlogged: the table is rebuilt whole by every build, so writing its 6M
    rows to the WAL bought nothing a rebuild does not give (at 10M events
    the create took 6.1-6.5 s unlogged, 8.1-8.8 s logged, alone on the
    warehouse). After a crash of the Postgres server, or on a streaming
    replica, it is empty until the next `dbt build`; readers that find it
    empty say so (train: "no ratings to train on").
#}

{{ config(unlogged=true, indexes=[{'columns': ['loaded_at']}], post_hook='analyze {{ this }}') }}

{%- set half_life = var('recency_half_life_days') | float %}
{#-
    Non-negative weights and a positive saturation keep every score >= 0 and every rating in [1, 5) by
    construction, whatever the pair: the daily tests (dbt's and Great Expectations') read only the pairs
    loaded since the last build, so the rows that merely decay further are not read again.
#}
{%- for name in ['rating_weight_view', 'rating_weight_add_to_cart', 'rating_weight_purchase'] -%}
{%- if (var(name) | float) < 0 -%}
{{- exceptions.raise_compiler_error(name ~ ' must be >= 0, not ' ~ var(name)) -}}
{%- endif -%}
{%- endfor -%}
{%- if (var('rating_saturation') | float) <= 0 or half_life < 0 -%}
{{- exceptions.raise_compiler_error(
    'rating_saturation must be > 0 and recency_half_life_days >= 0, not '
    ~ var('rating_saturation') ~ ' and ' ~ var('recency_half_life_days')
) -}}
{%- endif %}

with

as_of as (

    select as_of from {{ ref('int_as_of') }}

),

pairs as (

    -- only products of dim_products: a product the catalog marked inactive is
    -- neither trained on nor a candidate of the recommender
    select pairs.*
    from {{ ref('int_user_items') }} as pairs
    inner join {{ ref('dim_products') }} as products on pairs.item_id = products.item_id

),

scored as (

    -- the pair's decayed sums are anchored at its last interaction: one decay
    -- factor from there to as_of gives sum(strength * decay)
    select
        pairs.user_id,
        pairs.item_id,
        (
            {{ var('rating_weight_view') }}::float8 * pairs.views_decayed
            + {{ var('rating_weight_add_to_cart') }}::float8 * pairs.carts_decayed
            + {{ var('rating_weight_purchase') }}::float8 * pairs.purchases_decayed
        ) * case
            when {{ half_life }} > 0
                then power(
                    0.5::float8,
                    extract(epoch from as_of.as_of - pairs.last_interaction_at)::float8
                    / 86400.0 / nullif({{ half_life }}, 0)
                )
            else 1.0::float8
        end as score,
        pairs.interactions,
        pairs.purchases,
        pairs.last_interaction_at,
        pairs.loaded_at,
        as_of.as_of as event_timestamp

    from pairs
    cross join as_of

),

rated as (

    select
        user_id,
        item_id,
        -- rounded in float8 (half to even), not through numeric: numeric's conversions took 8.6 of the
        -- 15.6 CPU seconds of this select at 6M pairs
        round((1 + 4 * (1 - exp(-score / {{ var('rating_saturation') }}::float8))) * 1e4) / 1e4 as rating,
        round(score * 1e6) / 1e6 as score,
        interactions::integer as interactions,
        purchases::integer as purchases,
        last_interaction_at,
        loaded_at,
        event_timestamp

    from scored

)

select * from rated
