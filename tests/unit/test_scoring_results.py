"""benchmarks.scoring rewrites scoring.json but keeps what other benchmarks merged into it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.ranker_speed import merge_into
from benchmarks.scoring import merged_by_others


def test_a_scoring_run_keeps_the_ranker_speed_and_historical_keys(tmp_path: Path) -> None:
    out = tmp_path / "scoring.json"
    out.write_text(json.dumps({"total_s": 3.0, "historical_10k_median_s": 1.7, "historical_10k": {"runs": 5}}))
    figures = {"ranker_train_s": 802.1, "ranker_features_s": 55.4, "nightly_ranker_s": 64.7, "shop": {"users": 5}}
    merge_into(out, figures)

    kept = merged_by_others(json.loads(out.read_text()))

    assert kept == {
        "historical_10k_median_s": 1.7,
        "historical_10k": {"runs": 5},
        "ranker_train_s": 802.1,
        "ranker_features_s": 55.4,
        "nightly_ranker_s": 64.7,
        "ranker_speed": figures,
    }
