-- A load attempt that writes rows is committed as 'running' before its transaction (under a session
-- advisory lock), so a load killed with its server leaves a trace that the next load marks 'failed'.
alter table ops.loaded_files
    drop constraint loaded_files_status_check,
    add constraint loaded_files_status_check
        check (status in ('loaded', 'empty', 'skipped_missing', 'failed', 'running'));

create index loaded_files_running on ops.loaded_files (feed) where status = 'running';
