"""The learned ranker (recomart.ranking.ranker) on a planted data set: it learns, it sees only the past,
and one seed gives one model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recomart.ranking.base import Recommender, TrainingSet
from recomart.ranking.history import UserHistory
from recomart.ranking.item_item import ItemItem
from recomart.ranking.metrics import ndcg_at_k
from recomart.ranking.popularity import Popularity
from recomart.ranking.ranker import LearnedRanker
from recomart.ranking.ranker_features import history_features

N_CLUSTERS, PER_CLUSTER, N_USERS = 8, 60, 400
#: 9 promoted items per cluster (the last ones by popularity rank: rarely bought before the cutoff)
PROMOTED = np.array([c * PER_CLUSTER + j for c in range(N_CLUSTERS) for j in range(15, PER_CLUSTER, 5)])
START = pd.Timestamp("2026-01-01", tz="UTC")
CUTOFF = START + pd.Timedelta(days=20)  # training: days 0-19, validation: 20-24, test: 25-29


def _planted() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test) pairs: each user draws from one taste cluster by a Zipf popularity inside it
    (plus two random items); after the cutoff, users mostly pick the cluster's promoted items
    (:data:`PROMOTED`, an item feature), so the ranker must combine the cluster (item-to-item) with the
    item feature, which neither gives alone."""
    rng = np.random.default_rng(7)
    weights = 1.0 / np.arange(1, PER_CLUSTER + 1) ** 1.2
    weights /= weights.sum()
    frames = []
    for user in range(N_USERS):
        cluster = user % N_CLUSTERS
        base = cluster * PER_CLUSTER
        past = rng.choice(PER_CLUSTER, size=8, replace=False, p=weights) + base
        fresh = np.setdiff1d(PROMOTED[np.equal(PROMOTED // PER_CLUSTER, cluster)], past)
        others = np.setdiff1d(np.arange(base, base + PER_CLUSTER), np.concatenate([past, fresh]))
        future = rng.permutation(np.concatenate([rng.permutation(fresh)[:4], rng.permutation(others)[:2]]))
        noise = rng.choice(N_CLUSTERS * PER_CLUSTER, size=2, replace=False)
        items = np.concatenate([past, noise, future[:3], future[3:6]])
        days = np.concatenate([rng.integers(0, 20, 10), rng.integers(20, 25, 3), rng.integers(25, 30, 3)])
        frames.append(
            pd.DataFrame(
                {"user_id": f"u{user:03d}", "item_id": [f"i{i:03d}" for i in items], "day": days[: len(items)]}
            )
        )
    pairs = pd.concat(frames, ignore_index=True).drop_duplicates(["user_id", "item_id"])
    pairs["last_interaction_at"] = START + pd.to_timedelta(pairs["day"], unit="D")
    pairs["purchases"] = 1
    pairs = pairs.drop(columns="day")
    ts = pairs["last_interaction_at"]
    train = pairs[ts < CUTOFF]
    valid = pairs[(ts >= CUTOFF) & (ts < CUTOFF + pd.Timedelta(days=5))]
    return train, valid, pairs[ts >= CUTOFF + pd.Timedelta(days=5)]


def _item_frame() -> pd.DataFrame:
    ids = [f"i{i:03d}" for i in range(N_CLUSTERS * PER_CLUSTER)]
    return pd.DataFrame({"promoted": np.isin(np.arange(len(ids)), PROMOTED).astype(float)}, index=ids)


class _Promoted(Recommender):
    """The item feature alone as a ranking (ties: catalogue order)."""

    def fit(self, training: TrainingSet) -> _Promoted:
        self.item_ids = training.item_ids
        self.flag = _item_frame()["promoted"].reindex(training.item_ids).fillna(0).to_numpy(np.float32)
        return self

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.flag, (len(rows), len(self.flag)))


def _generators() -> dict[str, Recommender]:
    return {"item_item": ItemItem(), "popularity": Popularity()}


def _ranker(seed: int = 1) -> LearnedRanker:
    ranker = LearnedRanker(_generators(), n_candidates=40, seed=seed, num_threads=1, params={"n_estimators": 150})
    ranker.item_features = _item_frame()
    return ranker


def _ndcg(component: Recommender, history: pd.DataFrame, test: pd.DataFrame, training: TrainingSet) -> float:
    users = np.sort(test["user_id"].unique())
    ranked = component.recommend_aligned(UserHistory.align(history, users, training.item_ids), 10, "interacted")
    codes = component.item_rows(np.where(pd.isna(ranked.item_ids), "", ranked.item_ids).ravel())
    relevant = UserHistory.align(test, users, training.item_ids).binary_matrix()
    return ndcg_at_k(codes.reshape(ranked.item_ids.shape), relevant, 10)


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return _planted()


@pytest.fixture(scope="module")
def fitted(planted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> LearnedRanker:
    train, valid, _ = planted
    return _ranker().fit_ranker(TrainingSet.build(train), valid)


def test_ranker_beats_its_best_single_generator(
    fitted: LearnedRanker, planted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    train, valid, test = planted
    history = pd.concat([train, valid], ignore_index=True)
    training = TrainingSet.build(history)
    fitted.fit(training)  # generators refitted on train + validation; the learned model is kept
    ranker = _ndcg(fitted, history, test, training)
    singles = {
        name: _ndcg(g.fit(training), history, test, training)
        for name, g in {**_generators(), "promoted": _Promoted()}.items()
    }
    assert ranker > 1.05 * max(singles.values()), (ranker, singles)
    importances = fitted.feature_importances()
    assert set(importances) >= {"item_item_score", "popularity_score", "category_share", "item_promoted"}


def test_features_use_only_the_history_before_the_cutoff(
    fitted: LearnedRanker, planted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    train, _, _ = planted
    fitted.fit(TrainingSet.build(train))
    users = np.sort(train["user_id"].unique())[:50]
    item = train.loc[~train["item_id"].isin(train.loc[train["user_id"] == users[0], "item_id"]), "item_id"].iloc[0]
    planted_row = pd.DataFrame(
        {"user_id": [users[0]], "item_id": [item], "purchases": [3], "last_interaction_at": [CUTOFF]}
    )
    leaked = pd.concat([train, planted_row], ignore_index=True)
    _, clean = fitted.rows_at(train, users, CUTOFF)
    _, guarded = fitted.rows_at(leaked, users, CUTOFF)
    assert np.array_equal(clean.rows, guarded.rows) and np.array_equal(clean.cols, guarded.cols)
    np.testing.assert_array_equal(clean.x, guarded.x)
    _, unguarded = fitted.rows_at(leaked, users, None)  # the same frame without the cutoff does leak
    assert len(unguarded.rows) != len(clean.rows) or not np.array_equal(unguarded.x, clean.x)


def test_user_and_item_frames_join_as_feature_columns(
    planted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> None:
    train, valid, _ = planted
    ranker = _ranker()
    users = np.sort(train["user_id"].unique())
    ranker.user_features = pd.DataFrame({"age": np.arange(len(users), dtype=float)}, index=users)
    ranker.item_features = pd.DataFrame({"stock": [5.0], "label": ["x"]}, index=["i000"])
    ranker.fit_ranker(TrainingSet.build(train), valid)
    _, rows = ranker.rows_at(train, users[:3])
    age = rows.x[:, rows.names.index("user_age")]
    np.testing.assert_array_equal(age, rows.rows.astype(np.float32))
    stock = rows.x[:, rows.names.index("item_stock")]
    assert np.all((stock == 5.0) == (ranker.item_ids[rows.cols] == "i000"))
    assert np.isnan(stock[ranker.item_ids[rows.cols] != "i000"]).all()


def test_one_seed_gives_one_model(planted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    train, valid, _ = planted
    training = TrainingSet.build(train)
    first, second = _ranker(seed=3).fit_ranker(training, valid), _ranker(seed=3).fit_ranker(training, valid)
    history = UserHistory.align(train, np.sort(train["user_id"].unique()), training.item_ids)
    rows = np.arange(history.n_users)
    np.testing.assert_array_equal(first.score(history, rows), second.score(history, rows))
    assert first.feature_importances() == second.feature_importances()


def test_a_label_sample_caps_the_users_learned_from(planted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    train, valid, _ = planted
    training = TrainingSet.build(train)
    capped = [_ranker(seed=3) for _ in range(2)]
    for ranker in capped:
        ranker.max_label_users = 120
        ranker.fit_ranker(training, valid)
    evidence = capped[0].evidence
    assert evidence["n_label_users"] == 120 < evidence["n_label_users_available"]
    assert evidence["n_candidate_rows"] < _ranker(seed=3).fit_ranker(training, valid).evidence["n_candidate_rows"]
    assert capped[0].feature_importances() == capped[1].feature_importances()  # the same seeded sample


def test_the_user_context_is_built_once_per_history(fitted: LearnedRanker, planted: tuple[pd.DataFrame, ...]) -> None:
    train, _, _ = planted
    fitted.fit(TrainingSet.build(train))
    history = UserHistory.align(train, np.sort(train["user_id"].unique()), fitted.item_ids)
    rows = np.arange(history.n_users)
    in_blocks = fitted.rows_for(history, rows, block_size=7)
    contexts = [key for key in history._cache if isinstance(key, tuple) and key[0] == "ranker_user_context"]
    assert len(contexts) == 1
    fresh = UserHistory.align(train, history.user_ids, fitted.item_ids)
    whole = fitted.rows_for(fresh, rows, block_size=len(rows))
    assert np.array_equal(in_blocks.rows, whole.rows) and np.array_equal(in_blocks.cols, whole.cols)
    np.testing.assert_array_equal(in_blocks.x, whole.x)


@pytest.mark.slow  # 22 EASE / RP3beta grid fits before the ranker (about 60 s on the loaded 2-core machine)
def test_offline_scorer_returns_k_unseen_ids_and_its_evidence(
    planted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> None:
    from recomart.model.catalogue import Catalogue
    from recomart.model.offline import last_days_validation
    from recomart.model.ranker_fit import ranker_scorer

    train, valid, _ = planted
    frame = pd.concat([train, valid], ignore_index=True).rename(columns={"last_interaction_at": "event_timestamp"})
    record: dict = {}
    score = ranker_scorer(Catalogue(), validation=last_days_validation(5), svd=None, k=10, record=record)
    users = np.array(["u000", "u001", "nobody"], dtype=object)
    ids = score(frame, users)
    assert ids.shape == (3, 10)
    assert not set(frame.loc[frame["user_id"] == "u000", "item_id"]) & set(ids[0])
    assert None not in set(ids[2])  # an unknown user still gets the popularity candidates
    assert {"ease_params", "rp3beta_params", "feature_importances", "candidate_recall"} <= set(record)
    assert "svd" not in record["generators"] and "buy_again" not in record["generators"]
    choice = record["n_candidates_choice"]  # N chosen on the validation window, among the grid
    assert record["n_candidates"] == choice["n_candidates"] in {t["n_candidates"] for t in choice["trials"]}


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_early_stopping_keeps_a_user_on_each_side_whatever_the_share(
    planted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], share: float
) -> None:
    train, valid, _ = planted
    ranker = _ranker(seed=3)
    ranker.valid_share = share  # all users would learn (0.0) or all would stop the learning (1.0)
    ranker.max_label_users = 40
    ranker.fit_ranker(TrainingSet.build(train), valid)
    assert ranker.booster is not None and ranker.evidence["best_iteration"] >= 1


def test_store_features_absent_at_a_cutoff_are_ranked_as_missing(
    fitted: LearnedRanker, planted: tuple[pd.DataFrame, ...], caplog: pytest.LogCaptureFixture
) -> None:
    train, _, _ = planted
    history = UserHistory.align(train, np.sort(train["user_id"].unique())[:30], fitted.item_ids)
    rows = np.arange(history.n_users)
    learned = fitted.item_features
    try:
        fitted.item_features = learned.assign(promoted=np.nan)  # the store has the column, no values
        expected = fitted.score(history, rows)
        fitted.item_features = None  # the store has nothing yet at this cutoff
        np.testing.assert_array_equal(fitted.score(history, rows), expected)
        assert "item_promoted" in caplog.text and "ranked as missing" in caplog.text
        fitted.item_features = learned.assign(novel=1.0)
        with pytest.raises(ValueError, match=r"\['item_novel'\] were not learned"):
            fitted.score(history, rows)
    finally:
        fitted.item_features = learned


def test_brand_popularity_and_repeat_features_count_the_history() -> None:
    products = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "title": "",
            "description": "",
            "category": ["mugs", "mugs", "mugs", ""],
            "brand": ["Oak", "Oak", "Elm", ""],
            "price": [2.0, 4.0, 8.0, np.nan],
        }
    )
    at = pd.Timestamp("2026-01-10", tz="UTC")
    history = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
            "item_id": ["a", "b", "c", "a", "d", "a"],
            "purchases": [2, 1, 0, 1, 3, 0],
            "last_interaction_at": at,
        }
    )
    training = TrainingSet.build(history, products)
    ranker = LearnedRanker({"popularity": Popularity()}).fit(training)
    aligned = UserHistory.align(history, np.array(["u1", "u2"], dtype=object), training.item_ids)
    rows, cols = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 3])  # (u1, a), (u1, c), (u2, b), (u2, d)
    features = history_features(aligned, rows, cols, ranker.stats)
    # u1 has two Oak items of three, u2 one Oak item of two; d has no brand
    np.testing.assert_allclose(features["brand_share"], [2 / 3, 1 / 3, 1 / 2, np.nan])
    # distinct users: a 3, b 1, c 1 (mugs: 5; Oak: 4; Elm: 1); d has no category or brand
    np.testing.assert_allclose(features["item_category_pop_share"], [3 / 5, 1 / 5, 1 / 5, np.nan])
    np.testing.assert_allclose(features["item_brand_pop_share"], [3 / 4, 1.0, 1 / 4, np.nan])
    # buyers: a u1 (twice) and u2 (once); b u1 once; c none; d u2 three times
    np.testing.assert_allclose(features["item_repeat_rate"], [1 / 2, np.nan, 0.0, 1.0])
    # u1 bought a twice and b once; u2 bought a once and d three times
    np.testing.assert_allclose(features["user_repeat_share"], [1 / 2, 1 / 2, 1 / 2, 1 / 2])
