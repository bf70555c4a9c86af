-- The load ledger from one row per (feed, logical date) to one row per attempt.
-- Every existing row is kept and numbered (attempt_id); a 'loaded' row becomes its date's live load
-- (for the snapshot feed generated_users only the latest, as only its rows are in raw.users).  Adds
-- the status 'empty' and records_erased (records of erased users a load left out; 0 before).
-- A warehouse upgraded by the code between 8f3b0dd and the migrations already has this shape (its
-- unique index loaded_files_live marks it): then only what is missing is added.

do $$
begin
    if to_regclass('ops.loaded_files_live') is null then
        alter table ops.loaded_files
            drop constraint loaded_files_pkey,
            drop constraint loaded_files_status_check,
            add column attempt_id bigint generated always as identity,
            add column is_live boolean not null default false,
            add primary key (attempt_id),
            add constraint loaded_files_status_check
                check (status in ('loaded', 'empty', 'skipped_missing', 'failed')),
            add constraint loaded_files_live_status check (not is_live or status in ('loaded', 'empty'));
        update ops.loaded_files l
           set is_live = true
         where status = 'loaded'
           and (feed <> 'generated_users'
                or finished_at = (select max(finished_at) from ops.loaded_files o
                                   where o.feed = l.feed and o.status = 'loaded'));
        create index loaded_files_feed_date on ops.loaded_files (feed, logical_date, attempt_id);
        create unique index loaded_files_live on ops.loaded_files (feed, logical_date) where is_live;
    end if;
end
$$;

alter table ops.loaded_files add column if not exists records_erased integer not null default 0;
