{#
    One row per item shown: each exposure's item_ids unnested with their
    rank (1 = first).
#}

with

exposures as (

    select * from {{ ref('stg_serving__exposures') }}

),

shown as (

    select
        exposures.request_id,
        exposures.user_id,
        exposures.experiment,
        exposures.variant,
        exposures.served_at,
        items.item_id,
        items.item_rank::integer as item_rank

    from exposures
    cross join lateral unnest(exposures.item_ids) with ordinality as items (item_id, item_rank)

)

select * from shown
