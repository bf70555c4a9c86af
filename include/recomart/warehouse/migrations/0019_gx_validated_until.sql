-- The rows a Great Expectations suite with an incremental batch has validated: after a run without a
-- critical failure, the latest loaded_at of its table then (recomart.quality.watermarks). The next run
-- of the suite reads only the rows loaded after it; a run that fails leaves it, so its rows are read
-- again. No row: every row is read.
create table if not exists ops.gx_validated_until (
    suite text primary key,
    loaded_until timestamptz not null,
    validated_at timestamptz not null default now()
);
