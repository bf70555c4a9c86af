"""Hybrid recommender on a small hand-built catalogue and a hand-built factor model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recomart.ranking.base import TrainingSet
from recomart.ranking.blend import BlendWeights, minmax_rows
from recomart.ranking.content import content_scores
from recomart.ranking.factors import FactorModel
from recomart.ranking.history import UserHistory
from recomart.ranking.hybrid import (
    RANKED_COLUMNS,
    STRATEGY_COLD_START,
    STRATEGY_HYBRID,
    STRATEGY_NO_MODEL,
    STRATEGY_NO_SVD,
    HybridRecommender,
)
from recomart.ranking.popularity import ALL_SEGMENTS
from recomart.ranking.scoring import svd_scores
from recomart.ranking.svd import BiasedSVD

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


def hybrid(
    ratings: pd.DataFrame,
    users: pd.DataFrame,
    products: pd.DataFrame,
    model: FactorModel | None = None,
    *,
    personalised: bool = True,
    **settings,
) -> HybridRecommender:
    """A hybrid fitted on the hand-built marts (``settings``: weights, options, repeat_purchases, exclude)."""
    svd = None if model is None else BiasedSVD.from_factors(model)
    recommender = HybridRecommender(svd=svd, personalised=personalised, **settings)
    return recommender.fit(TrainingSet.build(ratings, products, users))


def rank(recommender: HybridRecommender, ratings: pd.DataFrame, users: pd.DataFrame, k: int, **kw) -> pd.DataFrame:
    """Every user of ``users`` (sorted, with segments) ranked against ``ratings``."""
    return recommender.rank(users.sort_values("user_id"), ratings, k=k, **kw)


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
    recommender = hybrid(ratings, users, products, model, weights=BlendWeights(0.6, 0.4))
    items = recommender.item_ids
    recs = rank(recommender, ratings, users, len(items))
    # independent recomputation for u1 over the catalogue
    history = UserHistory.align(ratings, np.array(["u1"], dtype=object), items)
    item_rows = model.item_index(items)
    raw = svd_scores(model, model.user_index(["u1"]))[0]
    svd = np.where(item_rows >= 0, raw[np.maximum(item_rows, 0)], model.global_mean + model.user_bias[0])
    con = content_scores(recommender.content.profiles(history), recommender.content.vectors, np.array([0]))[0]
    cand = history.exclusion("purchased")[0].toarray().ravel() == 0

    def norm(x: np.ndarray) -> np.ndarray:
        lo, hi = x[cand].min(), x[cand].max()
        return (x - lo) / (hi - lo)

    expected = 0.6 * norm(svd) + 0.4 * norm(con)
    got = _user(recs, "u1")
    want = pd.Series(expected, index=items)[got["item_id"]].to_numpy()
    np.testing.assert_allclose(got["score"].to_numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["svd_score"].to_numpy(), pd.Series(svd, index=items)[got["item_id"]], rtol=1e-5)
    assert list(got["score"]) == sorted(got["score"], reverse=True)
    assert len(got) == cand.sum()  # every candidate ranked, nothing excluded slipped in


# --- exclusion ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "banned", "allowed"),
    [("purchased", {"i1"}, {"i2"}), ("interacted", {"i1", "i2"}, set()), ("none", set(), {"i1", "i2"})],
)
def test_exclusion_policy(ratings, users, products, model, policy, banned, allowed) -> None:
    recommender = hybrid(ratings, users, products, model, exclude=policy)
    items = set(_user(rank(recommender, ratings, users, len(recommender.item_ids)), "u1")["item_id"])
    assert not items & banned
    assert allowed <= items


def test_purchased_items_excluded_for_every_strategy(ratings, users, products, model) -> None:
    bought = ratings[ratings["purchases"] > 0][["user_id", "item_id"]]
    for recommender in (hybrid(ratings, users, products, model), hybrid(ratings, users, products, personalised=False)):
        clash = rank(recommender, ratings, users, 5).merge(bought, on=["user_id", "item_id"])
        assert clash.empty, clash


def test_seen_items_and_buy_again_come_from_the_history_passed_not_the_fitted_one(ratings, users, products, model):
    """A purchase made after fitting is excluded, and buy-again counts it, because both are derived from
    the history given at ranking time."""
    recommender = hybrid(ratings, users, products, model)
    before = _user(rank(recommender, ratings, users, 7), "u1")
    newest = before["item_id"].iloc[0]
    later = pd.concat(
        [
            ratings,
            pd.DataFrame(
                {"user_id": ["u1"], "item_id": [newest], "rating": [5.0], "purchases": [3], "last_interaction_at": [T]}
            ),
        ],
        ignore_index=True,
    )
    after = _user(rank(recommender, later, users, 7), "u1")
    assert newest not in set(after["item_id"])
    repeat = hybrid(ratings, users, products, model, repeat_purchases=True, weights=BlendWeights.only("buy_again"))
    top = _user(rank(repeat, later, users, 1), "u1")
    assert top["item_id"].iloc[0] == newest and top["buy_again_score"].iloc[0] > 0


# --- cold start and fallback ------------------------------------------------------------------
def test_cold_start_users_get_segment_popularity(ratings, users, products, model) -> None:
    recs = rank(hybrid(ratings, users, products, model), ratings, users, 3)
    assert set(recs["user_id"]) == set(users["user_id"])  # everyone gets recommendations
    assert set(recs[recs["strategy"] == STRATEGY_HYBRID]["user_id"]) == {"u1", "u2", "u5"}
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


def test_unknown_users_without_a_segment_get_overall_popularity(ratings, users, products, model) -> None:
    recommender = hybrid(ratings, users, products, model)
    recs = recommender.rank(["nobody", "u1"], ratings, k=3)
    assert list(recs["user_id"].unique()) == ["nobody", "u1"]  # request order
    nobody = _user(recs, "nobody")
    assert set(nobody["strategy"]) == {STRATEGY_COLD_START}
    overall = pd.Series(recommender.popularity.table.scores[0], index=recommender.item_ids)
    assert list(nobody["item_id"]) == list(overall.sort_values(ascending=False, kind="stable").index[:3])


def test_no_model_serves_popularity(ratings, users, products) -> None:
    recs = rank(hybrid(ratings, users, products, personalised=False), ratings, users, 3)
    assert set(recs["strategy"]) == {STRATEGY_NO_MODEL}
    assert recs["svd_score"].isna().all()
    np.testing.assert_array_equal(recs["score"], recs["popularity_score"])


def test_trending_is_relative_to_the_data_not_now(ratings, users, products) -> None:
    recommender = hybrid(ratings, users, products)
    table = recommender.popularity.table
    assert table.reference_time == T
    overall = pd.Series(table.scores[0], index=recommender.item_ids)
    assert table.segments[0] == ALL_SEGMENTS
    # i3 has four users but three of them are 200 days old; i7 has two buyers this week
    assert overall["i7"] > overall["i3"]
    assert overall["i6"] == 0.0


# --- content ---------------------------------------------------------------------------------
def test_new_item_surfaces_through_content(ratings, users, products, model) -> None:
    recommender = hybrid(ratings, users, products, model)
    assert model.item_index(["i6"])[0] == -1 and "i6" not in set(ratings["item_id"])
    u1 = _user(rank(recommender, ratings, users, 3), "u1")
    assert "i6" in set(u1["item_id"])  # the near-duplicate of what u1 bought
    # among items u1 never touched, i6 is the closest in content (i2 was viewed: it is in the profile)
    full = rank(recommender, ratings, users, len(recommender.item_ids))
    unseen = _user(full, "u1").set_index("item_id").drop(index=["i2"])["content_score"]
    assert unseen.idxmax() == "i6" and unseen["i6"] > 0
    content_only = hybrid(ratings, users, products, model, weights=BlendWeights(0.0, 1.0))
    assert set(_user(rank(content_only, ratings, users, 2), "u1")["item_id"]) == {"i2", "i6"}


# --- shape, determinism and storage ------------------------------------------------------
def test_output_columns_and_ranks(ratings, users, products, model) -> None:
    recs = rank(hybrid(ratings, users, products, model), ratings, users, 4)
    assert list(recs.columns) == RANKED_COLUMNS
    assert not recs.duplicated(["user_id", "rank"]).any()
    assert not recs.duplicated(["user_id", "item_id"]).any()
    ranks = recs.groupby("user_id")["rank"].agg(list)
    assert all(r == list(range(1, len(r) + 1)) for r in ranks)


def test_deterministic_across_runs_row_order_and_block_size(ratings, users, products, model) -> None:
    base = rank(hybrid(ratings, users, products, model), ratings, users, 5)
    shuffled = hybrid(
        ratings.sample(frac=1.0, random_state=3),
        users.sample(frac=1.0, random_state=4),
        products[::-1],
        model,
        exclude="purchased",
    )
    again = rank(shuffled, ratings.sample(frac=1.0, random_state=5), users, 5, block_size=2)
    pd.testing.assert_frame_equal(base, again)


def test_state_round_trip_ranks_the_same(ratings, users, products, model) -> None:
    options = {"top_n": 2, "prior_days": 30, "buy_again_half_life_days": 365.0}
    weights = BlendWeights(cf=0.3, content=0.2, popularity=0.1, item_item=0.2, buy_again=0.2)
    recommender = hybrid(ratings, users, products, model, weights=weights, options=options, repeat_purchases=True)
    arrays, settings = recommender.state()
    assert all(value.dtype != object for value in arrays.values())  # storable without pickles
    again = HybridRecommender.from_state(arrays, settings)
    assert again.options == options and again.exclude == "none" and again.weights == recommender.weights
    pd.testing.assert_frame_equal(rank(recommender, ratings, users, 5), rank(again, ratings, users, 5))
    pd.testing.assert_frame_equal(recommender.similar_items_frame(), again.similar_items_frame())
    pd.testing.assert_frame_equal(recommender.popular_items_frame(3), again.popular_items_frame(3))


# --- component options chosen on the validation window ---------------------------------------
def test_prior_days_ranks_recent_demand_above_all_time_demand(ratings, users, products) -> None:
    ids = list(products["item_id"])
    all_time = hybrid(ratings, users, products).popularity.prior
    recent = hybrid(ratings, users, products, options={"prior_days": 30}).popularity.prior
    # i3: 4 users, none in the last 30 days; i7: 2 users, both recent
    assert all_time[ids.index("i3")] > all_time[ids.index("i7")]
    assert recent[ids.index("i7")] > recent[ids.index("i3")] > 0  # all-time count still breaks ties
    assert recent.max() == pytest.approx(1.0) and all_time.max() == pytest.approx(1.0)


def test_buy_again_half_life_is_separate_from_the_history(ratings, users, products) -> None:
    short = hybrid(ratings, users, products, repeat_purchases=True)
    long = hybrid(ratings, users, products, repeat_purchases=True, options={"buy_again_half_life_days": 365.0})
    history = UserHistory.align(ratings, np.array(["u5"], dtype=object), short.item_ids)
    # u5 bought i4 (its latest) and, a day earlier, i5
    i4, i5 = list(short.item_ids).index("i4"), list(short.item_ids).index("i5")

    def ratio(recommender: HybridRecommender) -> float:
        matrix = recommender.buy_again.matrix(history)
        return matrix[0, i5] / matrix[0, i4]

    assert ratio(short) == pytest.approx(0.5 ** (1 / 30), rel=1e-5)
    assert ratio(long) == pytest.approx(0.5 ** (1 / 365), rel=1e-5)
    assert short.item_item.top_n == long.item_item.top_n  # item-item and content history keep 30 days
