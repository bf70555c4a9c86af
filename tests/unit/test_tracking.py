"""What a training run logs to MLflow: headline metrics keep their names, the at-K figures become curves."""

from __future__ import annotations

import math

from recomart.model.tracking import headline_metrics, metric_curves

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
