{#
    raw.exposures is created by the warehouse migration
    0012_exposures_experiments and filled by the stream worker. In a
    warehouse built without it (raw tables made by hand, as dbt's own tests
    do) this model is an empty relation of the same shape.
#}
{%- set exposures_table = adapter.get_relation(
    database=target.database, schema='raw', identifier='exposures'
) if execute else none -%}

{% if exposures_table is none and execute %}

select
    null::text as request_id,
    null::text as user_id,
    null::text[] as item_ids,
    null::text as experiment,
    null::text as variant,
    null::bigint as generation_id,
    null::text as model_version,
    null::text as reranker_version,
    null::text as strategy,
    null::timestamptz as served_at,
    null::text as stream_id,
    null::text as load_id,
    null::timestamptz as loaded_at
where false

{% else %}

with

source as (

    select * from {{ source('serving', 'exposures') }}

),

renamed as (

    select
        -- ids
        request_id::text as request_id,
        user_id::text as user_id,

        -- what was shown, in rank order
        item_ids::text[] as item_ids,

        -- experiment
        experiment::text as experiment,
        variant::text as variant,

        -- what ranked it
        generation_id::bigint as generation_id,
        model_version::text as model_version,
        reranker_version::text as reranker_version,
        strategy::text as strategy,

        -- timestamps
        served_at::timestamptz as served_at,

        -- load metadata
        _stream_id::text as stream_id,
        _load_id::text as load_id,
        _loaded_at::timestamptz as loaded_at

    from source

)

select * from renamed

{% endif %}
