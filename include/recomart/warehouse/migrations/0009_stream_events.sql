-- The speed layer (recomart.stream): each event accepted by POST /v1/events once, as the stream
-- worker stored it; the entries it could not decode; each user's last pushed session row time.
create table if not exists raw.stream_events (
    event_id text primary key,
    event_time timestamptz not null,
    user_id text not null,
    item_id text not null,
    event_type text not null check (event_type in ('view', 'add_to_cart', 'purchase')),
    quantity bigint,
    unit_price numeric,
    received_at timestamptz not null,
    _stream_id text not null,
    _load_id text not null,
    _loaded_at timestamptz not null default now()
);
comment on table raw.stream_events is
    'Events of POST /v1/events, one row per event_id (redeliveries dropped), loaded by ./recomart stream.';
create index if not exists stream_events_user_time on raw.stream_events (user_id, event_time);

create table if not exists quarantine.stream_events (
    stream_id text not null,
    raw_record text,
    reason text not null,
    load_id text not null,
    quarantined_at timestamptz not null default now()
);

create table if not exists raw.stream_session_clock (
    user_id text primary key,
    row_time timestamptz not null
);
comment on table raw.stream_session_clock is
    'Event time of each user''s last session row pushed to Feast: the next is at least a second later. In raw,'
    ' not ops: it names users in clear (forget user deletes it; the reader does not see it).';
