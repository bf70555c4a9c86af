"""MovieLens loaders: latest-small from a local folder, and ML-100K from GroupLens (md5-checked).

Both return the ratings frame the model stage uses: ``user_id, item_id`` (text), ``rating`` (float)
and ``event_timestamp`` (UTC).  ML-100K may not be redistributed, so it is downloaded from GroupLens
(or read from a local folder holding ``u.data``) and ``u.data`` is verified against the published md5.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd

ML_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML_100K_UDATA_MD5 = "6e47046882bad158b0efbb84cd5cb987"
LATEST_SMALL_RATINGS = "ratings.csv"


class DatasetUnavailableError(RuntimeError):
    """The data set is neither in the given folder nor downloadable (e.g. no internet)."""


class ChecksumMismatchError(ValueError):
    """A file's md5 differs from the published one."""


def _frame(users: pd.Series, items: pd.Series, ratings: pd.Series, epochs: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": users.astype(str).to_numpy(),
            "item_id": items.astype(str).to_numpy(),
            "rating": ratings.astype("float64").to_numpy(),
            "event_timestamp": pd.to_datetime(epochs.astype("int64"), unit="s", utc=True).to_numpy(),
        }
    )


def load_latest_small(folder: Path) -> pd.DataFrame:
    """Ratings of MovieLens latest-small (``ratings.csv`` in ``folder``): 100,836 rows, ratings 0.5..5."""
    path = Path(folder) / LATEST_SMALL_RATINGS
    if not path.is_file():
        raise DatasetUnavailableError(f"{path} not found (expected MovieLens latest-small in {folder})")
    raw = pd.read_csv(path, dtype={"userId": "int64", "movieId": "int64", "rating": "float64", "timestamp": "int64"})
    return _frame(raw["userId"], raw["movieId"], raw["rating"], raw["timestamp"])


def md5_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: Path, expected: str) -> Path:
    """Return ``path`` if its md5 is ``expected``, else raise :class:`ChecksumMismatchError`."""
    actual = md5_of(path)
    if actual != expected.lower():
        raise ChecksumMismatchError(f"md5 of {path} is {actual}, expected {expected}: corrupt or wrong file")
    return Path(path)


def parse_u_data(path: Path) -> pd.DataFrame:
    """``u.data`` (tab-separated user, item, rating, unix time) as a ratings frame."""
    raw = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=["user", "item", "rating", "ts"],
        dtype={"user": "int64", "item": "int64", "rating": "float64", "ts": "int64"},
    )
    return _frame(raw["user"], raw["item"], raw["rating"], raw["ts"])


def _download(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https URL
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DatasetUnavailableError(
            f"cannot download {url} ({exc}). Without internet, download ml-100k.zip elsewhere, unzip it and "
            "pass its folder (the one holding u.data) as local_dir"
        ) from exc


def fetch_ml_100k(
    cache_dir: Path,
    *,
    local_dir: Path | None = None,
    url: str = ML_100K_URL,
    expected_md5: str = ML_100K_UDATA_MD5,
    timeout: float = 60.0,
) -> Path:
    """Path of a verified ``u.data``: from ``local_dir`` if given, else from ``cache_dir``, else downloaded.

    A local or cached ``u.data`` is verified like a downloaded one; a mismatch raises
    :class:`ChecksumMismatchError` and a failed download :class:`DatasetUnavailableError`.
    """
    if local_dir is not None:
        candidates = [Path(local_dir) / "u.data", Path(local_dir) / "ml-100k" / "u.data"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DatasetUnavailableError(f"no u.data in {local_dir} (nor in {Path(local_dir) / 'ml-100k'})")
        return verify_md5(found, expected_md5)
    target = Path(cache_dir) / "ml-100k" / "u.data"
    if target.is_file():
        return verify_md5(target, expected_md5)
    payload = _download(url, timeout)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        member = next((n for n in archive.namelist() if n.endswith("/u.data") or n == "u.data"), None)
        if member is None:
            raise DatasetUnavailableError(f"{url} holds no u.data")
        tmp = target.with_suffix(".part")
        with archive.open(member) as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    try:
        verify_md5(tmp, expected_md5)
    except ChecksumMismatchError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(target)
    return target


def load_ml_100k(cache_dir: Path, *, local_dir: Path | None = None, **kwargs) -> pd.DataFrame:
    """MovieLens 100K ratings (100,000 rows), downloaded and verified or read from ``local_dir``."""
    return parse_u_data(fetch_ml_100k(cache_dir, local_dir=local_dir, **kwargs))
