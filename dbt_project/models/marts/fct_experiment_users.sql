{#
    One row per experiment, variant and user (a user sees one variant for
    an experiment's life): exposures, outcomes attributed to them, and the
    pre-period covariate of CUPED: the user's purchases and revenue in the
    var('experiment_pre_period_days') (14) days before their first exposure.
    The per-user frame of `recomart experiment report` reads this mart.
#}

with

exposures as (

    select * from {{ ref('fct_exposures') }}
    where experiment is not null

),

interactions as (

    select * from {{ ref('int_interactions') }}

),

prices as (

    select bool_or(unit_price is not null) as has_prices
    from interactions
    where event_type = 'purchase'

),

users as (

    select
        experiment,
        variant,
        user_id,
        count(*) as exposures,
        min(served_at) as first_exposure_at,
        max(served_at) as last_exposure_at,
        sum(clicks) as clicks,
        sum(carts) as carts,
        sum(purchases) as purchases,
        sum(revenue) as revenue

    from exposures
    group by experiment, variant, user_id

),

pre_period as (

    select
        users.experiment,
        users.user_id,
        count(interactions.interaction_id) as pre_purchases,
        coalesce(sum(interactions.revenue), 0) as pre_revenue

    from users
    left join interactions
        on
            users.user_id = interactions.user_id
            and interactions.event_type = 'purchase'
            and users.first_exposure_at > interactions.event_time
            and users.first_exposure_at - interval '1 day' * {{ var('experiment_pre_period_days') }}
            <= interactions.event_time
    group by users.experiment, users.user_id

),

final as (

    select
        users.experiment,
        users.variant,
        users.user_id,
        users.exposures,
        users.first_exposure_at,
        (users.first_exposure_at at time zone 'UTC')::date as first_exposure_day,
        users.last_exposure_at,
        users.clicks,
        users.carts,
        users.purchases,
        users.purchases > 0 as converted,
        users.revenue,
        pre_period.pre_purchases,
        case when prices.has_prices then pre_period.pre_revenue end as pre_revenue

    from users
    inner join pre_period
        on
            users.experiment = pre_period.experiment
            and users.user_id = pre_period.user_id
    cross join prices

)

select * from final
