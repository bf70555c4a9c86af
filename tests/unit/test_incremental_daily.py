"""``benchmarks.incremental_daily``: dbt's node timings of a build, read from its ``run_results.json``."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ lives at the project root, outside the installed package
    sys.path.insert(0, str(ROOT))
D = importlib.import_module("benchmarks.incremental_daily")


def test_the_costliest_nodes_first_and_the_file_kept(tmp_path: Path) -> None:
    nodes = [{"unique_id": f"model.recomart.m{n}", "execution_time": float(n)} for n in range(D.TOP_NODES + 3)]
    (tmp_path / "run_results.json").write_text(json.dumps({"elapsed_time": 12.34, "results": nodes}))
    figures = D.dbt_nodes(SimpleNamespace(dbt_target_dir=tmp_path), keep_as=tmp_path / "kept.json")
    top = list(figures["top_nodes_s"].items())
    assert len(top) == D.TOP_NODES and top[0] == (f"model.recomart.m{D.TOP_NODES + 2}", float(D.TOP_NODES + 2))
    assert [seconds for _, seconds in top] == sorted((seconds for _, seconds in top), reverse=True)
    assert figures["elapsed_s"] == 12.3 and figures["node_s_sum"] == sum(range(D.TOP_NODES + 3))
    assert json.loads((tmp_path / "kept.json").read_text())["elapsed_time"] == 12.34
