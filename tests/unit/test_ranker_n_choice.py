"""The ranker's candidates per generator ``N`` chosen on validation (recomart.model.ranker_fit): the
validation users split in two disjoint seeded halves, the ``N`` with the best held-out nDCG wins."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recomart.model.ranker_fit import choose_n_candidates, split_label_users
from recomart.ranking.base import Recommender, TrainingSet
from recomart.ranking.item_item import ItemItem
from recomart.ranking.popularity import Popularity

N_USERS, N_CLUSTERS, PER_CLUSTER = 300, 6, 40
START = pd.Timestamp("2026-01-01", tz="UTC")


def _planted() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train pairs, validation pairs): each user buys 8 items of one taste cluster before the cutoff
    and 3 other items of the same cluster after it, so only a deep enough candidate list holds them."""
    rng = np.random.default_rng(11)
    train, valid = [], []
    for user in range(N_USERS):
        base = (user % N_CLUSTERS) * PER_CLUSTER
        items = rng.permutation(PER_CLUSTER)[:11] + base
        past = pd.DataFrame({"user_id": f"u{user:03d}", "item_id": [f"i{i:03d}" for i in items[:8]]})
        past["last_interaction_at"] = START + pd.to_timedelta(rng.integers(0, 20, 8), unit="D")
        train.append(past)
        valid.append(pd.DataFrame({"user_id": f"u{user:03d}", "item_id": [f"i{i:03d}" for i in items[8:]]}))
    pairs = pd.concat(train, ignore_index=True)
    pairs["purchases"] = 1
    return pairs, pd.concat(valid, ignore_index=True)


def _generators() -> dict[str, Recommender]:
    return {"item_item": ItemItem(), "popularity": Popularity()}


def test_label_users_split_in_two_disjoint_seeded_halves() -> None:
    _, labels = _planted()
    fit, held = split_label_users(labels, seed=5)
    assert not set(fit["user_id"]) & set(held["user_id"])
    assert len(fit) + len(held) == len(labels)
    assert 0.35 < fit["user_id"].nunique() / N_USERS < 0.65
    again, _ = split_label_users(labels, seed=5)
    pd.testing.assert_frame_equal(fit, again)
    other, _ = split_label_users(labels, seed=6)
    assert set(other["user_id"]) != set(fit["user_id"])


def test_the_candidate_count_with_the_best_held_out_ndcg_wins() -> None:
    train, labels = _planted()
    choice = choose_n_candidates(_generators, TrainingSet.build(train), labels, grid=(30, 1), seed=3)
    trials = {t["n_candidates"]: t for t in choice["trials"]}
    assert [t["n_candidates"] for t in choice["trials"]] == [1, 30]  # tried smallest first
    assert trials[1]["candidate_recall"] < trials[30]["candidate_recall"]
    assert trials[30]["ndcg_at_10"] > trials[1]["ndcg_at_10"]
    assert choice["n_candidates"] == 30
    assert choice["validation_ndcg_at_10"] == trials[30]["ndcg_at_10"]
    assert 0 < choice["n_fit_label_users"] < N_USERS and 0 < choice["n_held_users"] < N_USERS
    assert choice["n_fit_label_users"] + choice["n_held_users"] == N_USERS
