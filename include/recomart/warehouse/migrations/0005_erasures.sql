-- ./recomart forget user: the suppression list the loader reads and the audit of each erasure.
create table if not exists ops.erased_users (
    user_key text primary key,
    key_id text not null,
    erased_at timestamptz not null default now(),
    erasure_id bigint not null
);
comment on table ops.erased_users is
    'Users erased on request (recomart forget): HMAC-SHA256 of the user id under the erasure key, never the id.';

create table if not exists ops.erasures (
    erasure_id bigint generated always as identity primary key,
    requested_at timestamptz not null default now(),
    finished_at timestamptz,
    requested_by text not null,
    user_key text not null,
    reason text,
    status text not null default 'running' check (status in ('running', 'completed', 'failed')),
    counts jsonb not null default '{}'::jsonb,
    error text
);
comment on table ops.erasures is
    'One row per `recomart forget user` request: who, when, rows removed per place; the user only as a keyed hash.';

create table if not exists ops.erased_model_versions (
    erasure_id bigint not null references ops.erasures,
    model_name text not null,
    model_version text not null,
    marked_at timestamptz not null default now(),
    primary key (erasure_id, model_name, model_version)
);
comment on table ops.erased_model_versions is
    'Registered model versions whose artifact still holds an erased user (tagged erased_user_data in MLflow).';
