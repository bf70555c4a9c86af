"""A training round's staged parts (:mod:`recomart.model.staging`) read back as they were written: the
catalogue's frames, feed policy and item vectors, the prepared pairs and every part of the split, with
their index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recomart.model.catalogue import Catalogue
from recomart.model.split import Split
from recomart.model.staging import StagedRound, read_catalogue, read_parts, read_prepared, stage_round
from recomart.ranking.embedding import ItemVectors


def _pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u3"],
            "item_id": ["a", "b", "b", "a"],
            "rating": [1.0, 2.0, 1.0, 3.0],
            "event_timestamp": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"], utc=True),
        },
        index=[10, 11, 12, 13],
    )


@pytest.mark.parametrize("combined", [False, True])
def test_the_staged_round_reads_back_unchanged(tmp_path: Path, combined: bool) -> None:
    data = _pairs()
    products = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"], "price": [1.5, 2.5]})
    vectors = ItemVectors(np.array(["a", "b"], dtype=object), np.eye(2, 3, dtype=np.float32))
    catalogue = Catalogue(products, None, True, vectors)
    info = {"kind": "time", "cutoff_valid": "2026-01-02T00:00:00+00:00", "n_events": 4}
    split = Split(data.iloc[:2], data.iloc[2:3], data.iloc[3:], info, data.iloc[:3] if combined else None)
    stage_round(tmp_path, catalogue, data, split)
    staged = StagedRound("run", "inputs", "data", "config", "marts.user_item_events", True, "0", "0")

    read = read_catalogue(tmp_path, staged)
    pd.testing.assert_frame_equal(read.products, products)
    assert read.users is None and read.repeat_purchases
    assert read.item_vectors is not None and list(read.item_vectors.item_ids) == ["a", "b"]
    np.testing.assert_array_equal(read.item_vectors.vectors, vectors.vectors)
    prepared, parts = read_prepared(tmp_path)
    pd.testing.assert_frame_equal(prepared, data)
    for name in ("train", "valid", "test", "train_valid"):
        pd.testing.assert_frame_equal(getattr(parts, name), getattr(split, name))
    assert parts.info == info and (parts.combined is not None) == combined
    train, valid = read_parts(tmp_path)
    pd.testing.assert_frame_equal(train, split.train)
    pd.testing.assert_frame_equal(valid, split.valid)


def test_a_folder_without_a_prepared_split_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no prepared pairs and split"):
        read_prepared(tmp_path)
