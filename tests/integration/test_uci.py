"""UCI Online Retail as a data set: landing links, row accounting, re-runs, malformed days, the derived
catalogue and the by-day reconstruction of the official file. Needs ../shared/data (skips without it)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import socket
import statistics
import zipfile
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
import pytest

from recomart.catalog_api.app import serve_in_thread
from recomart.config import Settings
from recomart.datasets import uci
from recomart.ingest.catalog import ingest_catalog
from recomart.ingest.feeds import UCI_ORDERS
from recomart.ingest.load import load_feed_date
from recomart.tasks.ingest_events import days_in_window, ingest_landing_files

pytestmark = pytest.mark.shared_data

FIRST, LAST = date(2010, 12, 1), date(2010, 12, 12)  # 12 calendar days: 10 files, Saturdays 4th and 11th
SATURDAYS = (date(2010, 12, 4), date(2010, 12, 11))
MALFORMED_DAY = date(2010, 12, 13)  # outside [FIRST, LAST], so the tests do not interact
FULL_FIRST, FULL_LAST = date(2010, 12, 1), date(2011, 12, 9)
# Load metadata left out of the re-run checksum: a new load writes a new load id and load time by design.
CHECKSUM_EXCLUDED = ("_load_id", "_loaded_at")


# --- helpers -----------------------------------------------------------------------------------
def csv_records(path: Path) -> int:
    """Records of a file counted independently of the loader: csv-module rows after the header."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def scalar(dsn: str, query: str, params: tuple = ()):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()[0]


def count_range(dsn: str, schema: str, first: date, last: date) -> int:
    return scalar(dsn, f"select count(*) from {schema}.uci_orders where _logical_date between %s and %s", (first, last))


def business_checksum(dsn: str, first: date, last: date) -> tuple[str, int]:
    """md5 over every raw.uci_orders column except CHECKSUM_EXCLUDED, rows in file order."""
    with psycopg.connect(dsn) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'raw'"
                " and table_name = 'uci_orders' order by ordinal_position"
            ).fetchall()
        ]
        kept = [c for c in cols if c not in CHECKSUM_EXCLUDED]
        assert set(cols) - set(kept) == set(CHECKSUM_EXCLUDED) and "_line_number" in kept
        row = ", ".join(f'"{c}"' for c in kept)
        return conn.execute(
            f"select md5(string_agg(row({row})::text, E'\\n' order by _logical_date, _line_number)), count(*)"
            " from raw.uci_orders where _logical_date between %s and %s",
            (first, last),
        ).fetchone()


def ledger(dsn: str, first: date, last: date) -> dict[date, tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select logical_date, status, load_id from ops.loaded_files where feed = %s"
            " and logical_date between %s and %s order by attempt_id",  # the latest attempt of each date
            (UCI_ORDERS.name, first, last),
        ).fetchall()
    return {d: (status, load_id) for d, status, load_id in rows}


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def by_day(shared_data: Path) -> Path:
    folder = shared_data / "uci-online-retail" / "by-day"
    if not folder.is_dir():
        pytest.skip(f"UCI by-day copy not found at {folder}")
    return folder


@pytest.fixture(scope="module")
def md5sums(by_day: Path) -> Path:
    return by_day.parent / "MD5SUMS.by-day"


@pytest.fixture(scope="module")
def ten_day_source(by_day: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A by-day folder holding only the files of [FIRST, LAST] (links to the shared copy)."""
    folder = tmp_path_factory.mktemp("uci-ten-days")
    for day in days_in_window(FIRST.isoformat(), LAST.isoformat(), None, None):
        if (by_day / f"{day}.csv").is_file():
            (folder / f"{day}.csv").symlink_to(by_day / f"{day}.csv")
    assert len(list(folder.iterdir())) == 10
    return folder


@pytest.fixture(scope="module")
def uci_settings(test_settings: Settings) -> Settings:
    return dataclasses.replace(test_settings, dataset="uci")


@pytest.fixture(scope="module")
def prepared(uci_settings: Settings, ten_day_source: Path) -> str:
    return uci.prepare_uci_landing(
        uci_settings.landing_dir, ten_day_source, dbt_project_file=uci_settings.dbt_project_dir / "dbt_project.yml"
    )


# --- landing -------------------------------------------------------------------------------------
def test_landing_links_the_files_and_copies_nothing(uci_settings: Settings, prepared: str, by_day: Path):
    folder = uci_settings.landing_dir / "uci" / "by-day"
    links = sorted(folder.iterdir())
    assert len(links) == 10 and "10 UCI daily files linked" in prepared
    assert all(p.is_symlink() and p.resolve() == (by_day / p.name).resolve() for p in links)
    for day in SATURDAYS:
        assert not UCI_ORDERS.path_for(uci_settings.landing_dir, day).exists()
    assert (uci_settings.landing_dir / "uci" / "products.csv").is_file()


# --- ten days through the real loader --------------------------------------------------------------
@pytest.mark.integration
def test_ten_days_accounting_rerun_and_missing_days(uci_settings: Settings, warehouse_dsn: str, prepared: str):
    days = days_in_window(FIRST.isoformat(), LAST.isoformat(), None, None)
    files = [UCI_ORDERS.path_for(uci_settings.landing_dir, d) for d in days]
    in_files = sum(csv_records(p) for p in files if p.exists())

    totals = ingest_landing_files(warehouse_dsn, uci_settings, days)
    assert (totals["loaded"], totals["skipped_missing"]) == (10, 2), totals
    loaded, quarantined = (
        count_range(warehouse_dsn, "raw", FIRST, LAST),
        count_range(warehouse_dsn, "quarantine", FIRST, LAST),
    )
    assert loaded + quarantined == in_files
    assert (totals["records_loaded"], totals["records_rejected"]) == (loaded, quarantined)
    first_ledger = ledger(warehouse_dsn, FIRST, LAST)
    assert {d for d, (status, _) in first_ledger.items() if status == "skipped_missing"} == set(SATURDAYS)
    assert sum(status == "loaded" for status, _ in first_ledger.values()) == 10
    before = business_checksum(warehouse_dsn, FIRST, LAST)
    assert before[1] == loaded

    # re-run of the same days: every file is recognised by its sha256, nothing is touched
    again = ingest_landing_files(warehouse_dsn, uci_settings, days)
    assert (again["unchanged"], again["skipped_missing"], again.get("loaded", 0)) == (10, 2, 0), again
    assert business_checksum(warehouse_dsn, FIRST, LAST) == before
    assert {d: v for d, v in ledger(warehouse_dsn, FIRST, LAST).items() if v[0] == "loaded"} == {
        d: v for d, v in first_ledger.items() if v[0] == "loaded"
    }

    # a forced reload (ledger lost): every partition is replaced, with identical business columns
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute(
            "delete from ops.loaded_files where feed = %s and logical_date between %s and %s",
            (UCI_ORDERS.name, FIRST, LAST),
        )
    reloaded = ingest_landing_files(warehouse_dsn, uci_settings, days)
    assert (reloaded["loaded"], reloaded["skipped_missing"]) == (10, 2), reloaded
    assert business_checksum(warehouse_dsn, FIRST, LAST) == before
    new_ids = {v[1] for v in ledger(warehouse_dsn, FIRST, LAST).values() if v[0] == "loaded"}
    assert new_ids.isdisjoint(v[1] for v in first_ledger.values())
    assert (
        scalar(
            warehouse_dsn,
            "select count(distinct _load_id) from raw.uci_orders"
            " where _logical_date between %s and %s and not (_load_id = any(%s))",
            (FIRST, LAST, list(new_ids)),
        )
        == 0
    )


# --- a malformed day ----------------------------------------------------------------------------------
BAD_LINES = {  # inserted after these data records of the real file -> (raw line, expected reason)
    5: (
        "536999,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-13 09:00:00,2.55,United Kingdom",
        "field count 7, expected 8",
    ),
    50: (
        "536999,71053,WHITE METAL LANTERN,6x,2010-12-13 09:00:00,3.39,17850.0,United Kingdom",
        "quantity '6x' is not an integer",
    ),
    500: (
        b"536999,84029G,KNITTED UNION FLAG \xff\xfe BOTTLE,6,2010-12-13 09:00:00,3.39,17850.0,United Kingdom",
        "invalid UTF-8",
    ),
    900: (
        '536999,22752,"SET 7 BABUSHKA NESTING BOXES,2,2010-12-13 09:00:00,7.65,17850.0,United Kingdom',
        "unbalanced or misplaced double quote",
    ),
}


def write_malformed(source: Path, target: Path) -> dict[int, str]:
    """``source`` with BAD_LINES inserted; returns {file line number: expected reason}."""
    lines = source.read_bytes().split(b"\n")
    assert lines[-1] == b""
    header, records = lines[0], lines[1:-1]
    out, expected = [header], {}
    for i, record in enumerate(records, start=1):
        out.append(record)
        if i in BAD_LINES:
            raw, reason = BAD_LINES[i]
            out.append(raw if isinstance(raw, bytes) else raw.encode())
            expected[len(out)] = reason  # 1-based line number of the bad line
    target.unlink(missing_ok=True)  # the landing file is a link into the shared copy: never write through it
    target.write_bytes(b"\n".join(out) + b"\n")
    return expected


@pytest.mark.integration
def test_malformed_day_quarantines_exactly_the_bad_records(
    uci_settings: Settings, warehouse_dsn: str, by_day: Path, prepared: str
):
    source = by_day / f"{MALFORMED_DAY}.csv"
    target = UCI_ORDERS.path_for(uci_settings.landing_dir, MALFORMED_DAY)
    good_records = csv_records(source)
    try:
        expected = write_malformed(source, target)
        assert hashlib.md5(source.read_bytes()).hexdigest() != hashlib.md5(target.read_bytes()).hexdigest()
        result = load_feed_date(warehouse_dsn, UCI_ORDERS, uci_settings.landing_dir, MALFORMED_DAY)
        # the csv module cannot count this file (the stray quote swallows what follows): the test wrote it
        written = good_records + len(BAD_LINES)
        assert result.status == "loaded" and result.records_read == written
        loaded = count_range(warehouse_dsn, "raw", MALFORMED_DAY, MALFORMED_DAY)
        with psycopg.connect(warehouse_dsn) as conn:
            rows = conn.execute(
                "select line_number, reason, raw_record, load_id, source_file from"
                " quarantine.uci_orders where _logical_date = %s order by line_number",
                (MALFORMED_DAY,),
            ).fetchall()
        assert loaded + len(rows) == written and loaded == good_records
        assert [r[0] for r in rows] == sorted(expected)
        for line, reason, raw, load_id, source_file in rows:
            assert expected[line] in reason, (line, reason)
            assert raw.startswith("536999,") and load_id == result.load_id
            assert source_file == UCI_ORDERS.relative_path(MALFORMED_DAY)
        assert (
            scalar(
                warehouse_dsn,
                "select count(*) from raw.uci_orders where _logical_date = %s and invoice_no = '536999'",
                (MALFORMED_DAY,),
            )
            == 0
        )
    finally:  # the corrected delivery: the real file again, which replaces the day's rows
        target.unlink(missing_ok=True)
        target.symlink_to(source)
    fixed = load_feed_date(warehouse_dsn, UCI_ORDERS, uci_settings.landing_dir, MALFORMED_DAY, link_roots=(by_day,))
    assert (fixed.status, fixed.records_loaded, fixed.records_rejected) == ("loaded", good_records, 0)
    assert count_range(warehouse_dsn, "quarantine", MALFORMED_DAY, MALFORMED_DAY) == 0
    assert count_range(warehouse_dsn, "raw", MALFORMED_DAY, MALFORMED_DAY) == good_records


# --- the derived catalogue ------------------------------------------------------------------------------
def expected_products(files: list[Path], rules: uci.NonProductRules) -> dict[str, tuple[str, float, str]]:
    """An independent derivation with the csv module: item -> (title, median price, first seen UTC)."""
    titles: dict[str, Counter] = defaultdict(Counter)
    prices: dict[str, list[float]] = defaultdict(list)
    first: dict[str, datetime] = {}
    london = ZoneInfo("Europe/London")
    for path in files:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                code = row["StockCode"].strip()
                if code.upper() in {c.upper() for c in rules.codes} or code.startswith("gift_0001_"):
                    continue
                seen = datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=london)
                first[code] = min(first.get(code, seen), seen)
                if row["Description"].strip():
                    titles[code][row["Description"].strip()] += 1
                if float(row["UnitPrice"]) > 0:
                    prices[code].append(float(row["UnitPrice"]))
    out = {}
    for code in first:
        if titles[code] and prices[code]:
            top = max(titles[code].values())
            out[code] = (
                min(t for t, n in titles[code].items() if n == top),
                statistics.median(prices[code]),
                first[code].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            )
    return out


@pytest.mark.integration
def test_products_csv_derivation_and_catalog_ingest(
    uci_settings: Settings, warehouse_dsn: str, ten_day_source: Path, prepared: str
):
    products_csv = uci_settings.landing_dir / "uci" / "products.csv"
    with products_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["item_id", "title", "description", "category", "brand", "price", "updated_at"]
        rows = list(reader)
    rules = uci.non_product_rules(uci_settings.dbt_project_dir / "dbt_project.yml")
    expected = expected_products(sorted(ten_day_source.glob("*.csv")), rules)
    got = {r["item_id"]: (r["title"], float(r["price"]), r["updated_at"]) for r in rows}
    assert set(got) == set(expected) and len(got) > 1000
    for code, (title, price, seen) in expected.items():
        assert got[code][0] == title and got[code][2] == seen, code
        assert got[code][1] == pytest.approx(price, abs=5e-5), code
    assert {r["category"] for r in rows} == {uci.UCI_CATEGORY} and {r["brand"] for r in rows} == {""}
    for code in ("POST", "DOT", "M", "C2"):  # present in these days, excluded from the catalogue
        assert code not in got
    assert any(code.upper() == "POST" for code in _codes(ten_day_source))

    # the catalog API serves it and the catalog client accepts every record
    with serve_in_thread(products_csv) as base_url:
        result = ingest_catalog(warehouse_dsn, base_url, page_size=500)
    assert (result.fetched, result.quarantined) == (len(rows), 0)
    assert scalar(warehouse_dsn, "select count(*) from raw.products") == len(rows)


def _codes(folder: Path) -> set[str]:
    return set(pd.concat([pd.read_csv(p, dtype=str, usecols=["StockCode"]) for p in folder.glob("*.csv")])["StockCode"])


def test_non_product_rules_are_dbts_list(uci_settings: Settings):
    rules = uci.non_product_rules(uci_settings.dbt_project_dir / "dbt_project.yml")
    assert {"POST", "DOT", "M", "C2", "BANK CHARGES", "AMAZONFEE", "CRUK", "B"} <= set(rules.codes)
    codes = pd.Series(["POST", "m", "gift_0001_20", "85123A", "gift-0001-20", "giftX0001_20", "POSTAGE"])
    assert rules.mask(codes).tolist() == [True, True, True, False, False, False, False]


# --- the official file's by-day format -----------------------------------------------------------------
def workbook_like(files: list[Path]) -> pd.DataFrame:
    """The rows of ``files`` in the native types pandas.read_excel gives for the UCI workbook."""
    text = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in files], ignore_index=True)

    def ids(values: pd.Series) -> pd.Series:
        numeric = pd.to_numeric(values, errors="coerce")
        return pd.Series(numeric.astype("Int64").astype(object).where(numeric.notna(), values), dtype=object)

    return pd.DataFrame(
        {
            "InvoiceNo": ids(text["InvoiceNo"]),
            "StockCode": ids(text["StockCode"]),
            "Description": text["Description"].mask(text["Description"] == ""),
            "Quantity": text["Quantity"].astype("int64"),
            "InvoiceDate": pd.to_datetime(text["InvoiceDate"]),
            "UnitPrice": text["UnitPrice"].astype("float64"),
            "CustomerID": pd.to_numeric(text["CustomerID"].mask(text["CustomerID"] == "")).astype("float64"),
            "Country": text["Country"],
        }
    )


def test_split_by_day_reproduces_the_shared_md5sums(by_day: Path, md5sums: Path, tmp_path: Path):
    names = ["2010-12-01.csv", "2011-05-17.csv", "2011-12-09.csv"]
    frame = workbook_like([by_day / n for n in names])
    assert frame["CustomerID"].isna().any() and frame["InvoiceNo"].map(lambda v: isinstance(v, int)).any()
    listing = tmp_path / "MD5SUMS.subset"
    listing.write_text("".join(line + "\n" for line in md5sums.read_text().splitlines() if line.split()[-1] in names))
    out = tmp_path / "by-day"
    assert [p.name for p in uci.split_by_day(frame, out)] == names
    assert uci.verify_by_day(out, listing) == []

    frame.loc[3, "UnitPrice"] = 2.5500001  # one value off: caught
    uci.split_by_day(frame, out)
    assert uci.verify_by_day(out, listing) == [
        f"{names[0]}: md5 "
        f"{hashlib.md5((out / names[0]).read_bytes()).hexdigest()}, "
        f"expected {md5sums.read_text().split()[0]}"
    ]


def test_download_fails_clearly_offline_or_on_a_wrong_file(tmp_path: Path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(uci.UCIDownloadError, match="could not download .*offline"):
        uci.download_uci(tmp_path / "a", url=f"http://127.0.0.1:{port}/online+retail.zip", timeout_s=2)
    assert not list((tmp_path / "a").iterdir())  # no partial file left behind

    wrong = tmp_path / "b" / "online+retail.zip"
    wrong.parent.mkdir()
    with zipfile.ZipFile(wrong, "w") as zipped:
        zipped.writestr(uci.UCI_XLSX_NAME, b"not the workbook")
    with pytest.raises(uci.UCIDownloadError, match=f"sha256 .* does not match the pinned {uci.UCI_ZIP_SHA256}"):
        uci.download_uci(tmp_path / "b")


# --- the full range (slow) ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.integration
def test_full_range_every_record_accounted_for(uci_settings: Settings, warehouse_dsn: str, by_day: Path, prepared: str):
    summary = uci.prepare_uci_landing(
        uci_settings.landing_dir, by_day, dbt_project_file=uci_settings.dbt_project_dir / "dbt_project.yml"
    )
    assert "305 UCI daily files linked" in summary
    in_files = sum(csv_records(p) for p in by_day.glob("*.csv"))
    assert in_files == uci.UCI_ROWS
    days = [FULL_FIRST + timedelta(days=i) for i in range((FULL_LAST - FULL_FIRST).days + 1)]
    totals = ingest_landing_files(warehouse_dsn, uci_settings, days)
    assert totals["loaded"] + totals.get("unchanged", 0) == 305 and totals["skipped_missing"] == len(days) - 305
    loaded = count_range(warehouse_dsn, "raw", FULL_FIRST, FULL_LAST)
    quarantined = count_range(warehouse_dsn, "quarantine", FULL_FIRST, FULL_LAST)
    assert loaded + quarantined == in_files == 541_909
    assert (
        scalar(
            warehouse_dsn,
            "select sum(records_read) from ops.loaded_files where feed = %s and is_live",
            (UCI_ORDERS.name,),
        )
        == in_files
    )
