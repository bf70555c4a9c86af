"""Blends scored on the test window rank the same users over the same catalogue as the SVD evaluation;
the train path chooses the blend's component options on validation and records them."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from recomart.model.blend_search import BlendFit, blend_record, choose_blend
from recomart.model.catalogue import Catalogue
from recomart.model.config import BlendSearch, TrainingConfig
from recomart.model.evaluate import Contender, eval_set, evaluate_blends, evaluate_models
from recomart.model.train import Champion, train_tune_evaluate
from recomart.ranking.base import TrainingSet, default_products
from recomart.ranking.blend import BLEND_OPTION_TYPES, BlendWeights, blend_options
from recomart.ranking.factors import FactorModel
from recomart.ranking.hybrid import HybridRecommender, ranked_items
from recomart.ranking.svd import BiasedSVD, fit_biased_svd

single_component = BlendWeights.only


def fit_factors(pairs: pd.DataFrame, seed: int) -> FactorModel:
    """The training configuration's SVD fitted on ``pairs`` with ``seed``."""
    return fit_biased_svd(pairs, TrainingConfig(seed=seed).svd_settings())[0]


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
    fit = choose_blend(train, train.iloc[:0], Catalogue(), svd=None)
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
    fit = choose_blend(train, valid, Catalogue(), svd=None)
    assert fit.fitted
    candidates = BlendSearch().option_candidates(repeat_purchases=False)
    assert fit.options in candidates and [t["options"] for t in fit.trials] == candidates
    record = json.loads(json.dumps(blend_record(fit)))  # stored with the model as JSON
    assert record["options"] == fit.options
    assert [c["options"] for c in record["candidates"]] == candidates
    best = max(record["candidates"], key=lambda c: c["validation_ndcg"])
    assert record["validation_ndcg"] == pytest.approx(best["validation_ndcg"])


def test_repeat_purchase_feeds_also_choose_the_buy_again_half_life(split) -> None:
    train, valid = split
    fit = choose_blend(train.assign(purchases=1), valid, Catalogue(repeat_purchases=True), svd=None, exclude_seen=False)
    assert len(fit.trials) == len(BlendSearch().option_candidates(repeat_purchases=True)) == 8
    assert "buy_again_half_life_days" in fit.options


def test_too_few_validation_users_keep_the_default_options(split) -> None:
    train, valid = split
    fit = choose_blend(train, valid[valid["user_id"] < "u010"], Catalogue(), svd=None)
    assert not fit.fitted and fit.options == {} and len(fit.trials) == 4


def test_each_blend_is_ranked_over_inputs_built_with_its_own_options(split) -> None:
    train, test = split
    es = eval_set(train, test)
    item_item = single_component("item_item")
    blends = {"one": Contender(item_item, None, {"top_n": 1}), "default": Contender(item_item)}
    metrics = evaluate_blends(train, es, blends, Catalogue(), k=10)["metrics"]
    training = Catalogue().evaluation_set(train)
    one = Catalogue().hybrid(weights=item_item, options={"top_n": 1}, exclude_seen=True).fit(training)
    ids = one.recommend(es.eval_user_ids, training.history, 10).item_ids
    coverage = len({i for i in ids.ravel() if i is not None}) / len(es.items)
    assert metrics["one"]["catalog_coverage"] == pytest.approx(coverage)
    assert metrics["one"]["ndcg_at_10"] != pytest.approx(metrics["default"]["ndcg_at_10"])


def test_the_champion_is_re_scored_with_its_own_options(split) -> None:
    train, test = split
    ratings = pd.concat([train, test], ignore_index=True)
    factors = fit_factors(train, seed=5)
    config = TrainingConfig(max_trials=1, split_options={"valid_fraction": 0.15, "test_fraction": 0.2})

    def champion_metrics(options: dict) -> dict[str, float]:
        champion = Champion(factors, weights=single_component("item_item"), options=options)
        return train_tune_evaluate(ratings, config, champion=champion).metrics["champion"]

    assert champion_metrics({"top_n": 1})["ndcg_at_10"] != pytest.approx(champion_metrics({})["ndcg_at_10"])


@pytest.mark.parametrize("weights", [single_component("cf"), BlendWeights(cf=0.5, item_item=0.5, content=0.0)])
def test_the_evaluation_ranks_users_as_the_nightly_job_does(split, weights) -> None:
    """``recommend`` (the evaluation's call: zero-weight components skipped) returns exactly the items of
    ``rank`` (the nightly job's call), also for users the factors do not know (no SVD part, or segment
    popularity without history) instead of ranking an all-zero SVD component by item order."""
    train, _ = split
    model = fit_factors(train[train["user_id"] < "u060"], seed=2)  # half the users are unknown to it
    users = pd.DataFrame({"user_id": [*sorted(train["user_id"].unique()), "zz_new1", "zz_new2"], "segment": "regular"})
    training = TrainingSet.build(train, default_products(sorted(train["item_id"].unique())), users)
    recommender = HybridRecommender(weights=weights, exclude="interacted", svd=BiasedSVD.from_factors(model))
    recommender.fit(training)
    nightly = recommender.rank(users, train, k=10)
    ids = users["user_id"].to_numpy(dtype=object)
    evaluated = recommender.recommend(ids, train, 10).item_ids
    assert (evaluated == ranked_items(nightly, ids, 10).item_ids).all()
    assert {"zz_new1", "zz_new2", "u070"} <= set(nightly["user_id"])
    assert set(nightly.loc[nightly["user_id"] == "u070", "strategy"]) == {"hybrid_no_svd"}


def test_blend_record_is_json_safe() -> None:
    fit = BlendFit({"cf": 1.0}, True, "ok", validation_ndcg=float("nan"), single_ndcg={"cf": 0.5, "item_item": 0.25})
    record = blend_record(fit)
    assert record["validation_ndcg"] is None
    assert record["component_validation_ndcg"] == {"svd": 0.5, "item_item": 0.25}
    assert all(v is None or math.isfinite(v) for v in record["component_validation_ndcg"].values())


def test_buy_again_is_a_component_only_when_repeats_are_allowed() -> None:
    assert "buy_again" not in Catalogue().components()
    assert "buy_again" in Catalogue(repeat_purchases=True).components()


def test_stored_options_are_read_back_typed_or_fall_back_to_defaults() -> None:
    chosen = {"top_n": 10, "prior_days": None, "buy_again_half_life_days": 365.0}
    assert blend_options(chosen) == chosen
    assert blend_options({"top_n": 10.0}) == {"top_n": 10}
    for raw in (
        None,
        {},
        "x",
        {"top_n": 0},
        {"top_n": None},
        {"top_n": 2.5},
        {"top_n": True},
        {"neighbours": 10},
        {"prior_days": float("nan")},
        {"content_embedding": 0},
        {"content_embedding": 1.5},
    ):
        assert blend_options(raw) == {}, raw


def test_the_recommender_accepts_every_option_the_search_can_choose() -> None:
    search = BlendSearch()
    grids = set(search.option_grid) | set(search.repeat_option_grid) | {"content_embedding"}
    assert set(BLEND_OPTION_TYPES) == grids
    for options in search.option_candidates(repeat_purchases=True):
        assert blend_options(options) == options
        for share in search.content_embedding_grid:
            assert blend_options({**options, "content_embedding": share}) == {**options, "content_embedding": share}


def test_the_test_window_ranks_a_seeded_sample_beyond_its_user_cap(split) -> None:
    train, test = split
    every = eval_set(train, test)
    sample = eval_set(train, test, max_users=len(every.eval_users) // 2)
    assert len(sample.eval_users) == len(every.eval_users) // 2 == sample.relevant.shape[0]
    assert sample.info()["n_eligible_users"] == every.info()["n_eligible_users"] == len(every.eval_users)
    rows = np.searchsorted(every.eval_users, sample.eval_users)  # the sample's rows of the whole set
    assert np.array_equal(every.eval_users[rows], sample.eval_users)
    assert (every.relevant[rows] != sample.relevant).nnz == 0  # each sampled user keeps its test items
    again = eval_set(train, test, max_users=len(every.eval_users) // 2)
    assert np.array_equal(again.eval_users, sample.eval_users)
