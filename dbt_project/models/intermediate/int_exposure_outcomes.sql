{#
    Attribution: each interaction of a shown item (a view is a click, then
    add_to_cart and purchase) by the same user counts for at most one
    exposure, served at or before it and at most
    var('attribution_window_hours') (24) hours earlier:
      1. the exposure the event names (its request_id), when that exposure
         showed the item to the user within the window;
      2. else the latest such exposure (last touch; ties by request_id).
    An interaction of an item no exposure showed within the window is not
    attributed, so outcomes are never counted twice.
#}

with

shown as (

    select * from {{ ref('int_exposure_items') }}

),

interactions as (

    select * from {{ ref('int_interactions') }}

),

candidates as (

    select
        interactions.interaction_id,
        shown.request_id,
        shown.user_id,
        shown.item_id,
        shown.item_rank,
        shown.experiment,
        shown.variant,
        shown.served_at,
        interactions.event_type,
        interactions.event_time,
        interactions.quantity,
        interactions.unit_price,
        interactions.revenue,
        coalesce(interactions.request_id = shown.request_id, false) as named_by_event

    from interactions
    inner join shown
        on
            interactions.user_id = shown.user_id
            and interactions.item_id = shown.item_id
            and interactions.event_time >= shown.served_at
            and interactions.event_time
            < shown.served_at + interval '1 hour' * {{ var('attribution_window_hours') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by interaction_id
            order by named_by_event desc, served_at desc, request_id asc
        ) as candidate_rank

    from candidates

),

attributed as (

    select
        interaction_id,
        request_id,
        user_id,
        item_id,
        item_rank,
        experiment,
        variant,
        served_at,
        event_type,
        event_time,
        quantity,
        unit_price,
        revenue,
        case when named_by_event then 'request_id' else 'last_exposure' end as attributed_by

    from ranked
    where candidate_rank = 1

)

select * from attributed
