"""The ranker stage of a training round (:mod:`recomart.model.ranker_stage`): feature-store features are
read at the validation cutoff for fitting and at the test cutoff for the test figures, the strategy is
chosen on validation users the ranker was not fitted on, and only a registered ranker is fitted for
serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_ranker import CUTOFF, _item_frame, _planted  # tests/unit is on sys.path (rootdir import mode)

from recomart.model.catalogue import Catalogue
from recomart.model.config import TrainingConfig
from recomart.model.ranker_stage import RANKER_STEPS, RankerOptions, RankerStage, fit_ranker_stage
from recomart.model.split import Split
from recomart.model.train import prepare_ratings
from recomart.ranking.blend import BlendWeights

FEATURE_SERVICE = "recommender_test"


class _StoreAt:
    """Feature reads at a cutoff: the planted ``promoted`` item flag (what the ranker needs beyond the
    history) and every cutoff it was asked for."""

    def __init__(self) -> None:
        self.cutoffs: list[pd.Timestamp] = []

    def __call__(self, cutoff: pd.Timestamp, user_ids: np.ndarray, item_ids: np.ndarray):
        self.cutoffs.append(cutoff)
        return None, _item_frame().reindex(pd.Index(item_ids, dtype=str))


def _split() -> tuple[Split, pd.DataFrame]:
    parts = [
        prepare_ratings(part.assign(rating=1.0, event_timestamp=part["last_interaction_at"])) for part in _planted()
    ]
    data = prepare_ratings(pd.concat(parts, ignore_index=True))
    return Split(parts[0], parts[1], parts[2], {"kind": "time"}), data


def _stage(strategy: str, store: _StoreAt | None) -> RankerStage:
    split, data = _split()
    blend = Catalogue().hybrid(weights=BlendWeights(), svd=None)
    options = RankerOptions(
        svd=TrainingConfig().svd_settings(), features_at=store, feature_service=FEATURE_SERVICE, strategy=strategy
    )
    return fit_ranker_stage(split, data, blend, Catalogue(), options)


@pytest.fixture(scope="module")
def chosen() -> tuple[RankerStage, _StoreAt]:
    store = _StoreAt()
    return _stage("validation", store), store


def test_features_are_read_at_the_validation_and_the_test_cutoff(chosen) -> None:
    stage, store = chosen
    assert store.cutoffs == [CUTOFF, CUTOFF + pd.Timedelta(days=5)]
    assert stage.record["feature_service"] == FEATURE_SERVICE
    assert stage.record["store_features"] == ["item_promoted"]
    assert stage.timings["ranker_features_s"] >= 0
    # the ranker won, so every step ran, each timed without the feature reads
    assert set(stage.timings) == {"ranker_features_s", *(f"ranker_{step}_s" for step in RANKER_STEPS)}
    assert all(stage.timings[f"ranker_{step}_s"] > 0 for step in RANKER_STEPS)


def test_the_ranker_wins_on_validation_and_only_then_is_fitted_for_serving(chosen) -> None:
    stage, _ = chosen
    assert stage.validation["ranker"] > stage.validation["blend"]
    assert stage.strategy == "ranker" and stage.served is not None
    assert stage.served.feature_service == FEATURE_SERVICE
    assert stage.served.user_features is None and stage.served.item_features is None  # read at each cutoff
    assert 0 < stage.metrics["ndcg_at_10"] <= 1 and stage.record["n_compare_users"] > 0
