"""Blends scored on the test window rank the same users over the same catalogue as the SVD evaluation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recomart.model.blend_eval import Catalogue, blend_record, evaluate_blends, fit_weights, single_component
from recomart.model.evaluate import eval_set, evaluate_models
from recomart.model.train import fit_factors
from recomart.recommend.blend import BlendFit


def _pairs(seed: int, n_users: int = 120, n_items: int = 40, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    skew = 1.0 / np.arange(1, n_items + 1) ** 0.7
    frame = pd.DataFrame({
        "user_id": [f"u{u:03d}" for u in rng.integers(0, n_users, n)],
        "item_id": [f"i{i:02d}" for i in rng.choice(n_items, n, p=skew / skew.sum())],
    }).drop_duplicates(ignore_index=True)
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 60, len(frame)), unit="D")
    return frame.assign(rating=1.0, event_timestamp=ts)


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = _pairs(3)
    cut = df["event_timestamp"].quantile(0.8)
    return df[df["event_timestamp"] < cut], df[df["event_timestamp"] >= cut]


def test_popularity_alone_as_a_blend_equals_the_popularity_baseline(split) -> None:
    train, test = split
    baseline = evaluate_models(train, test, {}, k=10)["metrics"]["popularity"]
    blends = evaluate_blends(train, eval_set(train, test), {"pop": (single_component("popularity"), None)},
                             Catalogue(), k=10)["metrics"]["pop"]
    for key in ("ndcg_at_10", "precision_at_10", "recall_at_10", "hit_rate_at_10", "ndcg_at_20", "catalog_coverage"):
        assert blends[key] == pytest.approx(baseline[key]), key


def test_svd_alone_as_a_blend_equals_the_svd_evaluation(split) -> None:
    train, test = split
    model = fit_factors(train, seed=1)
    svd = evaluate_models(train, test, {"svd": model}, k=10)["metrics"]["svd"]
    blend = evaluate_blends(train, eval_set(train, test), {"svd": (single_component("cf"), model)}, Catalogue(),
                            k=10)["metrics"]["svd"]
    assert blend["ndcg_at_10"] == pytest.approx(svd["ndcg_at_10"], abs=1e-6)
    assert blend["precision_at_5"] == pytest.approx(svd["precision_at_5"], abs=1e-6)


def test_without_a_validation_window_the_default_is_kept_and_recorded(split) -> None:
    train, _ = split
    fit = fit_weights(train, train.iloc[:0], None, Catalogue())
    assert not fit.fitted and fit.weights == {"cf": 0.7, "content": 0.3, "popularity": 0.0, "item_item": 0.0,
                                              "buy_again": 0.0}
    record = blend_record(fit)
    assert record["fitted"] is False and record["validation_ndcg"] is None
    assert "no validation window" in record["reason"]


def test_blend_record_is_json_safe() -> None:
    fit = BlendFit({"cf": 1.0}, True, "ok", validation_ndcg=float("nan"), single_ndcg={"cf": 0.5, "item_item": 0.25})
    record = blend_record(fit)
    assert record["validation_ndcg"] is None
    assert record["component_validation_ndcg"] == {"svd": 0.5, "item_item": 0.25}
    assert all(v is None or math.isfinite(v) for v in record["component_validation_ndcg"].values())


def test_buy_again_is_a_component_only_when_repeats_are_allowed() -> None:
    assert "buy_again" not in Catalogue().components()
    assert "buy_again" in Catalogue(repeat_purchases=True).components()
