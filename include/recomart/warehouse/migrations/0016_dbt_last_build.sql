-- dbt's record of its last successful whole-project build (dbt_project/macros/tests/new_rows.sql): the
-- latest int_interactions.loaded_at that build built and tested.  A daily `dbt build` tests the
-- event-grain models' rows loaded after it only; written by dbt's on-run-end hook, one row per project.
create table if not exists ops.dbt_last_build (
    project text primary key,
    loaded_until timestamptz,
    invocation_id text not null
);
