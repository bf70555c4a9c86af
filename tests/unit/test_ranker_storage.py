"""The learned ranker stored in the hybrid's state (the registered artifact) ranks as the fitted one, and
the gate's reason names the registered strategy with the figures it was chosen on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_ranker import _planted, _ranker  # tests/unit is on sys.path (rootdir import mode)

from recomart.model.gate import strategy_note
from recomart.ranking.base import TrainingSet
from recomart.ranking.hybrid import STRATEGY_RANKER, HybridRecommender
from recomart.ranking.ranker import LearnedRanker


def test_a_stored_ranker_ranks_as_the_fitted_one() -> None:
    train, valid, test = _planted()
    training = TrainingSet.build(train)
    hybrid = HybridRecommender().fit(training)
    hybrid.ranker = _ranker().fit_ranker(training, valid)
    hybrid.ranker.feature_service = "recommender_v1"
    arrays, settings = hybrid.state()
    loaded = HybridRecommender.from_state(arrays, settings)
    assert isinstance(loaded.ranker, LearnedRanker) and loaded.ranker.feature_service == "recommender_v1"
    loaded.ranker.item_features = hybrid.ranker.item_features  # store features are read at each cutoff
    users = pd.DataFrame({"user_id": np.sort(test["user_id"].unique())[:40]})
    ours, theirs = hybrid.rank(users, train), loaded.rank(users, train)
    pd.testing.assert_frame_equal(ours, theirs)
    assert set(ours["strategy"]) == {STRATEGY_RANKER}


def test_the_gate_note_names_the_strategy_and_the_figures() -> None:
    metrics = {
        "ranker": {"ndcg_at_10": 0.33},
        "blend": {"ndcg_at_10": 0.31},
        "svd": {"ndcg_at_10": 0.28},
        "item_item": {"ndcg_at_10": 0.29},
        "popularity": {"ndcg_at_10": 0.15},
    }
    record = {"validation_ndcg": {"ranker": 0.312, "blend": 0.295}, "strategy_rule": "validation"}
    note = strategy_note(metrics, "ndcg_at_10", "ranker", record)
    assert note == (
        "registered the ranker (validation nDCG 0.3120 vs blend 0.2950); test ndcg_at_10: ranker 0.3300, "
        "blend 0.3100, best component item_item 0.2900, popularity 0.1500"
    )
    skipped = strategy_note({"popularity": {"ndcg_at_10": 0.1}}, "ndcg_at_10", "blend", {"skipped": "too few"})
    assert skipped == "registered the blend (ranker not fitted: too few); test ndcg_at_10: popularity 0.1000"


def test_a_ranker_stored_without_the_brand_statistics_asks_to_be_retrained() -> None:
    train, valid, _ = _planted()
    arrays, settings = _ranker().fit_ranker(TrainingSet.build(train), valid).state()
    older = {key: value for key, value in arrays.items() if key != "stats/brand_pop_share"}
    with pytest.raises(ValueError, match="retrain it"):
        LearnedRanker.from_state(older, settings)
