-- forget user must find a user's quarantined stream entries: the worker now stores the entry's JSON
-- payload as sent (raw_record) and, when it parses as an object with a text user_id, that user here.
-- Rows quarantined before this migration hold the Python repr of the entry's fields; their user is
-- read from the compact JSON the API writes ("user_id":"...", the first occurrence).
alter table quarantine.stream_events add column if not exists user_id text;
comment on column quarantine.stream_events.user_id is
    'The user_id field of the entry''s JSON payload (null when the payload is not a JSON object with one).';
update quarantine.stream_events
set user_id = substring(raw_record from '"user_id":"([^"\\]*)"')
where user_id is null and raw_record is not null;
create index if not exists stream_events_quarantine_user on quarantine.stream_events (user_id)
where user_id is not null;
