"""
### recommend

Nightly at 03:00 UTC, and whenever a new model version is registered (`recomart_model`).

Loads `models:/<name>@champion`, scores every user against every item from the factors in user
blocks (matrix product + compiled top-k; never surprise's per-pair `predict`), blends in a content
score from product metadata, falls back to popular items for users without history, and swaps
`reco.user_recommendations` in atomically (staging table, then rename in one transaction).
Without a champion it serves the popularity strategy and says so in the log and in each row.

Emits `recomart_recommendations`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, dag, task
from recomart_dag_utils.assets import MODEL, RECOMMENDATIONS
from recomart_dag_utils.defaults import DEFAULT_ARGS, warehouse_dsn


@dag(
    dag_id="recommend",
    schedule=AssetOrTimeSchedule(timetable=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"), assets=[MODEL]),
    start_date=pendulum.datetime(2010, 12, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "recommendations"],
    doc_md=__doc__,
)
def recommend():
    @task(outlets=[RECOMMENDATIONS])
    def score_and_publish(outlet_events=None):
        """Score all users and swap the recommendation tables in."""
        from recomart.config import settings
        from recomart.tasks.recommend import publish_recommendations

        summary = publish_recommendations(settings(), warehouse_dsn())
        outlet_events[RECOMMENDATIONS].extra = summary
        return summary

    score_and_publish()


recommend()
