"""Serving benchmark: a real uvicorn (>= 2 workers) driven by hey (fixed offered load) and wrk (max throughput).

Setup: the generated shop (default 100,000 users x 20,000 items), the hybrid fitted on it, one
generation published by the nightly code into a private database and copied to Redis. Requests go
over ``--distinct`` users (``--unknown-share`` of them unknown; the known ones are the shoppers the
simulator sends events for during the run, first come first, as a storefront asks for the lists of
the users browsing it) and items. Floors of the same run:
a bare route of the same server returning constant JSON of the recommendations' size, and
``redis-benchmark`` GET of a payload of that size. Debian's ``hey``, ``wrk`` and ``redis-tools`` are
installed with apt-get when missing (as root). The fitted hybrid is registered as ``@champion`` of a
private model name, so the API re-ranks with fresh sessions.

The stream worker runs, and ``./recomart simulate`` sends the shop's next days at ``--stream-rate``
(200) events/s to the API throughout; ``rerank_share`` is the share of answered recommendation
requests that were re-ranked with fresh events (the API's own counters, before and after the fixed
load and wrk runs of that route); ``<route>.list_sources``: the share of that route's list reads
answered from each worker's memory of earlier Redis reads, from Redis, from Postgres, or found absent
(cold start), over the same runs (the distinct paths repeat, as a storefront's shoppers ask again).

**Freshness** (``freshness``): a second API process (``--workers 1`` on port ``--port + 1``) serves the
same deployment. Each probe picks a known user whose list carries no session boost yet (an unknown id
when 50 tries find none), so the viewed item goes to the top (with a long session it could rank below 20),
POSTs a view of a random item to the main server (``--port``) and polls ``/recommendations?k=20`` on
the second process until the item carries a ``session_boost`` (the viewed item and its neighbours are
boosted); from the 202 to that answer, a 10 s timeout counted as 10 s (``timeouts_in_features``: how
many of those had the item in the user's online session features by then). ``worker_during_probes``:
the stream worker's own counters over the probes (its ``/metrics`` on ``--port + 2``): micro-batches,
mean Postgres store and Feast push ms per batch (the store split by step in ``store_phase_mean_ms``),
batches over 250 ms, retried attempts, and its lag at the first and last probe (a backlog left by the
load phases would delay the probes);
``worker_warnings``: its WARNING log lines over the whole run. The intake, lag and
feature-freshness figures (``intake``, ``stream``) come from ``benchmarks/stream.py``'s run (``--stream-results``).

hey takes one URL, so the fixed load is ``--concurrency`` hey processes of one connection each,
every one on its own user or item at ``rate / concurrency`` requests/s; their latencies are pooled
(``fixed_load_paths``: that many users or items).  wrk's Lua script walks all the distinct paths
(``wrk_paths``).  Runs before these two keys recorded one ``distinct_paths``, wrk's, which hid hey's.

    .venv/bin/python -m benchmarks.serving --smoke          # small and short: a check, not the result
    .venv/bin/python -m benchmarks.serving --out benchmarks/results/serving.json --stream-results PATH
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psycopg
import redis

from benchmarks.private_deployment import private_deployment
from benchmarks.results_file import run_metadata, write_result
from benchmarks.serving_data import fit_hybrid, generated_shop, history_of
from recomart.config import Settings
from recomart.features import apply
from recomart.model.registry import register_recommender, set_champion
from recomart.recommend.cache import cache_layout, publish_cache
from recomart.recommend.run import OUTPUT_COLUMNS, publish_generation
from recomart.serving.server import server_env, uvicorn_args
from recomart.stream.batch import STORE_PHASES
from recomart.stream.intake import API_KEY_HEADER, api_key
from recomart.stream.simulate import shop_events
from recomart.stream.worker import worker_args
from recomart.tools import tool_env

DEBIAN_TOOLS = {"hey": "hey", "wrk": "wrk", "redis-benchmark": "redis-tools"}


def ensure_tools() -> None:
    """Install Debian's hey, wrk and redis-tools if a command is missing (needs root and apt-get)."""
    missing = sorted({package for command, package in DEBIAN_TOOLS.items() if shutil.which(command) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(
            f"missing {', '.join(missing)}: install Debian's packages (apt-get install {' '.join(missing)})"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", *missing], check=True, env=env)


def prepare(s: Settings, users: int, items: int, days: int, seed: int, model_dir: Path) -> dict:
    """Generate the shop, fit the hybrid, register it as ``@champion`` (its pyfunc saved in ``model_dir``),
    publish one generation to Postgres and Redis."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recomart-bench-shop-") as tmp:
        shop = generated_shop(Path(tmp), users, items, days, seed)
    history = history_of(shop.events)
    recommender = fit_hybrid(history, shop)
    version = register_recommender(s.mlflow_tracking_uri, s.model_name, recommender, model_dir, {"benchmark": True})
    set_champion(s.mlflow_tracking_uri, s.model_name, version)
    recs = recommender.rank(shop.users, history, k=10).assign(model_version=version)
    with psycopg.connect(s.warehouse_url, autocommit=True) as conn:
        conn.execute("create schema if not exists marts; drop table if exists marts.dim_products")
        conn.execute(
            "create table marts.dim_products (item_id text primary key, title text, description text,"
            " category text, brand text, price numeric)"
        )
        columns = ["item_id", "title", "description", "category", "brand", "price"]
        with conn.cursor().copy(f"copy marts.dim_products ({', '.join(columns)}) from stdin") as copy:
            for row in shop.products[columns].itertuples(index=False):
                copy.write_row(row)
    generation = publish_generation(s.warehouse_url, recs[OUTPUT_COLUMNS], recommender, model_version=version)
    client = redis.Redis.from_url(s.redis_url)
    cached = publish_cache(s.warehouse_url, client, cache_layout(s.db_prefix))
    apply(s.feature_repo_dir, tool_env(s))
    return {
        "generation_id": generation.generation_id,
        "model_version": version,
        "users": shop.users["user_id"].tolist(),
        "items": shop.products["item_id"].astype(str).tolist(),
        "redis_keys": cached.written_keys,
        "redis_bytes": cached.written_bytes,
        "redis_copy_s": round(cached.seconds, 2),
        "prepare_s": round(time.perf_counter() - began, 1),
    }


def active_users(s: Settings, events: int) -> list[str]:
    """The distinct users of the simulator's first ``events`` events, in order of first appearance."""
    seen: dict[str, None] = {}
    for sent, event in enumerate(shop_events(s, "bench")):
        if sent >= events:
            break
        seen.setdefault(event["user_id"], None)
    return list(seen)


def paths(data: dict, distinct: int, unknown_share: float, seed: int, active: list[str]) -> dict[str, list[str]]:
    """Request paths: known users are the shoppers the simulator sends events for (``active``, in order;
    topped up at random), so requests meet fresh sessions as a storefront's would; items at random."""
    rng = random.Random(seed)
    unknown = int(distinct * unknown_share)
    known = distinct - unknown
    users = active[:known]
    chosen = set(users)
    users += rng.sample([u for u in data["users"] if u not in chosen], min(known - len(users), len(data["users"])))
    users += [f"unknown-{n}" for n in range(unknown)]
    rng.shuffle(users)
    items = rng.sample(data["items"], min(distinct, len(data["items"])))
    return {
        "recommendations": [f"/v1/users/{user}/recommendations?k=10" for user in users],
        "similar": [f"/v1/items/{item}/similar?k=10" for item in items],
    }


def hey_fixed_load(
    base: str, route_paths: list[str], rate: int, concurrency: int, duration_s: int, staggered: bool = True
) -> dict:
    """``concurrency`` hey processes of one connection at ``rate / concurrency`` req/s each, latencies pooled.

    Each hey sends on its own ticker, from its start. Started together, the tickers tick together, and
    the server gets ``concurrency`` requests at once every tick rather than ``rate`` a second evenly;
    ``staggered`` starts process ``n`` ``n / concurrency`` of a tick after the first, so that the
    arrivals are spread over the tick (to within the processes' start-up jitter)."""
    per_process = max(rate // concurrency, 1)
    gap_s = 1.0 / per_process / concurrency if staggered else 0.0
    began, procs = time.monotonic(), []
    for n, path in enumerate(route_paths[:concurrency]):
        time.sleep(max(0.0, began + n * gap_s - time.monotonic()))
        procs.append(
            subprocess.Popen(
                ["hey", "-z", f"{duration_s}s", "-c", "1", "-q", str(per_process), "-o", "csv", base + path],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    latencies, ok, total = [], 0, 0
    for proc in procs:
        out, _ = proc.communicate(timeout=duration_s + 60)
        for line in out.splitlines()[1:]:
            fields = line.split(",")
            total += 1
            if len(fields) > 6 and fields[6] == "200":
                ok += 1
                latencies.append(float(fields[0]) * 1000)
    values = np.asarray(latencies) if latencies else np.zeros(1)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "offered_rps": per_process * len(procs),
        "achieved_rps": round(total / duration_s, 1),
        "answered_share": round(ok / total, 4) if total else 0.0,
        "requests": total,
        "fixed_load_paths": len(procs),
    }


def wrk_max(base: str, route_paths: list[str], concurrency: int, duration_s: int, folder: Path) -> dict:
    """wrk at ``concurrency`` connections over every path (Lua script); requests/s and latency."""
    listing = folder / "paths.txt"
    listing.write_text("\n".join(route_paths) + "\n")
    script = folder / "paths.lua"
    script.write_text(
        f'local paths = {{}}\nfor line in io.lines("{listing}") do paths[#paths + 1] = line end\n'
        "local n = 0\nrequest = function()\n  n = n % #paths + 1\n"
        "  return wrk.format(nil, paths[n])\nend\n"
    )
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(concurrency), "-d", f"{duration_s}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "max_rps": round(rps, 1),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "wrk_paths": len(route_paths),
    }


def redis_floor(s: Settings, size: int, requests: int) -> dict:
    """``redis-benchmark`` GET of a value of ``size`` bytes (the raw Redis floor).

    Its SET test runs first and writes the value (``GET`` alone would read a missing key, a nil reply);
    the key, ``key:__rand_int__`` (no ``-r``: one literal key), is deleted after."""
    url = s.redis_url.split("://", 1)[1]
    auth, _, hostport = url.rpartition("@")
    address, _, db = hostport.partition("/")
    host, port = address.split(":")
    args = ["redis-benchmark", "-h", host, "-p", port, "--dbnum", db or "0", "-t", "set,get", "-d", str(size)]
    args += ["-n", str(requests), "-c", "32"]
    if auth.strip(":"):
        args += ["-a", auth.split(":", 1)[1]]
    out = subprocess.run(args + ["--csv"], capture_output=True, text=True, check=True, timeout=300).stdout
    with redis.Redis.from_url(s.redis_url) as client:
        client.delete("key:__rand_int__")
    row = [line for line in out.splitlines() if line.startswith('"GET"')][0]
    fields = [f.strip('"') for f in row.split(",")]
    return {"rps": float(fields[1]), "p50_ms": float(fields[4]), "p99_ms": float(fields[6]), "payload_bytes": size}


def _metric(base: str, name: str, *labels: str) -> float:
    """Sum of the API's Prometheus samples ``name`` whose labels include every ``labels`` (``'k="v"'``)."""
    total = 0.0
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.split("{", 1)[0] == name and all(label in sample for label in labels):
            total += float(value)
    return total


RECS_ROUTE = "/v1/users/{user_id}/recommendations"


def rerank_counts(base: str) -> tuple[float, float]:
    """(re-ranked responses, answered recommendation requests) so far, from the API's ``/metrics``."""
    answered = _metric(base, "recomart_api_request_seconds_count", f'route="{RECS_ROUTE}"', 'status="200"')
    return _metric(base, "recomart_api_reranked_total"), answered


LIST_SOURCES = ("memory", "redis", "postgres", "cold_start")


def list_source_counts(base: str, route: str) -> dict[str, float]:
    """Lists read so far by ``route`` (``recommendations`` or ``similar``), by where they came from."""
    name = "recomart_api_list_reads_total"
    return {source: _metric(base, name, f'route="{route}"', f'source="{source}"') for source in LIST_SOURCES}


def list_source_shares(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Each source's share of the lists read between two :func:`list_source_counts`."""
    read = {source: after[source] - before[source] for source in LIST_SOURCES}
    total = sum(read.values())
    return {source: round(count / total, 4) if total else None for source, count in read.items()}


WORKER_HISTOGRAMS = {"store": "recomart_stream_worker_batch_seconds", "push": "recomart_stream_worker_push_seconds"}
SLOW_BATCH_LE = "0.25"  # a histogram bucket bound of both: batches slower than this


def worker_counters(metrics_base: str) -> dict[str, float]:
    """The stream worker's counters that explain freshness, from its own ``/metrics`` (``lag_s``: the
    age of the oldest entry not acknowledged, a gauge)."""
    counters = {"batches": _metric(metrics_base, "recomart_stream_worker_batches_total")}
    counters["lag_s"] = _metric(metrics_base, "recomart_stream_worker_lag_seconds")
    counters["retries"] = _metric(metrics_base, "recomart_stream_worker_retries_total")
    for part, name in WORKER_HISTOGRAMS.items():
        counters[f"{part}_count"] = _metric(metrics_base, f"{name}_count")
        counters[f"{part}_sum"] = _metric(metrics_base, f"{name}_sum")
        counters[f"{part}_fast"] = _metric(metrics_base, f"{name}_bucket", f'le="{SLOW_BATCH_LE}"')
    for phase in STORE_PHASES:
        counters[f"phase_{phase}"] = _metric(
            metrics_base, "recomart_stream_worker_store_phase_seconds_total", f'phase="{phase}"'
        )
    return counters


def worker_during(before: dict[str, float], after: dict[str, float]) -> dict:
    """Per micro-batch over a phase: mean store and push ms, batches slower than 250 ms, retries; the
    worker's lag at the phase's start and end."""
    delta = {name: after[name] - before[name] for name in after}
    summary: dict = {"batches": int(delta["batches"]), "retries": int(delta["retries"])}
    summary["lag_s_at_start"], summary["lag_s_at_end"] = round(before["lag_s"], 3), round(after["lag_s"], 3)
    for part in WORKER_HISTOGRAMS:
        count = delta[f"{part}_count"]
        summary[f"{part}_mean_ms"] = round(1000 * delta[f"{part}_sum"] / count, 1) if count else None
        summary[f"{part}_over_250ms"] = int(count - delta[f"{part}_fast"])
    batches = delta["batches"]
    summary["store_phase_mean_ms"] = {
        phase: round(1000 * delta[f"phase_{phase}"] / batches, 1) if batches else None for phase in STORE_PHASES
    }
    return summary


def _boosted(client: httpx.Client, user: str) -> set[str]:
    body = client.get(f"/v1/users/{user}/recommendations", params={"k": 20}).json()
    return {item["item_id"] for item in body["items"] if "session_boost" in item["reasons"]}


def _probe_user(reader: httpx.Client, rng: random.Random, users: list[str]) -> str:
    """A known user whose list has no session boost now (so the viewed item goes to the top when it is
    seen), else, after 50 tries, an id unknown to the generation (its cold-start list is re-ranked too)."""
    for _ in range(50):
        user = rng.choice(users)
        if not _boosted(reader, user):
            return user
    return f"probe-{rng.getrandbits(32):x}"


def freshness(post_base: str, read_base: str, key: str, data: dict, probes: int, seed: int) -> dict:
    """Probes: 202 of a view posted to one API process -> the item boosted in the list another serves."""
    rng = random.Random(seed + 1)
    headers = {API_KEY_HEADER: key}
    times, known, in_features = [], 0, 0
    with (
        httpx.Client(base_url=post_base, headers=headers, timeout=10) as poster,
        httpx.Client(base_url=read_base, timeout=10) as reader,
    ):
        for _ in range(probes):
            user = _probe_user(reader, rng, data["users"])
            known += not user.startswith("probe-")
            item = rng.choice(data["items"])
            # a fresh id: a seeded one repeats across runs on the same database and is dropped as a redelivery
            event = {"event_id": f"probe-{uuid.uuid4().hex}", "event_type": "view", "user_id": user}
            response = poster.post("/v1/events", json={**event, "item_id": item})
            accepted, elapsed = time.perf_counter(), 10.0
            assert response.status_code == 202, response.text
            while time.perf_counter() - accepted < 10.0:
                if item in _boosted(reader, user):
                    elapsed = time.perf_counter() - accepted
                    break
                time.sleep(0.01)
            times.append(elapsed * 1000)
            if elapsed >= 10.0:
                session = reader.get(f"/v1/users/{user}/features").json()["views"]["user_session_features"]
                in_features += item in (session["features"].get("viewed_item_ids") or [])
            time.sleep(max(0.0, 1.0 - elapsed))
    values = np.asarray(times)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p95_ms": round(float(np.percentile(values, 95)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
        "probes": probes,
        "timeouts": int((values >= 10_000).sum()),
        "timeouts_in_features": in_features,
        "known_user_probes": known,
    }


def _wait_ready(base: str, timeout_s: float = 180) -> None:
    """Until ``/readyz`` answers 200 with the champion loaded (a few reads: any worker may answer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            bodies = [httpx.get(f"{base}/readyz", timeout=2) for _ in range(4)]
            if all(b.status_code == 200 and b.json()["model_version"] for b in bodies):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base} not ready with @champion within {timeout_s} s")


def _warnings(log: Path, keep: int = 5) -> dict:
    """How many WARNING lines the stream worker logged, and the last ``keep`` of them."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if " WARNING " in line]
    return {"count": len(lines), "last": [line[:300] for line in lines[-keep:]]}


def _simulator(env: dict[str, str], base: str, rate: int) -> subprocess.Popen:
    """``./recomart simulate`` at ``rate`` events/s for up to an hour (stopped by the caller)."""
    command = [sys.executable, "-m", "recomart.cli", "simulate", "--rate", str(rate), "--minutes", "60"]
    return subprocess.Popen([*command, "--url", base], env=env, stdout=subprocess.DEVNULL)


def measure(args: argparse.Namespace, s: Settings, base: str, data: dict, folder: Path) -> dict:
    """hey and wrk per route, the bare route, and the re-ranked share of the recommendations route."""
    stream_s = args.warmup + 2 * (args.duration + args.wrk_duration) + args.wrk_duration
    active = active_users(s, int(args.stream_rate * stream_s))
    route_paths = paths(data, args.distinct, args.unknown_share, args.seed, active)
    size = len(httpx.get(base + route_paths["recommendations"][0]).content)
    route_paths["bare"] = [f"/v1/_floor?size={size}"]
    result: dict = {}
    for route in ("recommendations", "similar"):
        counts, sources = rerank_counts(base), list_source_counts(base, route)
        fixed = hey_fixed_load(base, route_paths[route], args.rate, args.concurrency, args.duration)
        result[route] = {**fixed, **wrk_max(base, route_paths[route], args.concurrency, args.wrk_duration, folder)}
        result[route]["list_sources"] = list_source_shares(sources, list_source_counts(base, route))
        if route == "recommendations":
            reranked, answered = (b - a for a, b in zip(counts, rerank_counts(base), strict=True))
            result["rerank_share"] = round(reranked / answered, 4) if answered else None
    result["bare"] = wrk_max(base, route_paths["bare"], args.concurrency, args.wrk_duration, folder)
    result["bare"]["payload_bytes"] = size
    return result


def run(args: argparse.Namespace) -> dict:
    ensure_tools()
    shop_env = {
        "RECOMART_USERS": str(args.users), "RECOMART_ITEMS": str(args.items), "RECOMART_DAYS": str(args.days),
        "RECOMART_SEED": str(args.seed),
    }  # fmt: skip
    with private_deployment(args.prefix, **shop_env) as s:
        result = _serve_and_measure(args, s, shop_env)
        size = result["bare"]["payload_bytes"]
        result["redis_get"] = redis_floor(s, size, args.redis_requests)
        result["deployment"] = s.db_prefix  # dropped at the end, with its Redis keys and state folder
    return result


def _serve_and_measure(args: argparse.Namespace, s: Settings, shop_env: dict[str, str]) -> dict:
    """Prepare the shop, start the API (two servers), the stream worker and the simulator, measure."""
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="recomart-bench-serving-") as tmp:
        data = prepare(s, args.users, args.items, args.days, args.seed, Path(tmp) / "model")
        port, fresh_port = args.port, args.port + 1
        base, fresh_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{fresh_port}"
        try:
            for at, workers in ((port, args.workers), (fresh_port, 1)):
                env = {**server_env(s, at), **shop_env}
                processes.append(
                    subprocess.Popen(uvicorn_args(s, "127.0.0.1", at, workers), env=env, stderr=subprocess.DEVNULL)
                )
            tools = {**tool_env(s), **shop_env}
            worker_metrics = f"http://127.0.0.1:{args.port + 2}"
            worker_log = Path(tmp) / "stream-worker.log"
            with worker_log.open("wb") as log_file:  # the child keeps its own descriptor
                worker_env = {**tools, "RECOMART_STREAM_METRICS_PORT": str(args.port + 2)}
                processes.append(subprocess.Popen(worker_args(), env=worker_env, stdout=log_file, stderr=log_file))
            _wait_ready(base)
            _wait_ready(fresh_base)
            processes.append(_simulator(tools, base, args.stream_rate))
            time.sleep(args.warmup)  # sessions build up before the measurements
            result = measure(args, s, base, data, Path(tmp))
            before = worker_counters(worker_metrics)
            probes = freshness(base, fresh_base, api_key(s), data, args.probes, args.seed)
            result["freshness"] = {
                **probes,
                "worker_during_probes": worker_during(before, worker_counters(worker_metrics)),
                "worker_warnings": _warnings(worker_log),
                "posted_to": f"port {port} ({args.workers} uvicorn workers)",
                "read_from": f"port {fresh_port} (another uvicorn process, 1 worker)",
                "background_rate": args.stream_rate,
            }
            result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=30)
    return {**result, "setup": {k: v for k, v in data.items() if k not in ("users", "items")}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--distinct", type=int, default=10_000)
    parser.add_argument("--unknown-share", type=float, default=0.1)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=int, default=60, help="seconds of fixed load per route (hey)")
    parser.add_argument("--wrk-duration", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--redis-requests", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--prefix", default="bench_serving", help="tag of the private deployment (a suffix is added)")
    parser.add_argument("--stream-rate", type=int, default=200, help="simulator events/s during the run")
    parser.add_argument("--warmup", type=int, default=30, help="seconds of simulated traffic before measuring")
    parser.add_argument("--probes", type=int, default=100, help="freshness probes (about one per second)")
    parser.add_argument("--stream-results", type=Path, help="benchmarks/stream.py's JSON (intake, stream lag)")
    parser.add_argument("--smoke", action="store_true", help="3,000 users x 600 items, 5 s per measurement")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--note", help="conditions of the run worth keeping with its figures (recorded as given)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.users, args.items, args.days, args.distinct = 3000, 600, 30, 1000
        args.duration, args.wrk_duration, args.redis_requests = 5, 5, 20_000
        args.warmup, args.probes = 10, 30
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    result = run(args)
    stream = json.loads(args.stream_results.read_text()) if args.stream_results else {}
    for key in ("intake", "stream"):
        result[key] = stream.get(key)
    result.update(
        **run_metadata(),
        note=args.note,
        smoke=args.smoke,
        loadavg_start=loadavg_start,
        concurrency=args.concurrency,
        duration_s=args.duration,
        workers=args.workers,
        shop={"users": args.users, "items": args.items, "distinct": args.distinct, "unknown_share": args.unknown_share},
    )
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
