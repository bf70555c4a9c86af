-- Unchanged inputs neither retrain nor republish (issue 13, point 5): each model decision keeps the
-- digest of the inputs it was trained on and the Airflow DAG run that trained it; each generation
-- keeps the digest of the marts it was ranked from (recomart.marts.marts_digest).
alter table ops.model_promotions
    add column if not exists inputs_digest text,
    add column if not exists airflow_run_id text;
comment on column ops.model_promotions.inputs_digest is
    'sha256 of the marts digest, the data set and the training settings the version was trained on.';
comment on column ops.model_promotions.airflow_run_id is
    'The train DAG run that registered the version (the demo''s report finds its own version by it).';

alter table reco.generations add column if not exists marts_digest text;
comment on column reco.generations.marts_digest is
    'Digest of the marts rows the generation was ranked from (recomart.marts.marts_digest).';
