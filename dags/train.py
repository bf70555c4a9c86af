"""
### train

Runs when the marts are rebuilt (`recomart_marts`). Splits the interactions in time (train <
validation < test window: the rating pairs of `marts.user_item_ratings`, or for feeds with repeat
purchases such as UCI the events of `marts.user_item_events`, so repeat purchases stay in training
and count in the test window), tunes `surprise.SVD(biased=True)` on validation (seeded: the same data
gives the same model) and fits the hybrid's blend weights and component options (SVD, item-to-item,
content, buy-again when the feed allows repeats, popularity) on the same window with the tuned SVD
(with product embeddings in `reco.item_embeddings`, the content component's TF-IDF, half-embedding and
embedding-only variants are tried too and kept only if the validation window prefers them), then scores
the blend, each component, popularity and the current champion's blend once on the test window. Logs
params (`weight_<component>`), headline metrics and the at-K curves (one metric per
family, step = K), the blend fit (`blend.json`, with each content variant's validation nDCG, also
logged as `valid_content_<variant>_<blend|alone>_ndcg`) and registers the fitted hybrid as an MLflow pyfunc
(Postgres tracking and registry). Settings: `recomart.model.config.TrainingConfig.from_settings`.

It also fits the learned ranker (LightGBM LambdaRank over the candidate generators, with the Feast
user and item features read point-in-time at the validation cutoff) and registers whichever of the
ranker and the blend wins on validation (`recomart.model.ranker_stage`; `RECOMART_TRAIN_RANKER`).

The version gets alias `champion` only when its registered strategy (ranker or blend) beats popularity
and the champion on the test window, otherwise `challenger`; the decision, reason (naming the strategy)
and weights are in the log and in `ops.model_promotions`. The recommend DAG ranks through the champion.

Unchanged inputs do not retrain: when the marts' and the item vectors' digests and the training settings
equal those of the last
registered version (MLflow tag and `ops.model_promotions.inputs_digest`), the task logs "inputs unchanged
since version N" and ends skipped. Each version is tagged with the DAG run that trained it
(`airflow_run_id`), which is how the demo's report names the version its own run registered.

Emits `recomart_model`, which starts `recommend` (not when skipped).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from recomart_dag_utils.assets import MARTS, MODEL
from recomart_dag_utils.defaults import DEFAULT_ARGS, skip_when_unchanged, warehouse_dsn


@dag(
    dag_id="train",
    schedule=[MARTS],
    start_date=pendulum.datetime(2010, 12, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "mlflow", "model"],
    doc_md=__doc__,
)
def train():
    @task(outlets=[MODEL])
    def train_evaluate_register(dag_run=None, outlet_events=None):
        """Train SVD, fit the blend weights, evaluate against popularity and the champion, gate, register
        (tagged with this DAG run's id); skipped, with no asset event, when the inputs are unchanged."""
        from recomart.config import settings
        from recomart.tasks.train import train_and_register

        summary = train_and_register(settings(), warehouse_dsn(), airflow_run_id=dag_run.run_id)
        skip_when_unchanged(summary)
        outlet_events[MODEL].extra = summary
        return summary

    train_evaluate_register()


train()
