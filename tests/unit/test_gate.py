"""The promotion gate on hand-made metrics: promotion, refusal and the very first model."""

from __future__ import annotations

import pytest

from recomart.model.gate import decide


def metrics(model: float, pop: float, champion: float | None = None, metric: str = "ndcg_at_10") -> dict:
    out = {"model": {metric: model}, "popularity": {metric: pop}}
    if champion is not None:
        out["champion"] = {metric: champion}
    return out


def test_first_model_only_needs_to_beat_popularity() -> None:
    d = decide(metrics(0.30, 0.20))
    assert d.promote and d.champion is None
    assert "no champion yet" in d.reason and "@champion" in d.reason
    refused = decide(metrics(0.19, 0.20))
    assert not refused.promote and "popularity" in refused.reason and "@challenger" in refused.reason


def test_candidate_must_beat_champion_and_popularity() -> None:
    assert decide(metrics(0.30, 0.20, 0.25), champion_version="3").promote
    lost = decide(metrics(0.30, 0.20, 0.31), champion_version="3")
    assert not lost.promote and "champion v3 0.3100" in lost.reason
    both = decide(metrics(0.10, 0.20, 0.31))
    assert not both.promote and "popularity" in both.reason and "champion" in both.reason
    tie = decide(metrics(0.30, 0.20, 0.30))
    assert not tie.promote  # strictly better only


def test_margin_is_relative_and_configurable() -> None:
    m = metrics(0.30, 0.20, 0.28)
    assert decide(m, margin=0.05).promote  # 0.30 > 0.28 * 1.05 = 0.294
    refused = decide(m, margin=0.10)  # 0.30 <= 0.308
    assert not refused.promote and "by 10.0%" in refused.reason
    with pytest.raises(ValueError):
        decide(m, margin=-0.1)


def test_primary_metric_is_configurable_and_direction_aware() -> None:
    m = metrics(0.85, 1.00, 0.90, metric="rmse")
    assert decide(m, metric="rmse").promote
    assert not decide(metrics(0.95, 1.00, 0.90, metric="rmse"), metric="rmse").promote
    recall = {"model": {"recall_at_10": 0.5, "ndcg_at_10": 0.0}, "popularity": {"recall_at_10": 0.4, "ndcg_at_10": 1}}
    assert decide(recall, metric="recall_at_10").promote
    assert not decide(recall).promote


def test_missing_or_nan_candidate_is_never_promoted() -> None:
    assert not decide({"model": {}, "popularity": {"ndcg_at_10": 0.1}}).promote
    assert not decide(metrics(float("nan"), 0.1)).promote
