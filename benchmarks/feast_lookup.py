"""Feast figures on a scratch deployment: materialize, online lookups, raw Redis, point-in-time joins.

Run: ``.venv/bin/python -m benchmarks.feast_lookup`` (writes ``benchmarks/results/online_lookup.json``).

A scratch deployment (own database prefix and Feast project, so its own Redis keys) is
created and dropped again. Data: UCI Online Retail from ``../shared/data`` when present
(every daily file through the UCI feed loader, then ``dbt build`` with ``dataset=uci``;
the catalogue is left empty, so ``dim_products`` describes items from the order lines),
else the generated shop with ``--generated-users`` users.

Measured, in one process and one run:

- ``materialize_rows_per_s``: ``materialize_window`` of both views over the span of the feature
  histories, one row per entity with a history row over seconds (Postgres read of every entity's
  latest row, conversion and Redis write);
- ``feast_*``: ``FeatureStore.get_online_features`` of all user features of the
  ``recommender_v1`` FeatureService (the feature references of its ``user_features``
  projection) for 1,000 distinct users, one call per user, store reused;
- ``feast_service_object_*``: the same through the FeatureService object itself, which
  needs an ``item_id`` too and so reads both views (two Redis reads);
- ``feast_online_read_*``: the tuned direct path: precomputed entity keys and one
  ``online_read`` of the Redis online store (no request planning, no response building);
- ``redis_*``: raw ``HGETALL`` of the same Redis keys (the physical floor);
- ``batch100_*``: ``get_online_features`` for 100 users per call;
- ``historical_10k_median_s`` / ``historical_10k_max_s``: 5 runs of
  ``recomart.features.training_features`` (the point-in-time training read through the
  ``recommender_v1`` FeatureService) for 10,000 (user, item, label time) rows, also merged into
  ``benchmarks/results/scoring.json``; ``feast_historical_s``: one ``get_historical_features``
  through the same service for the first ``--feast-rows`` of them, which must return the same
  values (``details.historical.feast_agrees``). Why not Feast for 10k rows: docs/features.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import redis

from recomart import services
from recomart.config import Settings, settings
from recomart.features import (
    FEATURE_SERVICE,
    apply,
    clear_store_cache,
    feature_store,
    historical_features,
    materialize_window,
    service_feature_refs,
    training_features,
)
from recomart.marts import feature_history_span
from recomart.tools import tool_env
from recomart.transform import dbt_build

RESULTS = Path(__file__).resolve().parent / "results" / "online_lookup.json"
SCORING = RESULTS.with_name("scoring.json")
HISTORICAL_RUNS = 5
COMMAND = ".venv/bin/python -m benchmarks.feast_lookup"
UCI_DAYS = Path("uci-online-retail") / "by-day"


def _log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _percentiles(samples_ns: Sequence[int]) -> dict[str, float]:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "max_ms": round(float(ms.max()), 4),
        "n": int(ms.size),
    }


def _time_each(call: Callable[[Any], Any], args: Sequence[Any], warmup: int = 50) -> dict[str, float]:
    """Time ``call(arg)`` once per arg (after ``warmup`` untimed calls), in nanoseconds."""
    for arg in args[:warmup]:
        call(arg)
    samples = []
    for arg in args:
        began = time.perf_counter_ns()
        call(arg)
        samples.append(time.perf_counter_ns() - began)
    return _percentiles(samples)


# --- scratch deployment -------------------------------------------------------
def scratch_settings(base: Settings, landing: Path, dataset: str, users: int) -> Settings:
    """``base`` with a private database prefix, Feast project, landing folder and data set."""
    tag = f"recomart_bench_{uuid.uuid4().hex[:8]}"
    return replace(
        base,
        db_prefix=tag,
        feast_project=tag,
        model_name=tag,
        landing_dir=landing,
        dataset=dataset,
        generator_users=users,
    )


def drop_scratch(s: Settings) -> None:
    """Drop the scratch databases and the scratch project's Redis keys."""
    clear_store_cache()
    services.drop_databases(s)
    client = redis.Redis.from_url(s.redis_url)
    for key in client.scan_iter(match=f"*{s.feast_project}", count=1000):
        client.delete(key)


def load_uci(s: Settings, shared_days: Path) -> dict:
    """Link the UCI daily files into the landing folder and load every day through the UCI feed."""
    from recomart.datasets.landing import landing_days
    from recomart.tasks.ingest_events import ingest_landing_files

    (s.landing_dir / "uci").mkdir(parents=True, exist_ok=True)
    (s.landing_dir / "uci" / "by-day").symlink_to(shared_days, target_is_directory=True)
    # the loads migrate the warehouse, which creates the catalogue's tables: left empty, dim_products falls
    # back to the order lines
    return ingest_landing_files(s.warehouse_url, s, landing_days(s))


def load_generated(s: Settings) -> dict:
    """Generate the shop data set and load every day through the generated feeds."""
    from recomart.datasets.landing import landing_days, prepare_dataset
    from recomart.tasks.ingest_events import ingest_landing_files

    prepared = prepare_dataset(s)
    summary = ingest_landing_files(s.warehouse_url, s, landing_days(s))  # migrates: the catalogue's tables too
    return {"prepared": prepared, **summary}


# --- measurements ---------------------------------------------------------------
def _marts(dsn: str) -> tuple[datetime, int, int, list[str], pd.DataFrame]:
    with psycopg.connect(dsn) as conn:
        as_of = conn.execute("select max(event_timestamp) from marts.user_features").fetchone()[0]
        # the entities that materialization writes: those with a row in the feature histories
        n_users = conn.execute("select count(distinct user_id) from marts.user_features_history").fetchone()[0]
        n_items = conn.execute("select count(distinct item_id) from marts.item_features_history").fetchone()[0]
        users = [r[0] for r in conn.execute("select user_id from marts.user_features order by user_id")]
        pairs = pd.DataFrame(
            conn.execute("select user_id, item_id from marts.user_item_ratings").fetchall(),
            columns=["user_id", "item_id"],
        )
    return as_of, n_users, n_items, users, pairs


def _python_value(value_type: Any, raw: bytes | None) -> Any:
    """The Python value of a serialized Feast ``ValueProto`` (``None`` when absent or unset)."""
    if raw is None:
        return None
    proto = value_type.FromString(raw)
    kind = proto.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(proto, kind)


def measure_online(store, redis_url: str, user_ids: list[str], item_id: str, batch_runs: int, seed: int) -> dict:
    """Single lookups (Feast, FeatureService object, direct online_read, raw HGETALL) and batches of 100."""
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    service = store.get_feature_service(FEATURE_SERVICE)
    user_refs = service_feature_refs(store, "user_features")
    view = store.get_feature_view("user_features")
    names = [f.name for f in view.features]
    version = store.config.entity_key_serialization_version
    entity_keys = [EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=u)]) for u in user_ids]
    redis_keys = [_redis_key(store.project, key, entity_key_serialization_version=version) for key in entity_keys]
    online_store = store._get_provider().online_store
    client = redis.Redis.from_url(redis_url)

    # the tuned direct path: hashed field names computed once, one HMGET, ValueProto decoding
    fields = [_mmh3(f"{view.name}:{name}") for name in names]

    def decode(values: list[bytes | None]) -> dict[str, Any]:
        return {name: _python_value(Value, raw) for name, raw in zip(names, values, strict=True)}

    # correctness before speed: every path returns the same user's values
    probe = store.get_online_features(features=user_refs, entity_rows=[{"user_id": user_ids[0]}]).to_dict()
    _, direct = online_store.online_read(store.config, view, [entity_keys[0]], list(names))[0]
    assert direct is not None and len(client.hgetall(redis_keys[0])) >= len(names)
    decoded = decode(client.hmget(redis_keys[0], fields))
    assert probe["frequency"][0] == direct["frequency"].int64_val == decoded["frequency"], (probe, direct, decoded)

    single = list(zip(user_ids, entity_keys, redis_keys, strict=True))
    results = {
        "feast": _time_each(
            lambda row: store.get_online_features(features=user_refs, entity_rows=[{"user_id": row[0]}]).to_dict(),
            single,
        ),
        "feast_service_object": _time_each(
            lambda row: store.get_online_features(
                features=service, entity_rows=[{"user_id": row[0], "item_id": item_id}]
            ).to_dict(),
            single,
        ),
        # online_read appends "_ts:<view>" to the list it is given: pass a fresh copy each call
        "feast_online_read": _time_each(
            lambda row: online_store.online_read(store.config, view, [row[1]], list(names)), single
        ),
        "direct_hmget_decode": _time_each(lambda row: decode(client.hmget(row[2], fields)), single),
        "redis": _time_each(lambda row: client.hgetall(row[2]), single),
    }
    rng = np.random.default_rng(seed)
    batches = [list(rng.choice(user_ids, size=100, replace=False)) for _ in range(batch_runs)]
    results["batch100"] = _time_each(
        lambda batch: store.get_online_features(
            features=user_refs, entity_rows=[{"user_id": u} for u in batch]
        ).to_dict(),
        batches,
        warmup=10,
    )
    results["user_feature_refs"] = user_refs
    return results


def _historical_sample(pairs: pd.DataFrame, as_of: datetime, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` (user, item) pairs with label times in the 30 days after ``as_of`` (to the second)."""
    rng = np.random.default_rng(seed)
    sample = pairs.iloc[rng.choice(len(pairs), size=rows, replace=len(pairs) < rows)].reset_index(drop=True)
    offsets = pd.to_timedelta(rng.integers(0, 30 * 86400, size=rows), unit="s")
    sample["event_timestamp"] = pd.Timestamp(as_of).tz_convert(UTC) + offsets
    return sample


def _same_features(ours: pd.DataFrame, feast_rows: pd.DataFrame) -> bool:
    """Whether :func:`training_features` and Feast returned the same values (rows matched by ``_row``)."""
    feast_rows = feast_rows.set_index("_row").sort_index()
    ours = ours.set_index("_row").sort_index()
    for column in feast_rows.columns.difference(["user_id", "item_id", "event_timestamp"]):
        theirs, mine = feast_rows[column], ours[column]
        if isinstance(mine.dtype, pd.DatetimeTZDtype):  # Feast: naive UTC
            mine, theirs = mine.astype("datetime64[ns, UTC]"), pd.to_datetime(theirs, utc=True).astype(mine.dtype)
        if not (mine.isna().equals(theirs.isna()) and (mine[mine.notna()] == theirs[theirs.notna()]).all()):
            return False
    return True


def measure_historical(
    repo: Path, env: dict[str, str], pairs: pd.DataFrame, as_of: datetime, rows: int, seed: int, feast_rows: int
) -> dict:
    """``runs`` timed :func:`training_features` calls for ``rows`` label rows, and Feast on ``feast_rows`` of them.

    The training read is what the ranker and the nightly job call; Feast's ``get_historical_features``
    through the same FeatureService runs once on the first ``feast_rows`` rows and must return the
    same values (``feast_agrees``).
    """
    sample = _historical_sample(pairs, as_of, rows, seed)
    sample["_row"] = np.arange(rows)
    runs = []
    for _ in range(HISTORICAL_RUNS):
        began = time.perf_counter()
        out = training_features(repo, env, sample)
        runs.append(time.perf_counter() - began)
    head = sample.iloc[:feast_rows]
    began = time.perf_counter()
    feast_out = historical_features(repo, env, head)
    feast_seconds = time.perf_counter() - began
    return {
        "runs_s": [round(r, 3) for r in runs],
        "median_s": round(float(np.median(runs)), 3),
        "max_s": round(max(runs), 3),
        "rows_in": rows,
        "rows_out": len(out),
        "distinct_label_times": int(sample["event_timestamp"].nunique()),
        "joined_user_share": round(float(out["frequency"].notna().mean()), 4),
        "joined_item_share": round(float(out["pop_90d"].notna().mean()), 4),
        "feast_rows": feast_rows,
        "feast_get_historical_features_s": round(feast_seconds, 3),
        "feast_agrees": _same_features(out.iloc[:feast_rows], feast_out),
    }


def write_scoring_keys(historical: dict, command: str, load_start: list[float], path: Path = SCORING) -> None:
    """Merge ``historical_10k_median_s`` / ``historical_10k_max_s`` and the run's provenance into scoring.json."""
    figures = json.loads(path.read_text()) if path.exists() else {}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=path.parent).stdout
    figures["historical_10k_median_s"] = historical["median_s"]
    figures["historical_10k_max_s"] = historical["max_s"]
    figures["historical_10k"] = {
        **historical,
        "what": "recomart.features.training_features through recommender_v1, 10k (user, item, label time) rows",
        "command": command,
        "git_commit": commit.strip() or None,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_1_5_15_at_start": load_start,
        "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        "target_median_s": 5.0,
        "target_max_over_median": 2.0,
    }
    path.write_text(json.dumps(figures, indent=2) + "\n")


def machine_info(s: Settings) -> dict:
    import feast

    meminfo = Path("/proc/meminfo")
    total_kb = (
        next((int(line.split()[1]) for line in meminfo.read_text().splitlines() if line.startswith("MemTotal")), 0)
        if meminfo.exists()
        else 0
    )
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    with psycopg.connect(s.pg_url("postgres")) as conn:
        pg_version = conn.execute("show server_version").fetchone()[0]
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(total_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "feast": feast.__version__,
        "postgres": pg_version,
        "redis": redis.Redis.from_url(s.redis_url).info("server")["redis_version"],
    }


def run(
    s: Settings,
    shared_days: Path | None,
    batch_runs: int,
    historical_rows: int,
    seed: int,
    work: Path,
    reuse: bool = False,
    feast_rows: int = 1_000,
) -> dict:
    """Load, build, apply, materialize and measure on the scratch deployment ``s``."""
    env = tool_env(s)
    began = time.perf_counter()
    if reuse:
        _log(f"reusing the loaded and built deployment {s.db_prefix}")
        loaded: dict = {"reused": True}
        data_set = {"name": s.dataset, "source": str(shared_days), "load": loaded}
    elif shared_days is not None:
        _log(f"loading UCI Online Retail from {shared_days} into {s.warehouse_db}")
        loaded = load_uci(s, shared_days)
        data_set = {"name": "uci", "source": str(shared_days), "load": loaded}
    else:
        _log(f"generating the shop data set ({s.generator_users:,} users)")
        loaded = load_generated(s)
        data_set = {"name": "generated", "users": s.generator_users, "load": loaded}
    load_s = time.perf_counter() - began
    _log(f"loaded in {load_s:.1f}s: {loaded.get('records_loaded')} records; dbt build (dataset={s.dataset})")
    dbt_s = 0.0
    if not reuse:
        dbt_s = dbt_build(
            s.dbt_project_dir,
            env,
            vars={"dataset": s.dataset},
            log=lambda _line: None,
            target_path=work / "target",
            log_path=work / "logs",
        ).elapsed_s
    as_of, n_users, n_items, users, pairs = _marts(s.warehouse_url)
    _log(
        f"dbt build {dbt_s:.1f}s: {n_users:,} users, {n_items:,} items, {len(pairs):,} pairs, "
        f"as_of {as_of.isoformat()}; feast apply"
    )
    if not reuse:
        apply(s.feature_repo_dir, env)
    store = feature_store(s.feature_repo_dir, env)
    span = feature_history_span(s.warehouse_url)
    assert span is not None, "empty feature histories"
    materialized = materialize_window(s.feature_repo_dir, env, *span)
    rows = n_users + n_items
    _log(f"materialized {rows:,} rows in {materialized.seconds:.2f}s; online lookups")

    rng = np.random.default_rng(seed)
    sample = [str(u) for u in rng.choice(users, size=min(len(users), 1000), replace=False)]
    online = measure_online(store, s.redis_url, sample, str(pairs["item_id"].iloc[0]), batch_runs, seed)
    _log(
        f"feast p50 {online['feast']['p50_ms']} ms p99 {online['feast']['p99_ms']} ms; "
        f"redis p50 {online['redis']['p50_ms']} ms p99 {online['redis']['p99_ms']} ms; historical"
    )
    historical = measure_historical(s.feature_repo_dir, env, pairs, as_of, historical_rows, seed, feast_rows)
    _log(
        f"training_features {historical_rows:,} rows: runs {historical['runs_s']} s; Feast {feast_rows:,} rows "
        f"{historical['feast_get_historical_features_s']} s, agrees: {historical['feast_agrees']}"
    )
    return {
        "feast_p50_ms": online["feast"]["p50_ms"],
        "feast_p99_ms": online["feast"]["p99_ms"],
        "redis_p50_ms": online["redis"]["p50_ms"],
        "redis_p99_ms": online["redis"]["p99_ms"],
        "batch100_p50_ms": online["batch100"]["p50_ms"],
        "batch100_p99_ms": online["batch100"]["p99_ms"],
        "materialize_rows_per_s": round(rows / materialized.seconds, 1),
        "historical_10k_median_s": historical["median_s"],
        "historical_10k_max_s": historical["max_s"],
        "feast_historical_s": historical["feast_get_historical_features_s"],
        "feast_historical_rows": feast_rows,
        "target_p99_ms": 2.0,
        "feast_p99_meets_target": online["feast"]["p99_ms"] <= 2.0,
        "details": {
            "single_lookup": {
                k: online[k]
                for k in ("feast", "feast_service_object", "feast_online_read", "direct_hmget_decode", "redis")
            },
            "batch100": online["batch100"],
            "user_feature_refs": online["user_feature_refs"],
            "distinct_users": len(sample),
            "materialize": {
                "rows": rows,
                "user_rows": n_users,
                "item_rows": n_items,
                "seconds": round(materialized.seconds, 3),
                "window": [as_of.isoformat()] * 2,
            },
            "historical": historical,
            "dbt_build_s": dbt_s,
            "load_s": round(load_s, 1),
        },
        "data_set": data_set,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--generated-users",
        type=int,
        default=100_000,
        help="users of the generated data set (used only without ../shared/data)",
    )
    parser.add_argument("--batch-runs", type=int, default=300, help="timed batches of 100 users")
    parser.add_argument("--historical-rows", type=int, default=10_000, help="rows of the training_features runs")
    parser.add_argument(
        "--feast-rows", type=int, default=1_000, help="rows of the one get_historical_features run (equality check)"
    )
    parser.add_argument("--scoring-out", type=Path, default=SCORING, help="scoring.json to merge historical_10k_* into")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases and Redis keys")
    parser.add_argument("--reuse", metavar="PREFIX", help="measure a kept deployment again (no load/build/apply)")
    args = parser.parse_args(argv)

    base = settings()
    shared = base.project_root.parent / "shared" / "data" / UCI_DAYS
    shared_days = shared.resolve() if shared.is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="recomart_bench_"))
    s = scratch_settings(base, work / "landing", "uci" if shared_days else "generated", args.generated_users)
    if args.reuse:
        s = replace(s, db_prefix=args.reuse, feast_project=args.reuse, model_name=args.reuse)
    _log(f"scratch deployment {s.db_prefix} (Feast project {s.feast_project}), work dir {work}")
    services.ensure_services(s)
    try:
        load_start = [round(x, 2) for x in os.getloadavg()]
        figures = run(
            s,
            shared_days,
            args.batch_runs,
            args.historical_rows,
            args.seed,
            work,
            reuse=bool(args.reuse),
            feast_rows=args.feast_rows,
        )
        figures.update(
            {
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": COMMAND + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
                "machine": machine_info(s),
            }
        )
    finally:
        if not (args.keep or args.reuse):
            drop_scratch(s)
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    write_scoring_keys(figures["details"]["historical"], figures["command"], load_start, args.scoring_out)
    _log(f"wrote {args.out}")
    print(json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
