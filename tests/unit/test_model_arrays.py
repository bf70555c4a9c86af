"""A registered model's arrays: written plain, read back equal, older compressed files still read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recomart.model.serialization import read_arrays, write_arrays


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "svd/item_factors": rng.standard_normal((50, 8)).astype(np.float32),
        "ease/weights": np.zeros((200, 200), dtype=np.float32),  # deflate would shrink it to a few hundred bytes
        "ids": np.array(["a", "b"]),
    }


def test_arrays_are_written_uncompressed_and_read_back_equal(tmp_path: Path) -> None:
    arrays = _arrays()
    write_arrays(tmp_path / "m.npz", arrays)

    back = read_arrays(tmp_path / "m.npz")

    assert back.keys() == arrays.keys()
    for key, value in arrays.items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].dtype == value.dtype
    plain = sum(value.nbytes for value in arrays.values())
    assert (tmp_path / "m.npz").stat().st_size >= plain  # stored, not deflated


def test_a_compressed_file_of_an_older_version_still_reads(tmp_path: Path) -> None:
    arrays = _arrays()
    np.savez_compressed(tmp_path / "old.npz", **arrays)  # type: ignore[arg-type]

    back = read_arrays(tmp_path / "old.npz")

    np.testing.assert_array_equal(back["svd/item_factors"], arrays["svd/item_factors"])


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", obj=np.array([{"a": 1}], dtype=object))

    with pytest.raises(ValueError, match="allow_pickle"):
        read_arrays(tmp_path / "p.npz")
