"""Speed-layer benchmark: event intake (AOF ``everysec`` and ``always``), worker lag at 2,000 events/s,
and how soon a posted event is in the user's online session features.

Everything runs on a private deployment in a temporary folder (embedded Postgres and Redis on free
ports, Feast applied, the API with ``--workers`` uvicorn workers, one stream worker process), so the
Redis fsync setting can be changed without touching anyone else's server.

- **intake**: Debian's ``hey`` (installed when missing, as ``benchmarks.serving`` does) posts batches of
  100 events for ``--intake-seconds`` at concurrency ``--intake-concurrency``; events/s = 100 x the
  202 answers per second. Run once with ``appendfsync everysec`` and once with ``always`` (``CONFIG SET``).
- **stream lag**: ``./recomart simulate --rate 2000`` for ``--lag-seconds`` while the stream's lag (age
  of the oldest unacknowledged entry, ``recomart.stream.lag``) is sampled every 0.25 s.
- **feature freshness**: with the simulator at 200 events/s, probes post one view each and poll
  ``GET /v1/users/{id}/features`` until the item is in ``viewed_item_ids`` (10 s timeout counted as 10 s).
  This is the speed layer's part of the issue's freshness (the re-ranked list needs a live generation
  and ``@champion``, which ``benchmarks/serving.py`` sets up).

    .venv/bin/python -m benchmarks.stream --out benchmarks/results/stream.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import redis

from benchmarks.results_file import write_result
from benchmarks.serving import ensure_tools
from recomart import services
from recomart.config import Settings, load_settings
from recomart.features import apply
from recomart.netcheck import free_port
from recomart.serving.server import server_env, uvicorn_args
from recomart.stream.events import stream_layout
from recomart.stream.intake import API_KEY_HEADER, api_key
from recomart.stream.lag import stream_lag
from recomart.stream.worker import worker_args
from recomart.tools import tool_env

ROOT = Path(__file__).resolve().parents[1]


def _wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def intake(s: Settings, base: str, seconds: int, concurrency: int, folder: Path) -> dict:
    """hey posting batches of 100 events (the same ids every time: the worker drops the repeats)."""
    body = folder / "batch.json"
    batch = [
        {"event_id": f"bench-{n}", "event_type": "view", "user_id": f"bu{n % 50}", "item_id": f"bi{n}"}
        for n in range(100)
    ]
    body.write_text(json.dumps({"events": batch}))
    command = [
        "hey", "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", "application/json",
        "-H", f"{API_KEY_HEADER}: {api_key(s)}", "-D", str(body), f"{base}/v1/events",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=True).stdout
    accepted = sum(int(n) for n in re.findall(r"\[202\]\s+(\d+) responses", out))
    total = sum(int(n) for n in re.findall(r"\[\d{3}\]\s+(\d+) responses", out))
    p99 = re.search(r"99%+ in ([\d.]+) secs", out)
    return {
        "events_per_s": round(accepted * 100 / seconds, 1),
        "requests": total,
        "accepted_share": round(accepted / total, 4) if total else 0.0,
        "p99_ms": round(float(p99.group(1)) * 1000, 2) if p99 else None,
        "batch": 100,
        "concurrency": concurrency,
        "seconds": seconds,
    }


def _drain(s: Settings, timeout_s: float) -> float:
    """Wait until the worker has acknowledged everything (lag under 0.2 s); returns how long it took."""
    client, layout, began = redis.Redis.from_url(s.redis_url), stream_layout(s.db_prefix), time.monotonic()
    while time.monotonic() - began < timeout_s and stream_lag(client, layout).behind_s > 0.2:
        time.sleep(0.5)
    return round(time.monotonic() - began, 1)


def _simulator(env: dict[str, str], base: str, rate: int, seconds: float) -> subprocess.Popen:
    command = [sys.executable, "-m", "recomart.cli", "simulate", "--rate", str(rate), "--minutes", str(seconds / 60)]
    return subprocess.Popen([*command, "--url", base], env=env, stdout=subprocess.PIPE, text=True)


def lag_under_load(s: Settings, env: dict[str, str], base: str, rate: int, seconds: float) -> dict:
    """Sample the stream's lag every 0.25 s while the simulator sends ``rate`` events/s."""
    client = redis.Redis.from_url(s.redis_url)
    layout = stream_layout(s.db_prefix)
    sim = _simulator(env, base, rate, seconds)
    samples = []
    while sim.poll() is None:
        samples.append(stream_lag(client, layout).behind_s)
        time.sleep(0.25)
    summary = _summary(sim)
    values = np.asarray(samples or [0.0])
    return {
        "rate": rate,
        "achieved_rate": summary.get("achieved_rate"),
        "lag_p50_s": round(float(np.percentile(values, 50)), 3),
        "lag_p99_s": round(float(np.percentile(values, 99)), 3),
        "lag_max_s": round(float(values.max()), 3),
        "samples": len(samples),
    }


def _summary(sim: subprocess.Popen) -> dict:
    out = sim.stdout.read() if sim.stdout else ""
    sim.wait(timeout=60)
    return json.loads(out[out.index("{") :]) if "{" in out else {}


def feature_freshness(s: Settings, env: dict[str, str], base: str, probes: int, rate: int) -> dict:
    """Probes: 202 of one view -> the item in the user's online ``viewed_item_ids`` (timeout 10 s)."""
    sim = _simulator(env, base, rate, probes * 1.0 + 15)
    times = []
    headers = {API_KEY_HEADER: api_key(s)}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        time.sleep(3)
        for n in range(probes):
            user, item = f"probe-{uuid.uuid4().hex[:8]}", f"probe-item-{n}"
            event = {"event_id": uuid.uuid4().hex, "event_type": "view", "user_id": user, "item_id": item}
            event["event_time"] = datetime.now(UTC).isoformat()
            assert client.post("/v1/events", json=event).status_code == 202
            accepted = time.perf_counter()
            elapsed = 10.0
            while time.perf_counter() - accepted < 10.0:
                row = client.get(f"/v1/users/{user}/features").json()["views"]["user_session_features"]
                if item in (row["features"].get("viewed_item_ids") or []):
                    elapsed = time.perf_counter() - accepted
                    break
                time.sleep(0.01)
            times.append(elapsed * 1000)
            time.sleep(max(0.0, 1.0 - elapsed))
    background = _summary(sim)  # it runs 10 s longer than the probes
    values = np.asarray(times)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p95_ms": round(float(np.percentile(values, 95)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
        "probes": probes,
        "timeouts": int((values >= 10_000).sum()),
        "background_rate": rate,
        "background_achieved_rate": background.get("achieved_rate"),
    }


def run(args: argparse.Namespace) -> dict:
    ensure_tools()
    folder = Path(tempfile.mkdtemp(prefix="recomart-bench-stream-"))
    overrides = {
        "RECOMART_STATE_DIR": str(folder), "RECOMART_PG_URL": "", "RECOMART_REDIS_URL": "",
        "RECOMART_EMBEDDED_PG_PORT": str(free_port()), "RECOMART_EMBEDDED_REDIS_PORT": str(free_port()),
        "RECOMART_API_PORT": str(free_port()), "RECOMART_DB_PREFIX": "bench_stream",
        "RECOMART_FEAST_PROJECT": "bench_stream", "RECOMART_STREAM_MAX_LEN": "10000000",
    }  # fmt: skip
    s = load_settings({**os.environ, **overrides})
    env = {**tool_env(s), **overrides}
    processes: list[subprocess.Popen] = []
    try:
        services.ensure_services(s)
        apply(s.feature_repo_dir, tool_env(s))
        base = f"http://127.0.0.1:{s.api_port}"
        api_env = {**server_env(s, s.api_port), **overrides}
        api_log = (folder / "api.log").open("w")
        args_api = uvicorn_args(s, "127.0.0.1", s.api_port, args.workers)
        processes.append(subprocess.Popen(args_api, env=api_env, stdout=api_log, stderr=subprocess.STDOUT))
        worker_log = (folder / "worker.log").open("w")
        processes.append(subprocess.Popen(worker_args(), env=env, stdout=worker_log, stderr=subprocess.STDOUT))
        _wait_http(f"{base}/healthz")
        client = redis.Redis.from_url(s.redis_url)
        result: dict = {"intake": {}}
        for fsync in ("everysec", "always"):
            client.config_set("appendfsync", fsync)
            result["intake"][fsync] = intake(s, base, args.intake_seconds, args.intake_concurrency, folder)
        client.config_set("appendfsync", "everysec")
        result["intake"]["events_per_s"] = result["intake"]["everysec"]["events_per_s"]
        result["intake"]["drained_s"] = _drain(s, 600)  # the lag run starts from an empty backlog
        result["stream"] = lag_under_load(s, env, base, 2000, args.lag_seconds)
        result["stream"]["lag_p99_s_at_2000_eps"] = result["stream"]["lag_p99_s"]
        result["stream"]["drained_s"] = _drain(s, 600)
        result["feature_freshness"] = feature_freshness(s, env, base, args.probes, 200)
        return result
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        if (folder / "worker.log").exists():  # its totals: time in Postgres (store_s) and in Feast (push_s)
            print((folder / "worker.log").read_text()[-3000:], file=sys.stderr)
        services.stop_embedded(s)
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the API")
    parser.add_argument("--intake-seconds", type=int, default=20)
    parser.add_argument("--intake-concurrency", type=int, default=8)
    parser.add_argument("--lag-seconds", type=float, default=60)
    parser.add_argument("--probes", type=int, default=60)
    parser.add_argument("--smoke", action="store_true", help="5 s intake, 15 s lag, 10 probes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        args.intake_seconds, args.lag_seconds, args.probes = 5, 15, 10
    result = run(args)
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    load = os.getloadavg()
    result.update(
        smoke=args.smoke,
        machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        load_average_at_end=[round(v, 1) for v in load],
        workers=args.workers,
        git_commit=git,
    )
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
