-- Monitoring (issue 16, points 5-9): the monitor DAG's measurements, the alerts they raise, and the
-- API's per-minute serving figures. recomart.monitoring writes the first two, recomart.serving.stats
-- the third.

create table if not exists ops.monitoring_metrics (
    run_id text not null,
    metric_key text not null,
    subject text not null default '',
    value double precision,
    what text,
    alert_scope text not null default '',
    status text not null check (status in ('ok', 'warn', 'alert', 'info')),
    warn_threshold double precision,
    alert_threshold double precision,
    details jsonb not null default '{}'::jsonb,
    measured_at timestamptz not null default now(),
    primary key (run_id, metric_key, subject)
);
create index if not exists monitoring_metrics_key_time on ops.monitoring_metrics (metric_key, subject, measured_at);
comment on table ops.monitoring_metrics is
    'One row per metric per monitor run (recomart.monitoring): drift.<entity>.psi per feature, reco.* per generation, model.*, serving.*; a re-run of the same run replaces its rows.';
comment on column ops.monitoring_metrics.subject is
    'What was measured: a feature name, a generation id, a model version, or empty.';
comment on column ops.monitoring_metrics.alert_scope is
    'Which ops.alerts row a breach opens or a value within the threshold resolves (alerts.subject): the feature for drift, empty for the live generation, the champion and the API.';
comment on column ops.monitoring_metrics.status is
    'ok, warn (between the warn and alert thresholds), alert (opened or kept an ops.alerts row) or info (no threshold).';

create table if not exists ops.alerts (
    alert_id bigint generated always as identity primary key,
    metric_key text not null,
    subject text not null default '',
    what text not null,
    value double precision,
    threshold double precision,
    run_id text not null,
    state text not null default 'open' check (state in ('open', 'acknowledged', 'resolved')),
    opened_at timestamptz not null default now(),
    last_value double precision,
    last_run_id text not null,
    last_seen_at timestamptz not null default now(),
    breaches integer not null default 1,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at timestamptz,
    resolved_by_run text
);
-- at most one unresolved alert per metric and subject: a breach that persists updates it
create unique index if not exists alerts_one_unresolved on ops.alerts (metric_key, subject) where state <> 'resolved';
comment on table ops.alerts is
    'Threshold breaches of the monitor DAG: open -> acknowledged (./recomart alerts ack ID) -> resolved (a later run back within the threshold). value/threshold/run_id are those of the opening breach, last_* of the latest.';

create table if not exists ops.serving_stats (
    minute timestamptz not null,
    route text not null,
    worker text not null,
    requests bigint not null,
    errors bigint not null,
    p50_ms double precision,
    p95_ms double precision,
    p99_ms double precision,
    fallback_share double precision,
    primary key (minute, route, worker)
);
comment on table ops.serving_stats is
    'The API''s requests per UTC minute, route and worker process (recomart.serving.stats): count, 5xx errors, latency percentiles in ms, share of list reads answered by the Postgres fallback.';
