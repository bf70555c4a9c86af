"""What a training run logs to MLflow: headline metrics keep their names, the at-K figures become curves."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from recomart.model.tracking import SCHEMA_SAMPLE_ROWS, headline_metrics, metric_curves, schema_sample

METRICS = {
    "model": {"ndcg_at_1": 0.2, "ndcg_at_10": 0.4, "ndcg_at_20": 0.5, "precision_at_10": 0.1, "catalog_coverage": 0.3},
    "svd": {"ndcg_at_5": 0.25, "ndcg_at_10": 0.35, "rmse": math.nan, "user_coverage": 1.0},
}


def test_headline_keeps_the_metrics_at_k_and_10_and_those_without_a_cut_off() -> None:
    assert headline_metrics(METRICS, k=10) == {
        "model_ndcg_at_10": 0.4,
        "model_precision_at_10": 0.1,
        "model_catalog_coverage": 0.3,
        "svd_ndcg_at_10": 0.35,
        "svd_user_coverage": 1.0,
    }
    assert "model_ndcg_at_20" in headline_metrics(METRICS, k=20)


def test_every_cut_off_is_a_step_of_one_metric_per_family() -> None:
    curves = metric_curves(METRICS)
    assert sorted(curves) == [1, 5, 10, 20]
    assert curves[10] == {"model_ndcg": 0.4, "model_precision": 0.1, "svd_ndcg": 0.35}
    assert curves[5] == {"svd_ndcg": 0.25} and curves[20] == {"model_ndcg": 0.5}


def test_the_data_sets_schema_from_its_sample_is_the_whole_frames() -> None:
    from mlflow.models import infer_signature

    n = 3 * SCHEMA_SAMPLE_ROWS
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i % 97}" for i in range(n)],
            "item_id": [f"i{i % 31}" for i in range(n)],
            "rating": np.linspace(1.0, 5.0, n),
            "purchases": np.arange(n, dtype=np.int64) % 3,
            "last_interaction_at": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC"),
            "segment": ["a"] * (n - 1) + [None],  # missing only past the leading rows
        }
    )
    sample = schema_sample(frame)
    assert len(sample) == SCHEMA_SAMPLE_ROWS + 1
    whole = infer_signature(frame).inputs
    assert infer_signature(sample).inputs == whole
    assert infer_signature(frame.head(SCHEMA_SAMPLE_ROWS)).inputs != whole  # the missing row matters
