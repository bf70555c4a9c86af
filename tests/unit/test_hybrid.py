"""Hybrid recommender on a small hand-built catalogue and a hand-built factor model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recomart.model.factors import FactorModel
from recomart.model.scoring import svd_scores
from recomart.recommend.content import content_scores
from recomart.recommend.hybrid import (
    OUTPUT_COLUMNS,
    STRATEGY_COLD_START,
    STRATEGY_HYBRID,
    STRATEGY_NO_MODEL,
    STRATEGY_NO_SVD,
    BlendWeights,
    build_inputs,
    minmax_rows,
    recommend,
)
from recomart.recommend.popularity import ALL_SEGMENTS

T = pd.Timestamp("2020-06-30 12:00:00", tz="UTC")  # the data's last event, far from now()


def _days(n: float) -> pd.Timestamp:
    return T - pd.Timedelta(days=n)


@pytest.fixture()
def products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4", "i5", "i6", "i7"],
            "title": [
                "Red running shoe",
                "Blue running shoe",
                "Trail hiking boot",
                "Python programming book",
                "Italian cooking book",
                "Red running shoe pro",  # new item: no interactions, not in the model
                "Garden hose",
            ],
            "description": [
                "light road shoe for running",
                "cushioned road shoe for running",
                "waterproof boot for mountain trails",
                "learn python programming",
                "learn italian cooking",
                "light road shoe for running races",
                "flexible hose for the garden",
            ],
            "category": ["Shoes", "Shoes", "Shoes", "Books", "Books", "Shoes", "Garden"],
            "brand": ["Acme", "Acme", "Trek", "Pub", "Pub", "Acme", "Green"],
            "price": [50.0, 55.0, 120.0, 20.0, 25.0, 60.0, 15.0],
        }
    )


@pytest.fixture()
def ratings() -> pd.DataFrame:
    rows = [
        # user, item, rating, purchases, days before the last event
        ("u1", "i1", 5.0, 1, 0),
        ("u1", "i2", 2.0, 0, 2),
        ("u2", "i4", 4.0, 1, 1),
        ("u2", "i3", 3.0, 0, 60),
        ("u4", "i5", 4.0, 1, 0),
        ("u5", "i4", 4.0, 1, 3),
        ("u5", "i5", 3.0, 1, 4),
        ("u6", "i7", 3.0, 1, 1),
        ("u7", "i7", 3.0, 1, 2),
        ("u8", "i3", 3.0, 1, 200),
        ("u9", "i3", 3.0, 1, 200),
        ("u10", "i3", 3.0, 1, 200),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "purchases", "age"])
    frame["last_interaction_at"] = frame.pop("age").map(_days)
    return frame


@pytest.fixture()
def users() -> pd.DataFrame:
    ids = ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10"]
    segments = ["a", "a", "b", "b", "a", "b", "b", "a", "a", "a"]
    return pd.DataFrame({"user_id": ids, "segment": segments})


@pytest.fixture()
def model() -> FactorModel:
    """u1 and u2 (and u5) are known; items i1..i5 only (i6, i7 arrived after training)."""
    rng = np.random.default_rng(7)
    return FactorModel(
        user_ids=np.array(["u1", "u2", "u5"], dtype=object),
        item_ids=np.array(["i1", "i2", "i3", "i4", "i5"], dtype=object),
        global_mean=3.5,
        user_bias=np.array([0.2, -0.1, 0.0], dtype=np.float32),
        item_bias=np.array([0.3, 0.2, 0.1, 0.0, -0.2], dtype=np.float32),
        user_factors=rng.normal(0, 0.5, size=(3, 4)).astype(np.float32),
        item_factors=rng.normal(0, 0.5, size=(5, 4)).astype(np.float32),
    )


def _user(frame: pd.DataFrame, user: str) -> pd.DataFrame:
    return frame[frame["user_id"] == user].sort_values("rank")


# --- normalisation and weights ---------------------------------------------------------
def test_minmax_rows_scales_over_candidates_only() -> None:
    scores = np.array([[10.0, 2.0, 4.0, 6.0], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    ex_r, ex_c = np.array([0]), np.array([0])  # row 0: item 0 (the max) is excluded
    out = minmax_rows(scores, ex_r, ex_c)
    np.testing.assert_allclose(out[0, 1:], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(out[1], [0.0, 0.0, 0.0, 0.0])  # constant row → 0, not NaN
    assert scores[0, 0] == 10.0  # input untouched


def test_blend_weights_from_meta() -> None:
    assert BlendWeights.from_meta(None) == BlendWeights(0.7, 0.3, 0.0)
    assert BlendWeights.from_meta({"weights": "nonsense"}) == BlendWeights()
    assert BlendWeights.from_meta({"weights": {"svd": -1, "content": 1}}) == BlendWeights()
    fitted = BlendWeights.from_meta({"weights": {"svd": 2.0, "content": 1.0, "popularity": 1.0}})
    assert fitted == pytest.approx(BlendWeights(0.5, 0.25, 0.25))


def test_blend_equals_weighted_sum_of_normalised_components(ratings, users, products, model) -> None:
    inputs = build_inputs(ratings, users, products)
    weights = BlendWeights(0.6, 0.4)
    recs = recommend(inputs, model, model_version="7", weights=weights, k=len(inputs.item_ids))
    u = int(np.searchsorted(inputs.user_ids, "u1"))
    # independent recomputation for u1 over the warehouse items
    item_rows = model.item_index(inputs.item_ids)
    raw = svd_scores(model, model.user_index(["u1"]))[0]
    svd = np.where(item_rows >= 0, raw[np.maximum(item_rows, 0)], model.global_mean + model.user_bias[0])
    con = content_scores(inputs.profiles, inputs.items, np.array([u]))[0]
    cand = inputs.exclude[u].toarray().ravel() == 0

    def norm(x: np.ndarray) -> np.ndarray:
        lo, hi = x[cand].min(), x[cand].max()
        return (x - lo) / (hi - lo)

    expected = 0.6 * norm(svd) + 0.4 * norm(con)
    got = _user(recs, "u1")
    want = pd.Series(expected, index=inputs.item_ids)[got["item_id"]].to_numpy()
    np.testing.assert_allclose(got["score"].to_numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        got["svd_score"].to_numpy(), pd.Series(svd, index=inputs.item_ids)[got["item_id"]], rtol=1e-5
    )
    assert list(got["score"]) == sorted(got["score"], reverse=True)
    assert len(got) == cand.sum()  # every candidate ranked, nothing excluded slipped in


# --- exclusion ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "banned", "allowed"),
    [("purchased", {"i1"}, {"i2"}), ("interacted", {"i1", "i2"}, set()), ("none", set(), {"i1", "i2"})],
)
def test_exclusion_policy(ratings, users, products, model, policy, banned, allowed) -> None:
    inputs = build_inputs(ratings, users, products, exclude=policy)
    recs = recommend(inputs, model, k=len(inputs.item_ids))
    items = set(_user(recs, "u1")["item_id"])
    assert not items & banned
    assert allowed <= items


def test_purchased_items_excluded_for_every_strategy(ratings, users, products, model) -> None:
    inputs = build_inputs(ratings, users, products)
    bought = ratings[ratings["purchases"] > 0][["user_id", "item_id"]]
    for m in (model, None):
        recs = recommend(inputs, m, k=5)
        clash = recs.merge(bought, on=["user_id", "item_id"])
        assert clash.empty, clash


# --- cold start and fallback ------------------------------------------------------------------
def test_cold_start_users_get_segment_popularity(ratings, users, products, model) -> None:
    inputs = build_inputs(ratings, users, products)
    recs = recommend(inputs, model, model_version="7", k=3)
    assert set(recs["user_id"]) == set(users["user_id"])  # everyone gets recommendations
    hybrid = recs[recs["strategy"] == STRATEGY_HYBRID]
    assert set(hybrid["user_id"]) == {"u1", "u2", "u5"}
    # u3: no history, segment b, trending in b = i7 (two recent buyers) then i5
    u3 = _user(recs, "u3")
    assert set(u3["strategy"]) == {STRATEGY_COLD_START}
    assert list(u3["item_id"][:2]) == ["i7", "i5"]
    assert u3["svd_score"].isna().all() and u3["content_score"].isna().all()
    # u4: has history but is absent from the model → the blend without SVD, minus what u4 bought (i5)
    u4 = _user(recs, "u4")
    assert set(u4["strategy"]) == {STRATEGY_NO_SVD}
    assert "i5" not in set(u4["item_id"]) and u4["svd_score"].isna().all()
    assert u4["content_score"].notna().all() and list(u4["rank"]) == [1, 2, 3]
    assert u4["item_id"].iloc[0] == "i4"  # same category and brand as i5 (content, default weights)


def test_no_model_serves_popularity(ratings, users, products) -> None:
    inputs = build_inputs(ratings, users, products)
    recs = recommend(inputs, None, k=3)
    assert set(recs["strategy"]) == {STRATEGY_NO_MODEL}
    assert recs["model_version"].isna().all() and recs["svd_score"].isna().all()
    np.testing.assert_array_equal(recs["score"], recs["popularity_score"])


def test_trending_is_relative_to_the_data_not_now(ratings, users, products) -> None:
    inputs = build_inputs(ratings, users, products)
    pop = inputs.popularity
    assert pop.reference_time == T
    overall = pd.Series(pop.scores[0], index=inputs.item_ids)
    assert pop.segments[0] == ALL_SEGMENTS
    # i3 has four users but three of them are 200 days old; i7 has two buyers this week
    assert overall["i7"] > overall["i3"]
    assert overall["i6"] == 0.0


# --- content ---------------------------------------------------------------------------------
def test_new_item_surfaces_through_content(ratings, users, products, model) -> None:
    inputs = build_inputs(ratings, users, products)
    assert model.item_index(["i6"])[0] == -1 and "i6" not in set(ratings["item_id"])
    recs = recommend(inputs, model, k=3)
    u1 = _user(recs, "u1")
    assert "i6" in set(u1["item_id"])  # the near-duplicate of what u1 bought
    # among items u1 never touched, i6 is the closest in content (i2 was viewed: it is in the profile)
    full = recommend(inputs, model, k=len(inputs.item_ids))
    unseen = _user(full, "u1").set_index("item_id").drop(index=["i2"])["content_score"]
    assert unseen.idxmax() == "i6" and unseen["i6"] > 0
    content_only = recommend(inputs, model, weights=BlendWeights(0.0, 1.0), k=2)
    assert set(_user(content_only, "u1")["item_id"]) == {"i2", "i6"}


# --- shape and determinism -------------------------------------------------------------
def test_output_columns_and_ranks(ratings, users, products, model) -> None:
    recs = recommend(build_inputs(ratings, users, products), model, model_version="7", k=4)
    assert list(recs.columns) == OUTPUT_COLUMNS
    assert not recs.duplicated(["user_id", "rank"]).any()
    assert not recs.duplicated(["user_id", "item_id"]).any()
    ranks = recs.groupby("user_id")["rank"].agg(list)
    assert all(r == list(range(1, len(r) + 1)) for r in ranks)
    assert set(recs["model_version"]) == {"7"}


def test_deterministic_across_runs_row_order_and_block_size(ratings, users, products, model) -> None:
    base = recommend(build_inputs(ratings, users, products), model, model_version="7", k=5)
    shuffled = build_inputs(
        ratings.sample(frac=1.0, random_state=3),
        users.sample(frac=1.0, random_state=4),
        products[::-1],
        exclude="purchased",
    )
    again = recommend(shuffled, model, model_version="7", k=5, block_size=2)
    pd.testing.assert_frame_equal(base, again)


# --- input options chosen on the validation window ---------------------------------------
def test_prior_days_ranks_recent_demand_above_all_time_demand(ratings, users, products) -> None:
    ids = list(products["item_id"])
    all_time = build_inputs(ratings, users, products).popularity.prior
    recent = build_inputs(ratings, users, products, prior_days=30).popularity.prior
    # i3: 4 users, none in the last 30 days; i7: 2 users, both recent
    assert all_time[ids.index("i3")] > all_time[ids.index("i7")]
    assert recent[ids.index("i7")] > recent[ids.index("i3")] > 0  # all-time count still breaks ties
    assert recent.max() == pytest.approx(1.0) and all_time.max() == pytest.approx(1.0)


def test_buy_again_half_life_is_separate_from_the_history(ratings, users, products) -> None:
    short = build_inputs(ratings, users, products, repeat_purchases=True)
    long = build_inputs(ratings, users, products, repeat_purchases=True, buy_again_half_life_days=365.0)
    # u5 bought i4 (its latest) and, a day earlier, i5
    u, i4, i5 = list(short.user_ids).index("u5"), list(short.item_ids).index("i4"), list(short.item_ids).index("i5")
    ratio = lambda inputs: inputs.buy_again[u, i5] / inputs.buy_again[u, i4]  # noqa: E731
    assert ratio(short) == pytest.approx(0.5 ** (1 / 30), rel=1e-5)
    assert ratio(long) == pytest.approx(0.5 ** (1 / 365), rel=1e-5)
    assert (short.history != long.history).nnz == 0  # item-item and content history keep 30 days
