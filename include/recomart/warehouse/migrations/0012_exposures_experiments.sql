-- Exposures and experiments (recomart.experiments): what each recommendations response showed, the
-- experiments the API assigns users to, and the request an event responds to.

-- One row per recommendations response of the API (request_id), loaded by the stream worker from the
-- event stream's exposure entries (field "x"); a redelivered entry is dropped (on conflict do nothing).
-- Entries that do not decode go to quarantine.stream_events with the events' rejects.
create table if not exists raw.exposures (
    request_id text primary key,
    user_id text not null,
    item_ids text[] not null,
    variant text,
    experiment text,
    generation_id bigint,
    model_version text,
    reranker_version text,
    strategy text,
    served_at timestamptz not null,
    _stream_id text not null,
    _load_id text not null,
    _loaded_at timestamptz not null default now()
);
comment on table raw.exposures is
    'One row per recommendations response (request_id): the items shown in rank order (item_ids[1] is rank 1),'
    ' the experiment and variant when one ran, the generation, the model that ranked it and the one that'
    ' re-ranked it (reranker_version: @champion, or @challenger in a challenger variant). Loaded by ./recomart stream.';
comment on column raw.exposures.served_at is 'When the API answered (its clock).';
create index if not exists exposures_user_time on raw.exposures (user_id, served_at);
create index if not exists exposures_experiment on raw.exposures (experiment, served_at) where experiment is not null;

-- The request (raw.exposures.request_id) an event responds to, when the client sent it.
alter table raw.stream_events add column if not exists request_id text;
comment on column raw.stream_events.request_id is
    'The recommendations response (raw.exposures.request_id) this event responds to, when the client sent it.';

-- Experiments the API applies (read by its poller once a second; ./recomart experiment create|list|report).
create table if not exists ops.experiments (
    name text primary key check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    salt text not null check (salt <> ''),
    variants jsonb not null check (jsonb_typeof(variants) = 'array' and jsonb_array_length(variants) >= 2),
    control text not null,
    primary_metric text not null,
    starts_at timestamptz not null,
    ends_at timestamptz,
    created_at timestamptz not null default now(),
    check (ends_at is null or ends_at > starts_at)
);
comment on table ops.experiments is
    'A/B tests of ranking policies. variants: [{"name", "policy", "share"}] in bucket order (shares sum to 1);'
    ' a user''s bucket is blake2b(salt || '':'' || user_id) mod 10,000 (recomart.experiments.assignment).';
