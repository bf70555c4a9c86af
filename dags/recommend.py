"""
### recommend

Nightly at 03:00 UTC, and whenever a new model version is registered (`recomart_model`).

Loads `models:/<name>@champion` through its MLflow pyfunc: the whole hybrid (biased SVD, item-to-item,
content, buy-again when the feed allows repeats, a popularity prior; segment popularity for cold start)
with the weights and options fitted in training. Ranks every user of the marts against tonight's
history with that very object, in user blocks (matrix products + compiled top-k; never surprise's
per-pair `predict`), and swaps `reco.user_recommendations`, `reco.similar_items` and
`reco.popular_items` in atomically (staging tables, then renames in one transaction). Without a
champion it serves segment popularity and says so in the log and in each row (`popular_no_model`).

When the champion version and the marts' digest equal those of the live generation (both stored in
`reco.generations`), nothing is ranked: the task logs which generation stays live and ends skipped.
Tick `force` in the trigger form to rank and publish anyway (after a code change, say).

Emits `recomart_recommendations` (not when skipped).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, Param, dag, task
from recomart_dag_utils.assets import MODEL, RECOMMENDATIONS
from recomart_dag_utils.defaults import DEFAULT_ARGS, skip_when_unchanged, warehouse_dsn


@dag(
    dag_id="recommend",
    schedule=AssetOrTimeSchedule(timetable=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"), assets=[MODEL]),
    start_date=pendulum.datetime(2010, 12, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "recommendations"],
    doc_md=__doc__,
    params={
        "force": Param(
            False,
            type="boolean",
            title="Force",
            description="Rank and publish even when the champion and the marts equal the live generation's.",
        ),
    },
)
def recommend():
    @task(outlets=[RECOMMENDATIONS])
    def score_and_publish(params=None, outlet_events=None):
        """Score all users and swap the recommendation tables in."""
        from recomart.config import settings
        from recomart.tasks.recommend import publish_recommendations

        summary = publish_recommendations(settings(), warehouse_dsn(), force=bool(params.get("force")))
        skip_when_unchanged(summary)
        outlet_events[RECOMMENDATIONS].extra = summary
        return summary

    score_and_publish()


recommend()
