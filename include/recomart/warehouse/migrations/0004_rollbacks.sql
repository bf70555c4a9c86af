-- ./recomart rollback: a generation can be 'rolled_back', and each rollback step is logged.
alter table reco.generations
    drop constraint if exists generations_status_check,
    add constraint generations_status_check
        check (status in ('building', 'live', 'superseded', 'failed', 'rolled_back'));

create table if not exists ops.rollbacks (
    rollback_id bigint generated always as identity primary key,
    performed_at timestamptz not null default now(),
    performed_by text not null,
    kind text not null check (kind in ('generation', 'model')),
    from_generation bigint,
    to_generation bigint,
    model_name text,
    from_version text,
    to_version text,
    reason text
);
comment on table ops.rollbacks is
    'One row per rollback step: a generation swapped back in from reco.*_previous, or @champion moved back.';
