"""MovieLens loaders: md5 verification, local folders, the download path and a clear offline error."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from recomart.datasets import movielens as ml

U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"


def write_u_data(folder: Path) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "u.data"
    path.write_text(U_DATA)
    return path, hashlib.md5(U_DATA.encode(), usedforsecurity=False).hexdigest()


def test_verify_md5_accepts_the_right_file_and_rejects_a_changed_one(tmp_path: Path) -> None:
    path, md5 = write_u_data(tmp_path)
    assert ml.md5_of(path) == md5
    assert ml.verify_md5(path, md5.upper()) == path
    path.write_text(U_DATA.replace("881250949", "881250948"))
    with pytest.raises(ml.ChecksumMismatchError, match="expected"):
        ml.verify_md5(path, md5)


def test_official_checksum_is_checked_for_a_local_folder(tmp_path: Path) -> None:
    write_u_data(tmp_path / "ml-100k")
    # our 3-line file is not the real u.data: the published md5 must reject it
    with pytest.raises(ml.ChecksumMismatchError, match=ml.ML_100K_UDATA_MD5):
        ml.fetch_ml_100k(tmp_path / "cache", local_dir=tmp_path)
    with pytest.raises(ml.DatasetUnavailableError, match="no u.data"):
        ml.fetch_ml_100k(tmp_path / "cache", local_dir=tmp_path / "empty")


def test_local_folder_with_matching_md5_is_parsed(tmp_path: Path) -> None:
    _, md5 = write_u_data(tmp_path / "ml-100k")
    df = ml.load_ml_100k(tmp_path / "cache", local_dir=tmp_path / "ml-100k", expected_md5=md5)
    assert list(df.columns) == ["user_id", "item_id", "rating", "event_timestamp"]
    assert df.user_id.tolist() == ["196", "186", "22"] and df.rating.tolist() == [3.0, 3.0, 1.0]
    assert df.event_timestamp.iloc[0] == pd.Timestamp(881250949, unit="s", tz="UTC")


def test_download_extracts_and_verifies_u_data(tmp_path: Path) -> None:
    src, md5 = write_u_data(tmp_path / "src")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(src, "ml-100k/u.data")
        zf.writestr("ml-100k/README", "x")
    cache = tmp_path / "cache"
    got = ml.fetch_ml_100k(cache, url=archive.as_uri(), expected_md5=md5)
    assert got == cache / "ml-100k" / "u.data" and got.read_text() == U_DATA
    # a second call uses the verified cache, even with the URL gone
    assert ml.fetch_ml_100k(cache, url="http://127.0.0.1:9/none.zip", expected_md5=md5) == got
    # a download whose u.data does not match is refused and not cached
    with pytest.raises(ml.ChecksumMismatchError):
        ml.fetch_ml_100k(tmp_path / "cache2", url=archive.as_uri())
    assert not (tmp_path / "cache2" / "ml-100k" / "u.data").exists()


def test_offline_download_fails_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ml.DatasetUnavailableError, match="local_dir"):
        ml.fetch_ml_100k(tmp_path, url="http://127.0.0.1:9/ml-100k.zip", timeout=5)


def test_latest_small_loader(shared_data: Path) -> None:
    df = ml.load_latest_small(shared_data / "movielens-latest-small")
    assert len(df) == 100_836 and df.user_id.nunique() == 610
    assert df.rating.between(0.5, 5.0).all() and str(df.event_timestamp.dt.tz) == "UTC"
    with pytest.raises(ml.DatasetUnavailableError):
        ml.load_latest_small(shared_data / "nope")
