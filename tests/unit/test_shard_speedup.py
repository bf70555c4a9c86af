"""The shard-speedup benchmark's shard phase, from task-instance dates as Airflow's REST API gives them."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ lives at the project root, outside the installed package
    sys.path.insert(0, str(ROOT))
B = importlib.import_module("benchmarks.shard_speedup")


def _ti(index: int, start: str, end: str) -> dict:
    day = "2026-12-03T10:00:"
    return {"map_index": index, "start_date": day + start, "end_date": day + end, "try_number": 1, "state": "success"}


def test_two_at_a_time_span_first_start_to_last_end() -> None:
    tis = [_ti(2, "20Z", "30Z"), _ti(0, "00.000000Z", "10Z"), _ti(1, "01+00:00", "19Z"), _ti(3, "19Z", "29Z")]
    phase = B.shard_phase(tis)
    assert phase["shard_phase_s"] == 30.0
    assert phase["shard_task_s"] == [10.0, 18.0, 10.0, 10.0]
    assert phase["max_concurrent_shards"] == 2
    assert phase["tries"] == [1, 1, 1, 1] and phase["states"] == ["success"]


def test_back_to_back_tasks_do_not_count_as_overlapping() -> None:
    phase = B.shard_phase([_ti(0, "00Z", "10Z"), _ti(1, "10Z", "20Z")])
    assert phase["max_concurrent_shards"] == 1 and phase["shard_phase_s"] == 20.0


def test_thread_caps_name_every_pool() -> None:
    assert B.threads(1) == dict.fromkeys(
        ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"), "1"
    )
