"""Serving benchmark: a real uvicorn (>= 2 workers) driven by hey (fixed offered load) and wrk (max throughput).

Setup: the generated shop (default 100,000 users x 20,000 items), the hybrid fitted on it, one
generation published by the nightly code into a private database and copied to Redis. Requests go
over ``--distinct`` users (``--unknown-share`` of them unknown) and items. Floors of the same run:
a bare route of the same server returning constant JSON of the recommendations' size, and
``redis-benchmark`` GET of a payload of that size. Debian's ``hey``, ``wrk`` and ``redis-tools`` are
installed with apt-get when missing (as root). The stream figures (``freshness``, ``intake``,
``stream``, ``rerank_share``) come from the stream simulator's run (``--stream-results``).

hey takes one URL, so the fixed load is ``--concurrency`` hey processes of one connection each,
every one on its own user or item at ``rate / concurrency`` requests/s; their latencies are pooled.
wrk's Lua script walks all the distinct paths.

    .venv/bin/python -m benchmarks.serving --smoke          # small and short: a check, not the result
    .venv/bin/python -m benchmarks.serving --out benchmarks/results/serving.json --stream-results PATH
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
import redis

from benchmarks.serving_data import fit_hybrid, generated_shop, history_of
from recomart import services
from recomart.config import Settings, load_settings
from recomart.features import apply
from recomart.recommend.cache import cache_layout, publish_cache
from recomart.recommend.run import OUTPUT_COLUMNS, publish_generation
from recomart.serving.server import server_env, uvicorn_args
from recomart.tools import tool_env

ROOT = Path(__file__).resolve().parents[1]
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


def prepare(s: Settings, users: int, items: int, days: int, seed: int) -> dict:
    """Generate the shop, fit the hybrid, publish one generation to Postgres and Redis."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recomart-bench-shop-") as tmp:
        shop = generated_shop(Path(tmp), users, items, days, seed)
    history = history_of(shop.events)
    recommender = fit_hybrid(history, shop)
    recs = recommender.rank(shop.users, history, k=10).assign(model_version=None)
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
    generation = publish_generation(s.warehouse_url, recs[OUTPUT_COLUMNS], recommender, model_version=None)
    client = redis.Redis.from_url(s.redis_url)
    cached = publish_cache(s.warehouse_url, client, cache_layout(s.db_prefix))
    apply(s.feature_repo_dir, tool_env(s))
    return {
        "generation_id": generation.generation_id,
        "users": shop.users["user_id"].tolist(),
        "items": shop.products["item_id"].astype(str).tolist(),
        "redis_keys": cached.written_keys,
        "redis_bytes": cached.written_bytes,
        "redis_copy_s": round(cached.seconds, 2),
        "prepare_s": round(time.perf_counter() - began, 1),
    }


def paths(data: dict, distinct: int, unknown_share: float, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    unknown = int(distinct * unknown_share)
    users = rng.sample(data["users"], min(distinct - unknown, len(data["users"])))
    users += [f"unknown-{n}" for n in range(unknown)]
    rng.shuffle(users)
    items = rng.sample(data["items"], min(distinct, len(data["items"])))
    return {
        "recommendations": [f"/v1/users/{user}/recommendations?k=10" for user in users],
        "similar": [f"/v1/items/{item}/similar?k=10" for item in items],
    }


def hey_fixed_load(base: str, route_paths: list[str], rate: int, concurrency: int, duration_s: int) -> dict:
    """``concurrency`` hey processes of one connection at ``rate / concurrency`` req/s each, latencies pooled."""
    per_process = max(rate // concurrency, 1)
    procs = [
        subprocess.Popen(
            ["hey", "-z", f"{duration_s}s", "-c", "1", "-q", str(per_process), "-o", "csv", base + path],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for path in route_paths[:concurrency]
    ]
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
        "distinct_paths": len(procs),
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
        "distinct_paths": len(route_paths),
    }


def redis_floor(s: Settings, size: int, requests: int) -> dict:
    """``redis-benchmark`` GET of a value of ``size`` bytes (the raw Redis floor)."""
    url = s.redis_url.split("://", 1)[1]
    auth, _, hostport = url.rpartition("@")
    host, port = hostport.split("/", 1)[0].split(":")
    args = ["redis-benchmark", "-h", host, "-p", port, "-t", "get", "-d", str(size), "-n", str(requests), "-c", "32"]
    if auth.strip(":"):
        args += ["-a", auth.split(":", 1)[1]]
    out = subprocess.run(args + ["--csv"], capture_output=True, text=True, check=True, timeout=300).stdout
    row = [line for line in out.splitlines() if line.startswith('"GET"')][0]
    fields = [f.strip('"') for f in row.split(",")]
    return {"rps": float(fields[1]), "p50_ms": float(fields[4]), "p99_ms": float(fields[6]), "payload_bytes": size}


def run(args: argparse.Namespace) -> dict:
    ensure_tools()
    s = load_settings({**os.environ, "RECOMART_DB_PREFIX": args.prefix, "RECOMART_FEAST_PROJECT": args.prefix})
    services.ensure_services(s)
    data = prepare(s, args.users, args.items, args.days, args.seed)
    port = args.port
    env = {**server_env(s, port), "RECOMART_DB_PREFIX": args.prefix, "RECOMART_FEAST_PROJECT": args.prefix}
    server = subprocess.Popen(uvicorn_args(s, "127.0.0.1", port, args.workers), env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        route_paths = paths(data, args.distinct, args.unknown_share, args.seed)
        size = len(httpx.get(base + route_paths["recommendations"][0]).content)
        route_paths["bare"] = [f"/v1/_floor?size={size}"]
        result: dict = {}
        with tempfile.TemporaryDirectory(prefix="recomart-bench-wrk-") as tmp:
            for route in ("recommendations", "similar"):
                fixed = hey_fixed_load(base, route_paths[route], args.rate, args.concurrency, args.duration)
                result[route] = {
                    **fixed,
                    **wrk_max(base, route_paths[route], args.concurrency, args.wrk_duration, Path(tmp)),
                }
            result["bare"] = wrk_max(base, route_paths["bare"], args.concurrency, args.wrk_duration, Path(tmp))
        result["bare"]["payload_bytes"] = size
    finally:
        server.terminate()
        server.wait(timeout=30)
    result["redis_get"] = redis_floor(s, size, args.redis_requests)
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
    parser.add_argument("--prefix", default="bench_serving")
    parser.add_argument("--stream-results", type=Path, help="JSON of the stream simulator's run to merge")
    parser.add_argument("--smoke", action="store_true", help="3,000 users x 600 items, 5 s per measurement")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        args.users, args.items, args.days, args.distinct = 3000, 600, 30, 1000
        args.duration, args.wrk_duration, args.redis_requests = 5, 5, 20_000
    result = run(args)
    stream = json.loads(args.stream_results.read_text()) if args.stream_results else {}
    for key in ("freshness", "intake", "stream", "rerank_share"):
        result[key] = stream.get(key)
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result.update(
        smoke=args.smoke,
        machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        concurrency=args.concurrency,
        duration_s=args.duration,
        workers=args.workers,
        shop={"users": args.users, "items": args.items, "distinct": args.distinct, "unknown_share": args.unknown_share},
        git_commit=git,
    )
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
