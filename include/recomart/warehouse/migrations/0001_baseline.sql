-- The warehouse schema as RecoMart 8f3b0dd created it (before migrations existed).
-- Written "if not exists": that version created its tables lazily, each component its own, so a
-- warehouse of that time may hold any subset of them; this file creates the rest and changes nothing
-- that exists.  Later files take the result to the current schema.

create schema if not exists raw;
create schema if not exists quarantine;
create schema if not exists ops;
create schema if not exists reco;

-- Landing-file feeds (recomart.ingest.feeds): raw.<table> and quarantine.<table> per feed.  The
-- loader sends the per-load constants with every COPY row; the defaults from transaction-local
-- settings are for manual inserts inside a load context.
create table if not exists raw.events (
    event_id text not null,
    event_time timestamptz not null,
    user_id text not null,
    item_id text not null,
    event_type text not null,
    quantity bigint,
    unit_price numeric,
    _logical_date date not null default current_setting('recomart.logical_date')::date,
    _load_id text not null default current_setting('recomart.load_id') check (_load_id <> ''),
    _source_file text not null default current_setting('recomart.source_file') check (_source_file <> ''),
    _line_number integer not null,
    _loaded_at timestamptz not null default now()
);

create table if not exists raw.users (
    user_id text not null,
    country text,
    segment text,
    signup_date date,
    _logical_date date not null default current_setting('recomart.logical_date')::date,
    _load_id text not null default current_setting('recomart.load_id') check (_load_id <> ''),
    _source_file text not null default current_setting('recomart.source_file') check (_source_file <> ''),
    _line_number integer not null,
    _loaded_at timestamptz not null default now()
);

create table if not exists raw.uci_orders (
    invoice_no text not null,
    stock_code text not null,
    description text,
    quantity bigint not null,
    invoice_date timestamptz not null,
    unit_price numeric not null,
    customer_id text,
    country text not null,
    _logical_date date not null default current_setting('recomart.logical_date')::date,
    _load_id text not null default current_setting('recomart.load_id') check (_load_id <> ''),
    _source_file text not null default current_setting('recomart.source_file') check (_source_file <> ''),
    _line_number integer not null,
    _loaded_at timestamptz not null default now()
);

-- raw: BRIN on _logical_date, not btree (a btree entry per row cost 20-40 % of the COPY's server
-- CPU); versions before 8f3b0dd created a btree, which it dropped.
drop index if exists raw.events__logical_date_idx;
drop index if exists raw.users__logical_date_idx;
drop index if exists raw.uci_orders__logical_date_idx;
create index if not exists events__logical_date_brin on raw.events
    using brin (_logical_date) with (pages_per_range = 32);
create index if not exists users__logical_date_brin on raw.users
    using brin (_logical_date) with (pages_per_range = 32);
create index if not exists uci_orders__logical_date_brin on raw.uci_orders
    using brin (_logical_date) with (pages_per_range = 32);

create table if not exists quarantine.events (
    load_id text not null,
    source_file text not null,
    line_number integer not null,
    raw_record text not null,
    reason text not null,
    quarantined_at timestamptz not null default now(),
    _logical_date date not null
);
create table if not exists quarantine.users (like quarantine.events including defaults);
create table if not exists quarantine.uci_orders (like quarantine.events including defaults);
create index if not exists events__logical_date_idx on quarantine.events (_logical_date);
create index if not exists users__logical_date_idx on quarantine.users (_logical_date);
create index if not exists uci_orders__logical_date_idx on quarantine.uci_orders (_logical_date);

-- The load ledger: one row per (feed, logical date) at that version.
create table if not exists ops.loaded_files (
    feed text not null,
    logical_date date not null,
    source_file text not null,
    sha256 text,
    records_read integer,
    records_loaded integer,
    records_rejected integer,
    status text not null check (status in ('loaded', 'skipped_missing', 'failed')),
    started_at timestamptz not null,
    finished_at timestamptz,
    load_id text not null,
    error text,
    primary key (feed, logical_date)
);

-- The product catalogue (recomart.ingest.catalog).
create table if not exists raw.products (
    item_id text primary key,
    title text not null,
    description text,
    category text not null,
    brand text,
    price numeric not null,
    updated_at timestamptz not null,
    payload jsonb not null,
    _load_id text not null,
    _loaded_at timestamptz not null
);
create table if not exists quarantine.products (
    load_id text not null,
    source_file text not null,
    line_number integer not null,
    raw_record text not null,
    reason text not null,
    quarantined_at timestamptz not null default now()
);
create table if not exists ops.catalog_watermark (
    feed text primary key,
    watermark timestamptz,
    last_load_id text not null,
    last_success_at timestamptz not null,
    source_url text not null,
    fetched integer not null,
    upserted integer not null,
    unchanged integer not null,
    quarantined integer not null
);

-- The promotion gate's decisions.
create table if not exists ops.model_promotions (
    decided_at timestamptz not null default now(),
    model_name text not null,
    model_version text not null,
    previous_champion text,
    decision text not null check (decision in ('promoted', 'rejected')),
    reason text not null,
    metrics jsonb not null,
    run_id text,
    data_digest text
);
alter table ops.model_promotions add column if not exists blend jsonb;

-- The recommendation generations (the reco.* tables themselves are created by each run's swap).
create table if not exists reco.generations (
    generation_id bigint generated always as identity primary key,
    started_at timestamptz not null default now(),
    built_at timestamptz,
    model_version text,
    status text not null default 'building'
        check (status in ('building', 'live', 'superseded', 'failed')),
    is_live boolean not null default false,
    strategy_summary jsonb not null default '{}'::jsonb,
    row_count bigint,
    user_count bigint,
    popular_item_count bigint,
    details jsonb
);
alter table reco.generations add column if not exists similar_item_count bigint;
create unique index if not exists generations_one_live on reco.generations (is_live) where is_live;
comment on table reco.generations is
    'Append-only log of recommendation generations; exactly one row is_live (the tables being served).';
