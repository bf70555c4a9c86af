{#
    One row per product that can be recommended: the active catalog, plus
    products that appear in the interactions but not (yet) in the catalog,
    described from the feed itself (UCI: most frequent order-line description
    and median unit price; a catalog product lacking a title or a price gets
    those too, so only such products' interactions are aggregated). Products the catalog marked inactive (gone from
    its last full snapshot) are left out, also when the feed mentions them,
    so nothing downstream (item_features, user_item_ratings, the
    recommender) sees them. Analyzed once built: the marts join it by
    item_id, and without statistics the planner took ~200 distinct ids and
    sorted the 6M pairs of user_item_ratings to merge-join them.
#}

{{ config(post_hook='analyze {{ this }}') }}

with recursive

as_of as (

    select as_of from {{ ref('int_as_of') }}

),

catalog as (

    select * from {{ ref('stg_catalog__products') }}
    where is_active

),

inactive as (

    select item_id from {{ ref('stg_catalog__products') }}
    where not is_active

),

interacted_items as (

    -- every item of the interactions, one probe of the item_id index each (a loose index scan): a
    -- read of every interaction costs far more than the catalogue has items
    {{ loose_index_scan(ref('int_interactions'), 'item_id', 'interacted_items') }}

),

undescribed_items as materialized (

    -- the interacted products the catalog does not describe in full (none when it does); a catalog
    -- product with a title and a price uses neither observed value
    select interacted_items.item_id
    from interacted_items
    where
        interacted_items.item_id is not null
        and not exists (
            select inactive.item_id from inactive
            where inactive.item_id = interacted_items.item_id
        )
        and not exists (
            select catalog.item_id from catalog
            where
                catalog.item_id = interacted_items.item_id
                and catalog.title is not null
                and catalog.price is not null
        )

),

undescribed_interactions as (

    select
        interactions.item_id,
        interactions.item_description,
        interactions.unit_price

    from {{ ref('int_interactions') }} as interactions
    inner join undescribed_items on interactions.item_id = undescribed_items.item_id

),

observed as (

    select
        item_id,
        mode() within group (order by item_description) as observed_title,
        percentile_cont(0.5) within group (
            order by unit_price
        ) filter (where unit_price > 0) as observed_price

    from undescribed_interactions
    group by item_id

),

products as (

    select
        coalesce(catalog.item_id, observed.item_id) as item_id,
        coalesce(catalog.title, observed.observed_title) as title,
        catalog.description,
        catalog.category,
        catalog.brand,
        coalesce(catalog.price, observed.observed_price::numeric)::numeric(12, 4) as price,
        catalog.item_id is not null as in_catalog,
        catalog.updated_at,
        as_of.as_of as event_timestamp

    from catalog
    full outer join observed on catalog.item_id = observed.item_id
    cross join as_of

)

select * from products
