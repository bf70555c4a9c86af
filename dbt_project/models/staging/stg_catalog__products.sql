with

source as (

    select * from {{ source('catalog', 'products') }}

),

renamed as (

    select
        item_id::text as item_id,
        nullif(trim(title::text), '') as title,
        nullif(trim(description::text), '') as description,
        nullif(trim(category::text), '') as category,
        nullif(trim(brand::text), '') as brand,
        price::numeric(12, 4) as price,
        updated_at::timestamptz as updated_at,
        active::boolean as is_active,
        deactivated_at::timestamptz as deactivated_at,
        deactivated_by_load::text as deactivated_by_load_id,
        _load_id::text as load_id,
        _loaded_at::timestamptz as loaded_at

    from source

)

select * from renamed
