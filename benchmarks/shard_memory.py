"""Peak RSS of one shard task of the recommend DAG against the single-process run, on the demo shop.

Builds the demo shop (``RECOMART_USERS`` x ``RECOMART_ITEMS`` x ``RECOMART_DAYS``, defaults 2000 x 500
x 60) in private databases through the whole chain in Airflow, then runs, each in a fresh Python
process whose peak RSS (``ru_maxrss``) is recorded:

- ``floor``: load the champion artifact only (what every shard pays);
- ``single_task``: :func:`recomart.recommend.run.generate_recommendations` (every user in one process);
- per shard count N in ``--shards``: ``prepare`` (begin the generation), the largest shard's
  :func:`recomart.recommend.shards.rank_shard`, then ``publish``.

    .venv/bin/python -m benchmarks.shard_memory --shards 1 4 16 --out benchmarks/results/shard_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from benchmarks.results_file import run_metadata, write_result
from recomart import processes, services
from recomart.config import Settings, load_settings
from recomart.datasets.generator import generate
from recomart.demo import run_chain
from recomart.netcheck import free_port
from recomart.stack import start_catalog_api
from recomart.tools import airflow_migrate, tool_env

# each child prints its result as JSON on its last line, with its peak RSS in MiB
_CHILD = """
import json, resource, sys
from recomart.config import settings
s = settings()
kind, arg = sys.argv[1], json.loads(sys.argv[2])
opts = dict(tracking_uri=s.mlflow_tracking_uri, model_name=s.model_name, log=lambda _: None)
out = {}
if kind == "floor":
    from recomart.model.registry import load_champion
    out["items"] = len(load_champion(s.mlflow_tracking_uri, s.model_name).recommender.item_ids)
elif kind == "single_task":
    from recomart.recommend.run import generate_recommendations
    out["rows"] = generate_recommendations(s.warehouse_url, **opts).rows
elif kind == "prepare":
    from recomart.recommend.shards import begin_sharded_generation
    out["shards"] = [x.as_dict() for x in begin_sharded_generation(s.warehouse_url, arg, **opts)]
elif kind == "shard":
    from recomart.recommend.shards import Shard, rank_shard
    out.update(rank_shard(s.warehouse_url, Shard.from_dict(arg), **opts))
elif kind == "publish":
    from recomart.recommend.shards import Shard, publish_sharded_generation
    out["rows"] = publish_sharded_generation(s.warehouse_url, [Shard.from_dict(x) for x in arg], log=len).rows
out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(out))
"""


def child(s: Settings, kind: str, arg: object = None) -> dict:
    """Run one step in a fresh interpreter; its JSON result (with ``peak_rss_mb``)."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, json.dumps(arg)],
        env=tool_env(s),
        capture_output=True,
        text=True,
        check=True,
        cwd=s.project_root,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def private_settings(landing: Path) -> Settings:
    """Settings of private databases, ports and Redis key prefix for this run."""
    tag = f"recomart_shardmem_{os.getpid()}"
    overrides = {"RECOMART_DB_PREFIX": tag, "RECOMART_FEAST_PROJECT": tag, "RECOMART_MODEL_NAME": tag}
    for name in ("CATALOG", "AIRFLOW", "MLFLOW", "API"):
        overrides[f"RECOMART_{name}_PORT"] = str(free_port())
    return load_settings({**os.environ, **overrides, "RECOMART_LANDING_DIR": str(landing)})


def build_demo_shop(s: Settings) -> None:
    """The demo shop in ``s``'s databases, ranked once through the whole chain."""
    services.ensure_services(s)
    generate(
        s.landing_dir / "generated",
        users=s.generator_users,
        items=s.generator_items,
        days=s.generator_days,
        seed=s.seed,
    )
    airflow_migrate(s)
    start_catalog_api(s)
    run_chain(s)


def clean_up(s: Settings) -> None:
    """Stop the catalog API, drop the databases and the Redis keys of ``s``."""
    processes.stop(s, "catalog-api")
    services.drop_databases(s)
    client = redis.Redis.from_url(s.redis_url)
    for key in client.scan_iter(match=f"*{s.db_prefix}*", count=1000):
        client.delete(key)


def measure(s: Settings, shard_counts: list[int]) -> dict:
    """Peak RSS of the floor, the single task and, per shard count, prepare, the largest shard and publish."""
    result = {"floor": child(s, "floor"), "single_task": child(s, "single_task"), "sharded": []}
    for n in shard_counts:
        prepared = child(s, "prepare", n)
        shards = prepared["shards"]
        largest = max(shards, key=lambda x: x["users"])
        ranked = [child(s, "shard", x) for x in shards]
        published = child(s, "publish", shards)
        result["sharded"].append(
            {
                "shards": n,
                "largest_shard_users": largest["users"],
                "prepare_peak_rss_mb": prepared["peak_rss_mb"],
                "shard_peak_rss_mb": max(r["peak_rss_mb"] for r in ranked),
                "publish_peak_rss_mb": published["peak_rss_mb"],
                "rows": published["rows"],
            }
        )
    single = result["single_task"]["peak_rss_mb"]
    floor = result["floor"]["peak_rss_mb"]
    for row in result["sharded"]:
        row["shard_over_single"] = round(row["shard_peak_rss_mb"] / single, 3)
        row["shard_above_floor_over_single_above_floor"] = round(
            (row["shard_peak_rss_mb"] - floor) / (single - floor), 3
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 4, 16], help="shard counts (default 1 4 16)")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recomart-shardmem-") as landing:
        s = private_settings(Path(landing))
        try:
            build_demo_shop(s)
            result = {"users": s.generator_users, "items": s.generator_items, "days": s.generator_days}
            result.update(measure(s, args.shards))
        finally:
            clean_up(s)
    write_result({**result, **run_metadata()}, args.out)


if __name__ == "__main__":
    main()
