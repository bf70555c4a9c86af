{#
    One row per exposure (recommendations response) with the outcomes
    attributed to it (int_exposure_outcomes): clicks, carts, purchases and
    their revenue. revenue is null when the feed has no prices at all.
#}

with

exposures as (

    select * from {{ ref('stg_serving__exposures') }}

),

outcomes as (

    select * from {{ ref('int_exposure_outcomes') }}

),

prices as (

    select bool_or(unit_price is not null) as has_prices
    from {{ ref('int_interactions') }}
    where event_type = 'purchase'

),

per_exposure as (

    select
        request_id,
        count(*) filter (where event_type = 'view') as clicks,
        count(*) filter (where event_type = 'add_to_cart') as carts,
        count(*) filter (where event_type = 'purchase') as purchases,
        sum(revenue) filter (where event_type = 'purchase') as revenue,
        min(item_rank) filter (where event_type = 'purchase') as best_purchased_rank

    from outcomes
    group by request_id

),

final as (

    select
        exposures.request_id,
        exposures.user_id,
        exposures.experiment,
        exposures.variant,
        exposures.generation_id,
        exposures.model_version,
        exposures.reranker_version,
        exposures.strategy,
        exposures.served_at,
        (exposures.served_at at time zone 'UTC')::date as served_day,
        cardinality(exposures.item_ids) as items_shown,
        coalesce(per_exposure.clicks, 0) as clicks,
        coalesce(per_exposure.carts, 0) as carts,
        coalesce(per_exposure.purchases, 0) as purchases,
        coalesce(per_exposure.purchases, 0) > 0 as converted,
        case when prices.has_prices then coalesce(per_exposure.revenue, 0) end as revenue,
        per_exposure.best_purchased_rank

    from exposures
    left join per_exposure on exposures.request_id = per_exposure.request_id
    cross join prices

)

select * from final
