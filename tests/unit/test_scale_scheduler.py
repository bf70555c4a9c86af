"""The scale study's task spans on the scheduler: a mapped task's overlapping instances count once."""

from __future__ import annotations

from benchmarks.scale_scheduler import task_spans


def _ti(task_id: str, start: str | None, end: str | None) -> dict:
    return {"task_id": task_id, "start_date": start, "end_date": end}


def test_a_mapped_tasks_span_runs_from_its_first_start_to_its_last_end() -> None:
    instances = [
        _ti("rank_shard", "2026-12-06T07:00:00+00:00", "2026-12-06T07:00:40+00:00"),
        _ti("rank_shard", "2026-12-06T07:00:01+00:00", "2026-12-06T07:00:30+00:00"),
        _ti("rank_shard", "2026-12-06T07:00:31+00:00", "2026-12-06T07:01:05.5+00:00"),
        _ti("publish", "2026-12-06T07:01:07+00:00", "2026-12-06T07:01:09+00:00"),
    ]
    assert task_spans(instances) == {"publish": 2.0, "rank_shard": 65.5}


def test_instances_that_never_ran_are_left_out() -> None:
    instances = [_ti("discard", None, None), _ti("publish", "2026-12-06T07:00:00+00:00", None)]
    assert task_spans(instances) == {}
