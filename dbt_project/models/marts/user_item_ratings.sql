{#
    Implicit rating per user x item, the training signal of the recommender.
    Formula (documented in user_item_ratings.yml):
        strength = w_view | w_add_to_cart | w_purchase * (1 + ln(quantity))
        decay    = 0.5 ^ (age_days / recency_half_life_days)
        score    = sum(strength * decay)
        rating   = 1 + 4 * (1 - exp(-score / rating_saturation))   in [1, 5)
#}

{%- set half_life = var('recency_half_life_days') | float %}

with

as_of as (

    select as_of from {{ ref('int_as_of') }}

),

interactions as (

    select
        interactions.user_id,
        interactions.item_id,
        interactions.event_time,
        interactions.event_type,
        greatest(interactions.quantity, 1) as quantity,
        as_of.as_of

    from {{ ref('int_interactions') }} as interactions
    -- only products of dim_products: a product the catalog marked inactive is
    -- neither trained on nor a candidate of the recommender
    inner join {{ ref('dim_products') }} as products on interactions.item_id = products.item_id
    cross join as_of
    where interactions.event_time <= as_of.as_of

),

weighted as (

    select
        user_id,
        item_id,
        event_time,
        event_type,
        as_of,
        case event_type
            when 'view' then {{ var('rating_weight_view') }}::float8
            when 'add_to_cart' then {{ var('rating_weight_add_to_cart') }}::float8
            when 'purchase'
                then {{ var('rating_weight_purchase') }}::float8 * (1 + ln(quantity::float8))
        end as strength,
        case
            when {{ half_life }} > 0
                then power(
                    0.5::float8,
                    extract(epoch from as_of - event_time)::float8 / 86400.0 / nullif({{ half_life }}, 0)
                )
            else 1.0::float8
        end as decay

    from interactions

),

scored as (

    select
        user_id,
        item_id,
        sum(strength * decay) as score,
        count(*) as interactions,
        count(*) filter (where event_type = 'purchase') as purchases,
        max(event_time) as last_interaction_at,
        max(as_of) as event_timestamp

    from weighted
    group by user_id, item_id

),

rated as (

    select
        user_id,
        item_id,
        round(
            (1 + 4 * (1 - exp(-score / {{ var('rating_saturation') }}::float8)))::numeric, 4
        )::float8 as rating,
        round(score::numeric, 6)::float8 as score,
        interactions::integer as interactions,
        purchases::integer as purchases,
        last_interaction_at,
        event_timestamp

    from scored

)

select * from rated
