"""UCI Online Retail as a RecoMart data set: landing links, the derived catalogue, the official loader.

* :func:`prepare_uci_landing` links the 305 daily files of a by-day copy into
  ``<landing>/uci/by-day/`` (one symlink per file, nothing is copied) and derives
  ``<landing>/uci/products.csv`` in the catalog API's format.
* :func:`derive_uci_products` builds that catalogue: per StockCode the most frequent non-empty
  Description, the median of the positive UnitPrices and the first time the code was seen.
  Non-product codes (postage, fees, vouchers) are excluded with the *same* list the dbt rule
  ``non_product_code`` uses: the vars ``uci_non_product_codes`` / ``uci_non_product_code_patterns``
  of ``dbt_project/dbt_project.yml`` (read by :func:`non_product_rules`).
* :func:`download_uci` is the official loader: it downloads UCI's zip, checks its sha256, reads the
  workbook and writes the by-day files with :func:`split_by_day`, whose output is byte-identical to
  the by-day copy (checked against ``MD5SUMS.by-day`` by :func:`verify_by_day`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from recomart.config import PROJECT_ROOT
from recomart.datasets.generator import PRODUCT_COLUMNS
from recomart.ingest.feeds import UCI_ORDERS
from recomart.ingest.parse import parse_feed_bytes

log = logging.getLogger(__name__)

UCI_URL = "https://archive.ics.uci.edu/static/public/352/online+retail.zip"
UCI_XLSX_NAME = "Online Retail.xlsx"
# Checksums of the official download. They could not be computed here (this machine reaches only
# package registries); they are the values pinned, identically, by several independent public
# repositories that verified their own download of UCI_URL (zip of 23,715,478 bytes). The by-day
# reconstruction (split_by_day + verify_by_day against MD5SUMS.by-day) is the second, independent check.
UCI_ZIP_SHA256 = "f5385cbb54bbebf7196389109c6b0621faab0c304e3702548165e71c84aede8b"
UCI_XLSX_SHA256 = "43465a06f2ccf7c8b5bd2892bc7defb52f97487934fe93b16ae4c3936424676d"
UCI_ROWS = 541_909
UCI_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
# The catalog API contract (ingest.catalog.ProductRecord, raw.products) requires a non-empty category;
# UCI has none, so every UCI product gets this one. Brand and description stay empty.
UCI_CATEGORY = "uncategorised"
DEFAULT_DBT_PROJECT_FILE = PROJECT_ROOT / "dbt_project" / "dbt_project.yml"
_TS_OUT = "%Y-%m-%d %H:%M:%S"


class UCIDownloadError(RuntimeError):
    """The official UCI file could not be downloaded or did not match its pinned checksum."""


# --- non-product codes: one list, shared with dbt ------------------------------------------------
@dataclass(frozen=True)
class NonProductRules:
    """Stock codes that are not products: exact codes (case-insensitive) and SQL LIKE patterns."""

    codes: tuple[str, ...]
    like_patterns: tuple[str, ...]

    def mask(self, stock_codes: pd.Series) -> np.ndarray:
        """True where a stock code is a non-product code (the dbt rule's condition, vectorised)."""
        hit = stock_codes.str.upper().isin({c.upper() for c in self.codes}).to_numpy()
        for pattern in self.like_patterns:
            hit |= stock_codes.str.fullmatch(like_to_regex(pattern)).fillna(False).to_numpy(dtype=bool)
        return hit


def like_to_regex(pattern: str) -> str:
    """A Postgres LIKE pattern (escape ``\\``) as an equivalent, anchored-by-fullmatch regex."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return "".join(out)


def non_product_rules(dbt_project_file: Path = DEFAULT_DBT_PROJECT_FILE) -> NonProductRules:
    """The non-product codes of dbt's ``non_product_code`` rule (vars of ``dbt_project.yml``)."""
    variables = (yaml.safe_load(Path(dbt_project_file).read_text()) or {}).get("vars", {})
    try:
        codes = tuple(str(c) for c in variables["uci_non_product_codes"])
        patterns = tuple(str(p) for p in variables.get("uci_non_product_code_patterns", ()))
    except KeyError as exc:
        raise KeyError(f"{dbt_project_file}: vars.uci_non_product_codes is missing") from exc
    return NonProductRules(codes, patterns)


# --- landing ---------------------------------------------------------------------------------
def _day_files(source_dir: Path) -> dict[date, Path]:
    files: dict[date, Path] = {}
    for path in sorted(Path(source_dir).glob("*.csv")):
        try:
            files[date.fromisoformat(path.stem)] = path.absolute()  # the landing links name the source folder
        except ValueError:
            log.warning("ignoring %s: not named YYYY-MM-DD.csv", path)
    return files


def link_by_day(landing_dir: Path, source_dir: Path) -> tuple[int, int, int]:
    """Symlink every ``YYYY-MM-DD.csv`` of ``source_dir`` as the feed's file for that day.

    Real files already in the landing folder (e.g. a corrected delivery) are kept; stale links
    (to days the source no longer has) are removed.  Returns (linked, kept real files, removed).
    """
    files = _day_files(source_dir)
    if not files:
        raise FileNotFoundError(f"no UCI by-day files (YYYY-MM-DD.csv) in {source_dir}")
    targets = {UCI_ORDERS.path_for(Path(landing_dir), day): src for day, src in files.items()}
    folder = next(iter(targets)).parent
    if folder.is_symlink():  # an older layout linked the whole folder: replace it by a real folder
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    linked = kept = removed = 0
    for link, src in targets.items():
        if link.is_symlink():
            if link.readlink() == src:
                linked += 1
                continue
            link.unlink()
        elif link.exists():
            kept += 1
            continue
        link.symlink_to(src)
        linked += 1
    for stale in folder.glob("*.csv"):
        if stale.is_symlink() and stale not in targets:
            stale.unlink()
            removed += 1
    return linked, kept, removed


def _read_order_lines(files: Iterable[Path]) -> pd.DataFrame:
    """The records of the files that the loader accepts (same strict parser), as strings."""
    wanted = ["stock_code", "description", "unit_price", "invoice_date"]
    tables = [parse_feed_bytes(Path(f).read_bytes(), UCI_ORDERS).good.select(wanted) for f in files]
    if not tables:
        raise FileNotFoundError("no UCI files to derive the catalogue from")
    return pa.concat_tables(tables).to_pandas()


def derive_uci_products(
    files: Sequence[Path], rules: NonProductRules | None = None, category: str = UCI_CATEGORY
) -> pd.DataFrame:
    """The catalogue of the order lines in ``files`` (columns ``generator.PRODUCT_COLUMNS``).

    One row per trimmed StockCode, non-product codes excluded: ``title`` = most frequent non-empty
    trimmed Description (ties: the smallest), ``price`` = median of the positive UnitPrices,
    ``updated_at`` = first InvoiceDate of the code (shop time -> UTC). Codes without any description
    or positive price cannot satisfy the catalogue contract and are left out (dbt still describes them
    from the order lines in ``dim_products``).
    """
    rules = rules or non_product_rules()
    lines = _read_order_lines(files)
    lines["stock_code"] = lines["stock_code"].str.strip()
    lines = lines.loc[~rules.mask(lines["stock_code"])]
    seen = pd.to_datetime(lines["invoice_date"], format=UCI_ORDERS.timestamp_format)
    seen = seen.dt.tz_localize(
        UCI_ORDERS.timezone, ambiguous=np.zeros(len(seen), dtype=bool), nonexistent="shift_forward"
    ).dt.tz_convert("UTC")
    first_seen = seen.groupby(lines["stock_code"]).min()

    desc = lines["description"].fillna("").str.strip()
    named = pd.DataFrame({"item_id": lines["stock_code"], "title": desc}).loc[desc != ""]
    counts = named.value_counts().rename("n").reset_index()
    titles = (
        counts.sort_values(["item_id", "n", "title"], ascending=[True, False, True])
        .drop_duplicates("item_id")
        .set_index("item_id")["title"]
    )

    price = pd.to_numeric(lines["unit_price"])
    positive = price > 0
    prices = price[positive].groupby(lines.loc[positive, "stock_code"]).median()

    out = pd.DataFrame({"title": titles, "price": prices}).dropna()
    out.index.name = "item_id"
    out = out.reset_index().sort_values("item_id", ignore_index=True)
    return pd.DataFrame(
        {
            "item_id": out["item_id"],
            "title": out["title"],
            "description": "",
            "category": category,
            "brand": "",
            "price": out["price"].round(4).to_numpy().astype(str),
            "updated_at": first_seen.reindex(out["item_id"]).dt.strftime(_TS_OUT).to_numpy(),
        }
    )[PRODUCT_COLUMNS]


def _write_if_changed(path: Path, payload: bytes) -> bool:
    """Atomically replace ``path`` with ``payload`` unless it already holds exactly that."""
    if path.is_file() and path.read_bytes() == payload:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)
    os.replace(tmp, path)
    return True


def prepare_uci_landing(landing_dir: Path, source_dir: Path, *, dbt_project_file: Path | None = None) -> str:
    """Link the by-day files of ``source_dir`` into ``<landing>/uci/by-day/`` and derive
    ``<landing>/uci/products.csv``; return a one-line summary.

    ``dbt_project_file`` supplies the non-product codes (default: this checkout's dbt project).
    """
    landing_dir, source_dir = Path(landing_dir), Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(
            f"UCI by-day folder not found: {source_dir} (a copy of ../shared/data/uci-online-retail/by-day, "
            f"or the output of recomart.datasets.uci.download_uci)"
        )
    linked, kept, removed = link_by_day(landing_dir, source_dir)
    days = sorted(_day_files(source_dir))
    rules = non_product_rules(dbt_project_file or DEFAULT_DBT_PROJECT_FILE)
    products = derive_uci_products([UCI_ORDERS.path_for(landing_dir, d) for d in days], rules)
    target = landing_dir / UCI_ORDERS.subfolder / "products.csv"
    _write_if_changed(target, products.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    extra = (f", {kept} local files kept" if kept else "") + (f", {removed} stale links removed" if removed else "")
    return (
        f"{linked} UCI daily files linked from {source_dir} ({days[0]} .. {days[-1]}{extra}), "
        f"{len(products):,} products in {target}"
    )


# --- the official file ------------------------------------------------------------------------
def _text(values: pd.Series) -> pd.Series:
    """Values as the by-day files write them: integral floats without '.0' (ids), missing -> ''."""
    if pd.api.types.is_float_dtype(values) and bool((values.dropna() % 1 == 0).all()):
        values = values.astype("Int64")
    return values.astype("string").fillna("").astype(object)


def _float_text(values: pd.Series) -> pd.Series:
    """Floats in their shortest round-trip form ('2.55', '17850.0'); missing -> ''."""
    numbers = pd.to_numeric(values).astype("float64")
    text = pd.Series(numbers.to_numpy().astype(str), index=values.index, dtype=object)
    return text.where(numbers.notna(), "")


def by_day_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The eight UCI columns as the strings of the by-day format, from the workbook's native types
    (``pandas.read_excel``) or from strings."""
    missing = [c for c in UCI_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"not a UCI Online Retail frame: missing columns {missing}")
    stamps = pd.to_datetime(frame["InvoiceDate"])
    return pd.DataFrame(
        {
            "InvoiceNo": _text(frame["InvoiceNo"]),
            "StockCode": _text(frame["StockCode"]),
            "Description": _text(frame["Description"]),
            "Quantity": pd.to_numeric(frame["Quantity"]).astype("int64").astype(str),
            "InvoiceDate": stamps.dt.strftime(_TS_OUT),
            "UnitPrice": _float_text(frame["UnitPrice"]),
            "CustomerID": _float_text(frame["CustomerID"]),
            "Country": _text(frame["Country"]),
        }
    )


def split_by_day(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write ``frame`` (the UCI rows, in file order) as one ``YYYY-MM-DD.csv`` per InvoiceDate day,
    byte for byte in the by-day format: the header, rows in input order, minimal quoting, LF endings."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = by_day_frame(frame)
    days = text["InvoiceDate"].str.slice(0, 10)
    written = []
    for day, rows in text.groupby(days, sort=True):
        path = out_dir / f"{day}.csv"
        _write_if_changed(path, rows.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        written.append(path)
    return written


def verify_by_day(folder: Path, md5sums: Path) -> list[str]:
    """Problems of ``folder`` against an ``md5sum`` listing (missing, extra or different files)."""
    expected = {}
    for line in Path(md5sums).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            expected[name.strip().lstrip("*")] = digest
    found = {p.name: p for p in Path(folder).glob("*.csv")}
    problems = [f"missing {name}" for name in sorted(set(expected) - set(found))]
    problems += [f"unexpected {name}" for name in sorted(set(found) - set(expected))]
    for name in sorted(set(expected) & set(found)):
        digest = hashlib.md5(found[name].read_bytes()).hexdigest()
        if digest != expected[name]:
            problems.append(f"{name}: md5 {digest}, expected {expected[name]}")
    return problems


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, timeout_s: float) -> None:
    import httpx

    part = target.with_name(target.name + ".part")
    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            response.raise_for_status()
            with part.open("wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    handle.write(chunk)
    except httpx.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise UCIDownloadError(
            f"could not download {url}: {type(exc).__name__}: {exc}. Are you offline? Put the zip at {target} "
            f"by hand, or use the by-day copy in ../shared/data/uci-online-retail/by-day instead."
        ) from exc
    part.replace(target)


def _read_workbook(xlsx: Path) -> pd.DataFrame:
    try:
        import openpyxl  # noqa: F401  (pandas' xlsx engine)
    except ImportError as exc:
        raise UCIDownloadError("reading the UCI workbook needs openpyxl: pip install openpyxl") from exc
    frame = pd.read_excel(xlsx, engine="openpyxl")
    if list(frame.columns) != UCI_COLUMNS or len(frame) != UCI_ROWS:
        raise UCIDownloadError(
            f"{xlsx}: expected {UCI_ROWS:,} rows of {UCI_COLUMNS}, got {len(frame):,} rows of {list(frame.columns)}"
        )
    return frame


def download_uci(dest: Path, *, url: str = UCI_URL, md5sums: Path | None = None, timeout_s: float = 120.0) -> Path:
    """Download UCI Online Retail into ``dest`` and write ``dest/by-day/``; return that folder.

    The zip (kept as ``dest/online+retail.zip``, downloaded only when absent) and the workbook must
    match :data:`UCI_ZIP_SHA256` / :data:`UCI_XLSX_SHA256`. With ``md5sums`` (the shared copy's
    ``MD5SUMS.by-day``) the written files must also be byte-identical to the by-day copy.
    Raises :class:`UCIDownloadError` with the reason (offline, checksum, missing openpyxl).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "online+retail.zip"
    if not archive.is_file():
        _download(url, archive, timeout_s)
    got = _sha256(archive)
    if got != UCI_ZIP_SHA256:
        raise UCIDownloadError(
            f"{archive}: sha256 {got} does not match the pinned {UCI_ZIP_SHA256}; "
            f"delete it to download again, or review the new release before pinning it"
        )
    with zipfile.ZipFile(archive) as zipped:
        xlsx = Path(zipped.extract(UCI_XLSX_NAME, dest))
    got = _sha256(xlsx)
    if got != UCI_XLSX_SHA256:
        raise UCIDownloadError(f"{xlsx}: sha256 {got} does not match the pinned {UCI_XLSX_SHA256}")
    out_dir = dest / "by-day"
    split_by_day(_read_workbook(xlsx), out_dir)
    if md5sums is not None:
        problems = verify_by_day(out_dir, md5sums)
        if problems:
            raise UCIDownloadError(f"{out_dir} differs from {md5sums} in {len(problems)} files: {problems[:5]}")
    return out_dir
