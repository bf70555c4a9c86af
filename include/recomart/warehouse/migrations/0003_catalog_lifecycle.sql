-- The catalogue keeps every product ever served and resolves its quarantine:
-- raw.products.active is false once a full snapshot no longer serves the product (when, by which
-- load); quarantine.products keeps each invalid record's key until a later load resolves it; the
-- watermark row records the last full snapshot and the last load's counts.
alter table raw.products
    add column if not exists active boolean not null default true,
    add column if not exists deactivated_at timestamptz,
    add column if not exists deactivated_by_load text;

alter table quarantine.products
    add column if not exists item_id text,
    add column if not exists resolved_at timestamptz,
    add column if not exists resolved_by_load text,
    add column if not exists resolution text;

create index if not exists products_unresolved on quarantine.products (item_id) where resolved_at is null;

alter table ops.catalog_watermark
    add column if not exists mode text,
    add column if not exists snapshot text,
    add column if not exists resolved integer,
    add column if not exists deactivated integer,
    add column if not exists reactivated integer,
    add column if not exists last_full_at timestamptz,
    add column if not exists last_full_load_id text;
