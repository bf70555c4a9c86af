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

The ranking fans out (`RECOMART_RECOMMEND_SHARDS` shards, dynamic task mapping):

- `prepare` begins the generation, pins the champion version, stages the item-side tables and splits
  the users into contiguous ranges of user ids;
- `rank_shard` (one mapped task per shard, on any worker) ranks its users with the pinned version and
  replaces its range's rows in the generation's table (a retry never duplicates them);
- `publish` (only when every shard succeeded) checks the marts are unchanged and every shard delivered
  all its users, then builds the indexes, analyses and swaps the generation in, then the Redis copy;
- `discard_unpublished` (teardown) marks an unpublished generation failed and drops its tables: the
  live generation stays the previous one.

When the champion version and the marts' digest equal those of the live generation (both stored in
`reco.generations`), nothing is ranked: `prepare` logs which generation stays live and ends skipped
(and so do the tasks after it).
Tick `force` in the trigger form to rank and publish anyway (after a code change, say).

Emits `recomart_recommendations` (not when skipped).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, Param, dag, task, teardown
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
    @task
    def prepare(params=None) -> list[dict]:
        """Begin the generation, stage its item-side tables, and split the users into shards."""
        from recomart.config import settings
        from recomart.tasks.recommend import prepare_shards

        plan = prepare_shards(settings(), warehouse_dsn(), force=bool(params.get("force")))
        skip_when_unchanged(plan)
        return plan["shards"]

    # a shard is cheap to redo and its retry replaces its rows: retry it sooner than the default
    @task(retry_delay=timedelta(seconds=10))
    def rank_shard(shard: dict) -> dict:
        """Rank one shard's users into the generation's table (a retry replaces its rows)."""
        from recomart.config import settings
        from recomart.tasks.recommend import rank_one_shard

        return rank_one_shard(settings(), warehouse_dsn(), shard)

    @task(outlets=[RECOMMENDATIONS], trigger_rule="all_success")
    def publish(shards: list[dict], ranked: list[dict], outlet_events=None) -> dict:
        """Check that every shard delivered, build the indexes, analyse, swap in, copy to Redis."""
        from recomart.config import settings
        from recomart.tasks.recommend import publish_shards

        summary = publish_shards(settings(), warehouse_dsn(), list(shards), list(ranked[:]))  # one XCom read
        outlet_events[RECOMMENDATIONS].extra = summary
        return summary

    @teardown
    def discard_unpublished(shards: list[dict]) -> None:
        """Mark the generation failed unless it was published, and drop its leftover tables."""
        from recomart.tasks.recommend import discard_unpublished as discard

        discard(warehouse_dsn(), list(shards))

    shards = prepare()
    published = publish(shards, rank_shard.expand(shard=shards))
    published >> discard_unpublished(shards).as_teardown(setups=shards)


recommend()
