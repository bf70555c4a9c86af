-- BRIN indexes on raw.events' event time and load time: the events land day by day, so both follow
-- the table's physical order, and an incremental build of int_interactions reads only the blocks of
-- its window and of the events loaded since its last build (dbt macro interactions_window) instead of
-- every event.  BRIN, not btree: a btree entry per row would cost the COPY (see 0001's note).
create index if not exists events__event_time_brin on raw.events
    using brin (event_time) with (pages_per_range = 32);
create index if not exists events__loaded_at_brin on raw.events
    using brin (_loaded_at) with (pages_per_range = 32);
