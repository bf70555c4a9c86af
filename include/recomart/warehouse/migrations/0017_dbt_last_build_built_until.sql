-- The start of dbt's last successful whole-project build (its run_started_at): the feature histories'
-- rows with a built_at up to it were built and tested by then, so a daily `dbt build` tests only the rows
-- written after it (var tests_of_built_rows, dbt_project/macros/tests/new_rows.sql). Null until such a
-- build records it: every row is tested.
alter table ops.dbt_last_build add column if not exists built_until timestamptz;
