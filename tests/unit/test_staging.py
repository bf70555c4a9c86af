"""A training round's staged inputs (:mod:`recomart.model.staging`) read back as they were written: the
catalogue's frames, feed policy and item vectors, and the split's train and validation parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recomart.model.catalogue import Catalogue
from recomart.model.split import Split
from recomart.model.staging import RoundInputs, StagedRound, read_inputs, read_parts, stage_round
from recomart.ranking.embedding import ItemVectors


def test_staged_inputs_and_item_vectors_read_back_unchanged(tmp_path: Path) -> None:
    events = pd.DataFrame({"user_id": ["u1", "u2", "u1"], "item_id": ["a", "b", "b"], "rating": [1.0, 1.0, 1.0]})
    products = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"], "price": [1.5, 2.5]})
    vectors = ItemVectors(np.array(["a", "b"], dtype=object), np.eye(2, 3, dtype=np.float32))
    catalogue = Catalogue(products, None, True, vectors)
    split = Split(events.iloc[:2], events.iloc[2:], events.iloc[:0], {"kind": "time"})
    stage_round(tmp_path, RoundInputs(None, events, catalogue, "marts.user_item_events"), split)
    staged = StagedRound("run", "inputs", "data", "config", "marts.user_item_events", True, "0", "0")

    inputs = read_inputs(tmp_path, staged)

    assert inputs.ratings is None and inputs.dataset_source == "marts.user_item_events"
    pd.testing.assert_frame_equal(inputs.events, events)
    pd.testing.assert_frame_equal(inputs.catalogue.products, products)
    assert inputs.catalogue.users is None and inputs.catalogue.repeat_purchases
    assert inputs.catalogue.item_vectors is not None
    assert list(inputs.catalogue.item_vectors.item_ids) == ["a", "b"]
    np.testing.assert_array_equal(inputs.catalogue.item_vectors.vectors, vectors.vectors)
    train, valid = read_parts(tmp_path)
    pd.testing.assert_frame_equal(train, split.train.reset_index(drop=True))
    pd.testing.assert_frame_equal(valid, split.valid.reset_index(drop=True))
