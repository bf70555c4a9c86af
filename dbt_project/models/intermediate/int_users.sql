{#
    User attributes of the active data set: the users snapshot for the
    generated shop; for UCI (no user file) each customer's most frequent
    country on its cleaned order lines.
#}

{% if dataset_is('generated') %}

with

users as (

    select
        user_id,
        country,
        segment,
        signup_date

    from {{ ref('stg_shop__users') }}

)

{% else %}

with

order_lines as (

    select * from {{ ref('int_uci_order_lines_cleaned') }}

),

users as (

    select
        customer_id as user_id,
        mode() within group (order by country) as country,
        null::text as segment,
        null::date as signup_date

    from order_lines
    group by customer_id

)

{% endif %}

select * from users
