"""
### train

Runs when the marts are rebuilt (`recomart_marts`). Fits `surprise.SVD(biased=True)` on
`marts.user_item_ratings` (seeded: the same data gives the same model), evaluates it against a
popularity baseline on a held-out time split with vectorised ranking, logs params, metrics and a
pyfunc recommender to MLflow (Postgres tracking and registry) and registers a new version.

The version gets alias `champion` only when it beats popularity on the held-out split, otherwise
`challenger`; the decision and reason are in the log and in `ops.model_promotions`.

Emits `recomart_model`, which starts `recommend`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from recomart_dag_utils.assets import MARTS, MODEL
from recomart_dag_utils.defaults import DEFAULT_ARGS, warehouse_dsn


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
    def train_evaluate_register(outlet_events=None):
        """Train, evaluate against popularity, log to MLflow and apply the promotion gate."""
        from recomart.config import settings
        from recomart.pipeline import train_and_register

        summary = train_and_register(settings(), warehouse_dsn())
        outlet_events[MODEL].extra = summary
        return summary

    train_evaluate_register()


train()
