"""
### monitor

Daily at 06:00 UTC, and after each new recommendation generation (`recomart_recommendations`).

Five checks, each writing one row per metric to `ops.monitoring_metrics` (run id = this DAG run) and
opening, refreshing or resolving its rows of `ops.alerts`:
- **data drift**: PSI of each key user and item feature, the latest window of the `*_history` marts
  against the days before it (warn at `RECOMART_MONITOR_PSI_WARN`, alert at `..._PSI_ALERT`);
- **recommendation health** of the live generation against the previous one: coverage, Gini of
  exposure, popularity bias, personalization, novelty, intra-list diversity, cold-start share;
- **model health**: the held-out metrics of every version in `ops.model_promotions`, the champion's
  lift over popularity;
- **serving health**: latency, errors and fallback share of the API (`ops.serving_stats`);
- **experiments**: the running experiment analysed as `./recomart experiment report` does (conversion and
  lift per variant, CUPED, the sequential decision), alerting on a sample-ratio mismatch (p < 0.001).

`report_alerts` runs after the checks, even after a failed one (`all_checks_ran` then fails the run), posts
what this run opened or resolved to `RECOMART_ALERT_WEBHOOK` when set, and fails
(no retries) while unacknowledged alerts are open, so that the failure callback logs their summary.
Acknowledge with `./recomart alerts ack ID`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, dag, task
from airflow.sdk.exceptions import AirflowFailException
from recomart_dag_utils.assets import RECOMMENDATIONS
from recomart_dag_utils.defaults import DEFAULT_ARGS, warehouse_dsn

CHECKS = {
    "data_drift": ("check_data_drift", "PSI per key feature, latest window vs reference."),
    "recommendation_health": ("check_recommendation_health", "Health of the live generation vs the previous one."),
    "model_health": ("check_model_health", "Held-out metrics history and the champion's lift over popularity."),
    "serving_health": ("check_serving_health", "The API's latency, errors and fallback share (ops.serving_stats)."),
    "experiments": ("check_experiments", "The running experiment's analysis; alerts on a sample-ratio mismatch."),
}


def _check(task_id: str, body: str, doc: str):
    """A task running ``recomart.tasks.monitor.<body>`` for this DAG run."""

    @task(task_id=task_id, doc_md=doc)
    def run_check(run_id=None):
        from recomart.config import settings
        from recomart.tasks import monitor as bodies

        return getattr(bodies, body)(settings(), warehouse_dsn(), run_id)

    return run_check()


@dag(
    dag_id="monitor",
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable("0 6 * * *", timezone="UTC"), assets=[RECOMMENDATIONS]
    ),
    start_date=pendulum.datetime(2010, 12, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "monitoring"],
    doc_md=__doc__,
)
def monitor():
    @task(trigger_rule="all_done")
    def report_alerts(run_id=None):
        """Webhook, then fail while unacknowledged alerts are open (the failure callback logs them)."""
        from recomart.config import settings
        from recomart.tasks.monitor import OpenAlerts
        from recomart.tasks.monitor import report_alerts as report

        try:
            return report(settings(), warehouse_dsn(), run_id)
        except OpenAlerts as alerts:
            raise AirflowFailException(str(alerts)) from alerts

    @task
    def all_checks_ran():
        """Fails (upstream failed) when a check failed: report_alerts runs anyway, and the DAG run must not
        pass as a success."""

    checks = [_check(task_id, body, doc) for task_id, (body, doc) in CHECKS.items()]
    checks >> report_alerts()
    checks >> all_checks_ran()


monitor()
