"""The CeleryExecutor deployment (``RECOMART_EXECUTOR=celery``): N ``airflow celery worker`` processes
and Flower, started, checked and stopped like the other background processes (:mod:`recomart.processes`).

Worker ``i`` is the background process ``celery-worker-<i>`` with the Celery node name
``<db_prefix>-worker-<i>@<host>``; it is healthy once it answers a Celery ``ping`` over the broker.
Flower binds ``RECOMART_BIND_HOST`` (127.0.0.1) and asks for basic auth (user ``admin``, password
generated into ``<state>/secrets/flower_password``, passed in its environment, never on its command line).
"""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path

from recomart import processes
from recomart.config import Settings
from recomart.credentials import secret
from recomart.environment import broker_transport_options
from recomart.processes import Health
from recomart.tools import tool_env, venv_bin

WORKER_PROCESS = "celery-worker"
FLOWER_PROCESS = "flower"
FLOWER_USER = "admin"


def worker_process(index: int) -> str:
    """The background process name of worker ``index`` (1-based)."""
    return f"{WORKER_PROCESS}-{index}"


def node_name(s: Settings, index: int) -> str:
    """Worker ``index``'s Celery node name (what ``ping``, Flower and ``airflow celery stop`` show)."""
    return f"{s.db_prefix}-worker-{index}@{socket.gethostname()}"


def worker_args(s: Settings, index: int) -> list[str]:
    """``airflow celery worker`` with its own node name and ``s.celery_concurrency`` task slots.

    ``--skip-serve-logs``: the worker's log server would listen on every interface (one fixed port per
    host, so a second worker could not start); the api-server reads task logs from the shared log folder.
    """
    return [
        venv_bin("airflow"),
        "celery",
        "worker",
        "--celery-hostname",
        node_name(s, index),
        "--concurrency",
        str(s.celery_concurrency),
        "--skip-serve-logs",
    ]


def flower_password(s: Settings) -> str:
    return secret(s.state_dir, "flower_password")


def flower_args(s: Settings) -> list[str]:
    return [venv_bin("airflow"), "celery", "flower", "--hostname", s.bind_host, "--port", str(s.flower_port)]


def flower_env(s: Settings) -> dict[str, str]:
    """Flower's environment: the deployment's, plus its basic-auth login (Flower can stop workers)."""
    return {**tool_env(s), "AIRFLOW__CELERY__FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{flower_password(s)}"}


@lru_cache(maxsize=4)
def _control_app(broker_url: str, keyprefix: str | None):
    from celery import Celery

    options = {"global_keyprefix": keyprefix} if keyprefix else {}
    return Celery("recomart-control", broker=broker_url, broker_transport_options=options)


def ping(s: Settings, nodes: list[str], timeout_s: float = 1.0) -> set[str]:
    """The node names among ``nodes`` that answer a Celery ``ping`` within ``timeout_s``."""
    app = _control_app(s.celery_broker_url, broker_transport_options(s).get("global_keyprefix"))
    replies = app.control.ping(destination=nodes, timeout=timeout_s)
    return {name for reply in replies for name in reply}


def _worker_problem(s: Settings, index: int) -> str | None:
    node = node_name(s, index)
    try:
        return None if ping(s, [node]) else f"{node} does not answer a Celery ping yet"
    except Exception as exc:  # noqa: BLE001 (any broker error is a reason to keep waiting, shown as such)
        return f"broker not answering ({type(exc).__name__}: {exc})"


def start(s: Settings, workers: int, log_from: dict[str, int]) -> list[Health]:
    """Start ``workers`` workers and Flower in the background; return their health checks."""
    env = tool_env(s)
    checks = []
    for index in range(1, workers + 1):
        name = worker_process(index)
        log_from[name] = processes.log_size(s, name)
        processes.start(s, name, worker_args(s, index), env)
        checks.append(Health(f"Celery worker {index}", name, lambda i=index: _worker_problem(s, i), 240))
    log_from[FLOWER_PROCESS] = processes.log_size(s, FLOWER_PROCESS)
    processes.start(s, FLOWER_PROCESS, flower_args(s), flower_env(s))
    flower_check = Health("Flower", FLOWER_PROCESS, lambda: processes.http_problem(f"{s.flower_url}/healthcheck"), 240)
    return [*checks, flower_check]


def started_workers(s: Settings) -> list[str]:
    """Process names of this deployment's workers that have a pid file (running or exited), in order."""
    run_dir = s.state_dir / "run"
    prefix = f"{s.db_prefix}-{WORKER_PROCESS}-"
    indexes = sorted(int(p.stem.removeprefix(prefix)) for p in _pidfiles(run_dir, prefix))
    return [worker_process(index) for index in indexes]


def _pidfiles(run_dir: Path, prefix: str) -> list[Path]:
    if not run_dir.is_dir():
        return []
    return [p for p in run_dir.glob(f"{prefix}*.pid") if p.stem.removeprefix(prefix).isdigit()]
