"""Blends scored on the test window rank the same users over the same catalogue as the SVD evaluation;
the train path chooses the blend's input options on validation and records them."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from recomart.model.blend_eval import (
    Catalogue,
    Contender,
    blend_record,
    evaluate_blends,
    fit_weights,
    single_component,
)
from recomart.model.evaluate import eval_set, evaluate_models
from recomart.model.train import TrainConfig, fit_factors, train_tune_evaluate
from recomart.recommend.blend import BlendFit, as_ratings, default_products, option_candidates
from recomart.recommend.evaluation import top_items
from recomart.recommend.hybrid import BlendWeights, build_inputs, recommend


def _pairs(seed: int, n_users: int = 120, n_items: int = 40, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    skew = 1.0 / np.arange(1, n_items + 1) ** 0.7
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in rng.integers(0, n_users, n)],
            "item_id": [f"i{i:02d}" for i in rng.choice(n_items, n, p=skew / skew.sum())],
        }
    ).drop_duplicates(ignore_index=True)
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
    blends = evaluate_blends(
        train, eval_set(train, test), {"pop": Contender(single_component("popularity"))}, Catalogue(), k=10
    )["metrics"]["pop"]
    for key in ("ndcg_at_10", "precision_at_10", "recall_at_10", "hit_rate_at_10", "ndcg_at_20", "catalog_coverage"):
        assert blends[key] == pytest.approx(baseline[key]), key


def test_svd_alone_as_a_blend_equals_the_svd_evaluation(split) -> None:
    train, test = split
    model = fit_factors(train, seed=1)
    svd = evaluate_models(train, test, {"svd": model}, k=10)["metrics"]["svd"]
    blend = evaluate_blends(
        train, eval_set(train, test), {"svd": Contender(single_component("cf"), model)}, Catalogue(), k=10
    )["metrics"]["svd"]
    assert blend["ndcg_at_10"] == pytest.approx(svd["ndcg_at_10"], abs=1e-6)
    assert blend["precision_at_5"] == pytest.approx(svd["precision_at_5"], abs=1e-6)


def test_without_a_validation_window_the_default_is_kept_and_recorded(split) -> None:
    train, _ = split
    fit = fit_weights(train, train.iloc[:0], None, Catalogue())
    assert not fit.fitted and fit.weights == {
        "cf": 0.7,
        "content": 0.3,
        "popularity": 0.0,
        "item_item": 0.0,
        "buy_again": 0.0,
    }
    record = blend_record(fit)
    assert record["fitted"] is False and record["validation_ndcg"] is None
    assert "no validation window" in record["reason"]
    assert record["options"] == {} and record["candidates"] == []


def test_fit_weights_chooses_and_records_the_input_options_on_validation(split) -> None:
    train, valid = split
    fit = fit_weights(train, valid, None, Catalogue())
    assert fit.fitted
    candidates = option_candidates(repeat_purchases=False)
    assert fit.options in candidates and [t["options"] for t in fit.trials] == candidates
    record = json.loads(json.dumps(blend_record(fit)))  # stored with the model as JSON
    assert record["options"] == fit.options
    assert [c["options"] for c in record["candidates"]] == candidates
    best = max(record["candidates"], key=lambda c: c["validation_ndcg"])
    assert record["validation_ndcg"] == pytest.approx(best["validation_ndcg"])


def test_repeat_purchase_feeds_also_choose_the_buy_again_half_life(split) -> None:
    train, valid = split
    fit = fit_weights(train.assign(purchases=1), valid, None, Catalogue(repeat_purchases=True), exclude_seen=False)
    assert len(fit.trials) == len(option_candidates(repeat_purchases=True)) == 8
    assert "buy_again_half_life_days" in fit.options


def test_too_few_validation_users_keep_the_default_options(split) -> None:
    train, valid = split
    fit = fit_weights(train, valid[valid["user_id"] < "u010"], None, Catalogue())
    assert not fit.fitted and fit.options == {} and len(fit.trials) == 4


def test_each_blend_is_ranked_over_inputs_built_with_its_own_options(split) -> None:
    train, test = split
    es = eval_set(train, test)
    item_item = single_component("item_item")
    blends = {"one": Contender(item_item, None, {"top_n": 1}), "default": Contender(item_item)}
    metrics = evaluate_blends(train, es, blends, Catalogue(), k=10)["metrics"]
    inputs = Catalogue().inputs(train, exclude_seen=True, options={"top_n": 1})
    ids = top_items(inputs, es.eval_user_ids, item_item, 10)
    coverage = len({i for i in ids.ravel() if i is not None}) / len(es.items)
    assert metrics["one"]["catalog_coverage"] == pytest.approx(coverage)
    assert metrics["one"]["ndcg_at_10"] != pytest.approx(metrics["default"]["ndcg_at_10"])


def test_the_champion_is_re_scored_with_its_own_options(split) -> None:
    train, test = split
    ratings = pd.concat([train, test], ignore_index=True)
    champion = fit_factors(train, seed=5)
    config = TrainConfig(max_trials=1, split_options={"valid_fraction": 0.15, "test_fraction": 0.2})

    def champion_metrics(options: dict) -> dict[str, float]:
        result = train_tune_evaluate(
            ratings, config, champion=champion, champion_options=options, champion_weights=single_component("item_item")
        )
        return result.metrics["champion"]

    assert champion_metrics({"top_n": 1})["ndcg_at_10"] != pytest.approx(champion_metrics({})["ndcg_at_10"])


def _by_user(recs: pd.DataFrame) -> dict[str, list[str]]:
    return {u: g.sort_values("rank")["item_id"].tolist() for u, g in recs.groupby("user_id")}


@pytest.mark.parametrize("weights", [single_component("cf"), BlendWeights(cf=0.5, item_item=0.5, content=0.0)])
def test_top_items_treats_users_as_the_nightly_recommend_does(split, weights) -> None:
    """Users the factors do not know fall back as in ``recommend()`` (no SVD part, or segment popularity
    without history) instead of ranking an all-zero SVD component by item order."""
    train, _ = split
    ratings = as_ratings(train)
    model = fit_factors(train[train["user_id"] < "u060"], seed=2)  # half the users are unknown to it
    users = pd.DataFrame(
        {"user_id": [*sorted(ratings["user_id"].unique()), "zz_new1", "zz_new2"], "segment": "regular"}
    )
    inputs = build_inputs(ratings, users, default_products(sorted(ratings["item_id"].unique())), exclude="interacted")
    weights = weights.normalised()
    expected = _by_user(recommend(inputs, model, weights=weights, k=10))
    ids = top_items(inputs, inputs.user_ids, weights, 10, model=model, block_size=37)
    got = {u: [i for i in row if i is not None] for u, row in zip(inputs.user_ids, ids, strict=True)}
    assert got == expected
    assert {"zz_new1", "zz_new2"} <= set(got) and any(u >= "u060" for u in got)


def test_blend_record_is_json_safe() -> None:
    fit = BlendFit({"cf": 1.0}, True, "ok", validation_ndcg=float("nan"), single_ndcg={"cf": 0.5, "item_item": 0.25})
    record = blend_record(fit)
    assert record["validation_ndcg"] is None
    assert record["component_validation_ndcg"] == {"svd": 0.5, "item_item": 0.25}
    assert all(v is None or math.isfinite(v) for v in record["component_validation_ndcg"].values())


def test_buy_again_is_a_component_only_when_repeats_are_allowed() -> None:
    assert "buy_again" not in Catalogue().components()
    assert "buy_again" in Catalogue(repeat_purchases=True).components()


def test_the_recommend_run_reads_valid_options_and_falls_back_to_defaults() -> None:
    from recomart.recommend.run import blend_options

    chosen = {"top_n": 10, "prior_days": None, "buy_again_half_life_days": 365.0}
    assert blend_options({"blend": {"options": chosen}}) == chosen
    assert blend_options({"blend": {"options": {"top_n": 10.0}}}) == {"top_n": 10}
    for meta in (
        None,
        {},
        {"blend": None},
        {"blend": {"options": "x"}},
        {"blend": {"options": {"top_n": 0}}},
        {"blend": {"options": {"top_n": None}}},
        {"blend": {"options": {"top_n": 2.5}}},
        {"blend": {"options": {"top_n": True}}},
        {"blend": {"options": {"neighbours": 10}}},
        {"blend": {"options": {"prior_days": float("nan")}}},
    ):
        assert blend_options(meta) == {}, meta


def test_the_nightly_job_accepts_every_option_the_search_can_choose() -> None:
    from recomart.recommend.blend import OPTION_GRID, REPEAT_OPTION_GRID
    from recomart.recommend.run import BLEND_OPTION_TYPES

    assert set(BLEND_OPTION_TYPES) == set(OPTION_GRID) | set(REPEAT_OPTION_GRID)
