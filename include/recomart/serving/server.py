"""Start the API under uvicorn: ``./recomart serve`` (foreground) and ``./recomart up`` (background)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from recomart import processes
from recomart.config import Settings
from recomart.tools import tool_env

APP_FACTORY = "recomart.serving.app:create_app"
PROCESS_NAME = "api"


def metrics_dir(s: Settings, port: int) -> Path:
    """prometheus_client's multi-process folder of the server on ``port`` (emptied at each start)."""
    return s.state_dir / "api" / f"metrics-{port}"


def uvicorn_args(s: Settings, host: str, port: int, workers: int) -> list[str]:
    """The command line of uvicorn serving the API (uvloop and httptools, no access log)."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", APP_FACTORY,
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--timeout-graceful-shutdown", "10",
    ]  # fmt: skip


ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Numerical libraries' thread pools, one thread per worker: the workers already use every core, and a
request's work is far too small to split (more threads only contend)."""


def server_env(s: Settings, port: int) -> dict[str, str]:
    """The environment of the server: the tools' settings, one numerical thread per worker (unless the
    caller set them) and a fresh multi-process metrics folder."""
    folder = metrics_dir(s, port)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = tool_env(s)
    return {**{name: "1" for name in ONE_THREAD}, **env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}


def serve(s: Settings, host: str | None = None, port: int | None = None, workers: int | None = None) -> int:
    """Run the API in the foreground until interrupted (replaces this process with uvicorn)."""
    host, port, workers = host or s.bind_host, port or s.api_port, workers or s.api_workers
    args = uvicorn_args(s, host, port, workers)
    print(f"RecoMart API on http://{host}:{port} ({workers} workers); OpenAPI at /docs", flush=True)
    os.execve(args[0], args, server_env(s, port))
    return 0  # not reached


def start_api(s: Settings) -> str:
    """Start the API in the background (``./recomart up``), wait for ``/healthz``; returns its URL."""
    args = uvicorn_args(s, s.bind_host, s.api_port, s.api_workers)
    processes.start(s, PROCESS_NAME, args, server_env(s, s.api_port))
    processes.wait_http(f"{s.api_url}/healthz", "RecoMart API", 120, processes.logfile(s, PROCESS_NAME))
    return s.api_url
