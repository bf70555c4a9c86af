"""The Experiments page keeps an analysis per frame content: a re-read of the same frame is the same
object, a changed frame is analysed again."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from recomart.dashboard import experiments_page
from recomart.experiments.definitions import Experiment, Variant


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "variant": np.where(np.arange(n) % 2 == 0, "a", "b"),
            "converted": (rng.random(n) < 0.2).astype("int64"),
            "revenue": np.nan,
            "pre_metric": rng.poisson(2.0, n).astype(float),
            "first_exposure_day": [date(2026, 11, 1 + int(d)) for d in rng.integers(0, 5, n)],
            "exposures": np.ones(n, dtype="int64"),
        }
    )


def test_the_analysis_is_kept_per_frame_content() -> None:
    experiment = Experiment("e", "salt", (Variant("a", "hybrid", 0.5), Variant("b", "popularity", 0.5)), "a",
                            "conversion", datetime(2026, 11, 1, tzinfo=UTC))  # fmt: skip
    first = experiments_page.analysis_of(experiment, _frame(1))
    assert experiments_page.analysis_of(experiment, _frame(1)) is first
    other = experiments_page.analysis_of(experiment, _frame(2))
    assert other is not first and other["result"] != first["result"]
    users = {v["variant"]: v["users"] for v in first["result"]["variants"]}
    assert users == {"a": 200, "b": 200}
    assert {row["variant"] for row in first["charts"]["looks"]["data"]["values"]} == {"b"}
