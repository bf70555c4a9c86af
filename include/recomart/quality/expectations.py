"""Great Expectations suites for the raw tables and the marts (GX 1.x expectation classes).

Each expectation carries a stable ``name`` and a ``severity`` (``critical`` or ``warning``) in
``meta``; the severity is also set on GX's own ``severity`` field so Data Docs show it.  A
critical failure stops the pipeline (:class:`recomart.quality.validate.DataQualityError`), a
warning is logged and reported.

Checks that GX cannot express as a column expectation (the load ledger, event times inside
the logical day, references between tables) are :class:`ExpectNoUnexpectedRows`: a SQL query
over ``{batch}`` that must return no rows; a few of the rows it returns are kept as samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import great_expectations.expectations as gxe
from great_expectations.expectations.expectation import Expectation

from recomart.ingest.feeds import PG_TYPES, Feed, feeds_for_dataset

Severity = Literal["critical", "warning"]
CRITICAL: Severity = "critical"
WARNING: Severity = "warning"
SAMPLE_SIZE = 5

# Reflected Postgres type names, as GX reports them (compared case-insensitively).
TEXT, BIGINT, INTEGER, NUMERIC, DOUBLE = "TEXT", "BIGINT", "INTEGER", "NUMERIC", "DOUBLE PRECISION"
DATE, TIMESTAMPTZ, BOOLEAN = "DATE", "TIMESTAMP WITH TIME ZONE", "BOOLEAN"
_GX_TYPE = {"text": TEXT, "bigint": BIGINT, "numeric": NUMERIC, "timestamptz": TIMESTAMPTZ, "date": DATE}

#: Raw table of the catalogue (loaded by the catalog API ingest, not by a file feed).
PRODUCTS_TABLE = "products"


class ExpectNoUnexpectedRows(gxe.UnexpectedRowsExpectation):
    """``UnexpectedRowsExpectation`` that keeps a few of the unexpected rows in every result format.

    GX only returns the rows with ``result_format="COMPLETE"``, which would also pull every
    unexpected value of the column expectations; this keeps :data:`SAMPLE_SIZE` of them.
    """

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None):
        result = super()._validate(metrics, runtime_configuration, execution_engine)
        if isinstance(result, dict) and not result.get("success"):
            rows = metrics.get("unexpected_rows_query.table") or []
            result.setdefault("result", {})["details"] = {"sample_unexpected_rows": list(rows[:SAMPLE_SIZE])}
        return result


@dataclass(frozen=True)
class SuiteSpec:
    """One table's expectations; ``partition_date`` restricts the batch to ``_logical_date = date``,
    ``newer_than`` to ``loaded_at > newer_than``."""

    name: str
    schema: str
    table: str
    expectations: tuple[Expectation, ...]
    partition_date: date | None = None
    newer_than: datetime | None = None

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def whole_table(self) -> bool:
        return self.partition_date is None and self.newer_than is None

    @property
    def partition_filter(self) -> str:
        """SQL condition selecting the partition (``true`` for the whole table): one logical date, or
        the rows loaded after ``newer_than``."""
        if self.partition_date:
            return f"_logical_date = date {_lit(self.partition_date.isoformat())}"
        if self.newer_than:
            return f"loaded_at > timestamptz {_lit(self.newer_than.isoformat())}"
        return "true"


def tag(expectation: Expectation, name: str, severity: Severity, note: str = "") -> Expectation:
    """Give ``expectation`` its RecoMart name and severity (in ``meta``, GX ``severity`` and ``notes``)."""
    if severity not in (CRITICAL, WARNING):
        raise ValueError(f"severity must be critical or warning, not {severity!r}")
    expectation.meta = {**(expectation.meta or {}), "name": name, "severity": severity}
    expectation.severity = severity
    expectation.notes = f"[{severity}] {name}" + (f": {note}" if note else "")
    return expectation


def expectation_name(expectation: Any) -> str:
    """The RecoMart name of an expectation (or of its configuration)."""
    return str((expectation.meta or {}).get("name") or expectation.type)


def expectation_severity(expectation: Any) -> Severity:
    severity = (expectation.meta or {}).get("severity", CRITICAL)
    return WARNING if severity == WARNING else CRITICAL


def _lit(value: str) -> str:
    """A SQL string literal (values come from code constants, never from data)."""
    return "'" + value.replace("'", "''") + "'"


# --- reusable building blocks ---------------------------------------------------------------
def _types(columns: dict[str, str | Sequence[str]], *, query_batch: bool = False) -> list[Expectation]:
    """``<column>_type``: the column exists with one of the types.

    GX reflects column types of a table batch only; on a query batch (one logical date) the
    type of the first row's value (``pg_typeof``) is checked instead (an empty batch passes).
    """
    out = []
    for column, types in columns.items():
        type_list = [types] if isinstance(types, str) else list(types)
        note = f"column {column} exists with type {' or '.join(type_list)}"
        if query_batch:
            accepted = ", ".join(_lit(t.lower()) for t in type_list)
            query = (
                f"select {_lit(column)} as column_name, actual_type from"
                f" (select pg_typeof({column})::text as actual_type from {{batch}} limit 1) as first_row"
                f" where actual_type not in ({accepted})"
            )
            out.append(_no_rows(query, f"{column}_type", CRITICAL, note))
        else:
            out.append(
                tag(
                    gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=type_list),
                    f"{column}_type",
                    CRITICAL,
                    note,
                )
            )
    return out


def _not_null(columns: Iterable[str], severity: Severity = CRITICAL) -> list[Expectation]:
    return [tag(gxe.ExpectColumnValuesToNotBeNull(column=c), f"{c}_not_null", severity) for c in columns]


def _unique(column: str) -> Expectation:
    return tag(gxe.ExpectColumnValuesToBeUnique(column=column), f"{column}_unique", CRITICAL)


def _between(
    column: str,
    name: str,
    severity: Severity,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    strict_min: bool = False,
) -> Expectation:
    exp = gxe.ExpectColumnValuesToBeBetween(
        column=column, min_value=min_value, max_value=max_value, strict_min=strict_min
    )
    bounds = f"{'>' if strict_min else '>='} {min_value}" if min_value is not None else ""
    if max_value is not None:
        bounds += f"{' and ' if bounds else ''}<= {max_value}"
    return tag(exp, name, severity, f"{column} {bounds} (nulls ignored)")


def _not_empty() -> Expectation:
    return tag(gxe.ExpectTableRowCountToBeBetween(min_value=1), "row_count_min", CRITICAL, "table is not empty")


def _no_rows(query: str, name: str, severity: Severity, note: str) -> Expectation:
    return tag(ExpectNoUnexpectedRows(unexpected_rows_query=query), name, severity, note)


def _time_in_logical_day(column: str, key: str, timezone: str) -> Expectation:
    query = (
        f"select {key}, {column}, _logical_date from {{batch}}"
        f" where ({column} at time zone {_lit(timezone)})::date <> _logical_date"
    )
    return _no_rows(
        query, f"{column}_in_logical_day", CRITICAL, f"{column} falls on the row's logical date ({timezone})"
    )


def _day_filter(day: date | None, column: str = "logical_date") -> str:
    """`` and <column> = <day>``, or nothing without a day."""
    return f" and {column} = date {_lit(day.isoformat())}" if day else ""


def _ledger_daily(feed: Feed, day: date | None) -> Expectation:
    """Per logical date: rows in the table == ``records_loaded`` of the date's live ledger entry."""
    query = (
        "with table_rows as (select _logical_date as logical_date, count(*) as rows_in_table"
        " from {batch} as batch_rows group by _logical_date),"
        " ledger as (select logical_date, records_loaded from ops.loaded_files"
        f" where feed = {_lit(feed.name)} and is_live{_day_filter(day)})"
        " select coalesce(ledger.logical_date, table_rows.logical_date) as logical_date,"
        " ledger.records_loaded as ledger_records_loaded, coalesce(table_rows.rows_in_table, 0) as rows_in_table"
        " from ledger full outer join table_rows on ledger.logical_date = table_rows.logical_date"
        " where coalesce(ledger.records_loaded, 0) <> coalesce(table_rows.rows_in_table, 0)"
        " order by 1"
    )
    return _no_rows(
        query,
        "row_count_matches_ledger",
        CRITICAL,
        f"rows per _logical_date equal records_loaded of the live ops.loaded_files entry of feed {feed.name}",
    )


def _ledger_snapshot(feed: Feed) -> Expectation:
    """Rows in the table == ``records_loaded`` of the feed's live ledger entry."""
    query = (
        "with table_rows as (select count(*) as rows_in_table from {batch} as batch_rows),"
        " latest as (select logical_date, load_id, records_loaded from ops.loaded_files"
        f" where feed = {_lit(feed.name)} and is_live)"
        " select latest.logical_date, latest.load_id, latest.records_loaded as ledger_records_loaded,"
        " table_rows.rows_in_table from table_rows left join latest on true"
        " where coalesce(latest.records_loaded, 0) <> table_rows.rows_in_table"
    )
    return _no_rows(
        query,
        "row_count_matches_ledger",
        CRITICAL,
        f"row count equals records_loaded of the live ledger entry of feed {feed.name}",
    )


def _no_empty_files(feed: Feed, day: date | None) -> Expectation:
    """Warning: the live load of a date (of the table, for a snapshot feed) is a header-only file."""
    if feed.mode == "snapshot":
        rows_loaded = "(select count(*) as n from {batch} as batch_rows) as loaded on true"
        no_rows = "loaded.n = 0"
    else:
        rows_loaded = (
            "(select _logical_date, count(*) as n from {batch} as batch_rows group by _logical_date) as loaded"
            " on loaded._logical_date = ledger.logical_date"
        )
        no_rows = "loaded.n is null"
    query = (
        "select ledger.logical_date, ledger.source_file, ledger.load_id from ops.loaded_files as ledger"
        f" left join {rows_loaded}"
        f" where ledger.feed = {_lit(feed.name)} and ledger.is_live and ledger.status = 'empty'"
        f"{_day_filter(day, 'ledger.logical_date')} and {no_rows}"
    )
    return _no_rows(
        query, "no_empty_files", WARNING, f"no live load of feed {feed.name} is a header-only file (status empty)"
    )


def _references(column: str, key: str, target: str, target_column: str, severity: Severity) -> Expectation:
    target_name = target.split(".")[-1]
    query = (
        f"select {key}, {column} from {{batch}} where {column} is not null"
        f" and {column} not in (select {target_column} from {target} where {target_column} is not null)"
    )
    return _no_rows(query, f"{column}_in_{target_name}", severity, f"every {column} exists in {target}")


def _feed_basics(feed: Feed, day: date | None = None) -> list[Expectation]:
    """Types, not-null of required columns and accepted values, from the feed declaration."""
    types = {c.name: _GX_TYPE[PG_TYPES[c.type]] for c in feed.columns}
    types["_logical_date"] = DATE
    out = _types(types, query_batch=day is not None) + _not_null(feed.required_columns)
    for col in feed.columns:
        if col.choices:
            out.append(
                tag(
                    gxe.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(col.choices)),
                    f"{col.name}_accepted_values",
                    CRITICAL,
                    f"one of {', '.join(col.choices)}",
                )
            )
    return out


# --- raw suites -------------------------------------------------------------------------------
def _raw_events(feed: Feed, day: date | None, tables: set[str]) -> SuiteSpec:
    exps = _feed_basics(feed, day) + [
        _unique("event_id"),
        _between("quantity", "quantity_min", CRITICAL, min_value=1),
        _between("quantity", "quantity_plausible", WARNING, max_value=1000),
        _between("unit_price", "unit_price_positive", CRITICAL, min_value=0, strict_min=True),
        _between("unit_price", "unit_price_plausible", WARNING, max_value=10_000),
        _time_in_logical_day("event_time", "event_id", feed.timezone),
        _ledger_daily(feed, day),
        _no_empty_files(feed, day),
    ]
    if day is None:
        exps.append(_not_empty())
    else:
        query = (
            "select batch_rows.event_id, batch_rows._logical_date, other._logical_date as other_logical_date"
            f" from {{batch}} as batch_rows join raw.{feed.table} as other"
            " on other.event_id = batch_rows.event_id and other._logical_date <> batch_rows._logical_date"
        )
        exps.append(
            _no_rows(
                query,
                "event_id_unique_across_days",
                CRITICAL,
                "no event_id of the day is also loaded under another logical date",
            )
        )
    if f"raw.{PRODUCTS_TABLE}" in tables:
        exps.append(_references("item_id", "event_id", f"raw.{PRODUCTS_TABLE}", "item_id", WARNING))
    if "raw.users" in tables:
        exps.append(_references("user_id", "event_id", "raw.users", "user_id", WARNING))
    return SuiteSpec(f"raw.{feed.table}", "raw", feed.table, tuple(exps), day)


def _raw_users(feed: Feed) -> SuiteSpec:
    exps = _feed_basics(feed) + [
        _unique("user_id"),
        _not_empty(),
        _ledger_snapshot(feed),
        _no_empty_files(feed, None),
        *_not_null(["country", "segment"], WARNING),
        tag(
            gxe.ExpectColumnValuesToBeInSet(column="segment", value_set=["consumer", "business", "wholesale"]),
            "segment_accepted_values",
            WARNING,
            "consumer, business or wholesale",
        ),
        tag(
            gxe.ExpectColumnValuesToBeBetween(column="signup_date", min_value="2000-01-01"),
            "signup_date_plausible",
            WARNING,
            "signup_date on or after 2000-01-01",
        ),
    ]
    return SuiteSpec(f"raw.{feed.table}", "raw", feed.table, tuple(exps))


def _raw_products() -> SuiteSpec:
    exps = _types(
        {"item_id": TEXT, "title": TEXT, "category": TEXT, "brand": TEXT, "price": NUMERIC, "updated_at": TIMESTAMPTZ}
    ) + [
        *_not_null(["item_id", "title", "category", "price", "updated_at"]),
        _unique("item_id"),
        _not_empty(),
        _between("price", "price_positive", CRITICAL, min_value=0, strict_min=True),
        _between("price", "price_plausible", WARNING, max_value=100_000),
        *_not_null(["brand", "description"], WARNING),
    ]
    return SuiteSpec(f"raw.{PRODUCTS_TABLE}", "raw", PRODUCTS_TABLE, tuple(exps))


def _raw_uci_orders(feed: Feed, day: date | None) -> SuiteSpec:
    exps = _feed_basics(feed, day) + [
        _between("quantity", "quantity_range", CRITICAL, min_value=-1_000_000, max_value=1_000_000),
        _between("quantity", "quantity_plausible", WARNING, min_value=-10_000, max_value=10_000),
        _between("unit_price", "unit_price_range", CRITICAL, min_value=-1_000_000, max_value=1_000_000),
        _between("unit_price", "unit_price_non_negative", WARNING, min_value=0),
        tag(
            gxe.ExpectColumnValuesToMatchRegex(column="invoice_no", regex=r"^[AC]?[0-9]{6}$"),
            "invoice_no_format",
            WARNING,
            "six digits, C prefix for cancellations, A for adjustments",
        ),
        tag(
            gxe.ExpectColumnValuesToMatchRegex(column="customer_id", regex=r"^[0-9]+(\.0)?$"),
            "customer_id_format",
            WARNING,
            "numeric id, optionally written as 17850.0",
        ),
        _no_rows(
            "select invoice_no, stock_code, quantity from {batch} where invoice_no like 'C%' and quantity >= 0",
            "cancellation_quantity_negative",
            WARNING,
            "cancellation lines (C invoices) have quantity < 0",
        ),
        _time_in_logical_day("invoice_date", "invoice_no", feed.timezone),
        _ledger_daily(feed, day),
        _no_empty_files(feed, day),
    ]
    if day is None:
        exps.append(_not_empty())
    return SuiteSpec(f"raw.{feed.table}", "raw", feed.table, tuple(exps), day)


def raw_table_names(dataset: str) -> list[str]:
    """The raw tables validated for ``dataset`` (without schema)."""
    names = [f.table for f in feeds_for_dataset(dataset)]
    return names + [PRODUCTS_TABLE] if dataset == "generated" else names


def raw_suites(
    dataset: str, *, logical_date: date | None = None, tables: Iterable[str] | None = None, existing: Iterable[str] = ()
) -> list[SuiteSpec]:
    """Suites of the raw tables of ``dataset``.

    ``logical_date`` restricts daily-partitioned tables to that date (snapshot tables are checked
    whole); ``tables`` picks a subset (names without schema); ``existing`` lists the
    ``schema.table`` names present, for optional cross-table checks.
    """
    wanted = set(tables) if tables is not None else set(raw_table_names(dataset))
    unknown = wanted - {*raw_table_names(dataset), PRODUCTS_TABLE}  # a catalogue may come with any data set
    if unknown:
        raise ValueError(f"no raw suites for {sorted(unknown)} in data set {dataset!r}")
    present = set(existing)
    suites: list[SuiteSpec] = []
    for feed in feeds_for_dataset(dataset):
        if feed.table not in wanted:
            continue
        if feed.table == "events":
            suites.append(_raw_events(feed, logical_date, present))
        elif feed.table == "users":
            suites.append(_raw_users(feed))
        elif feed.table == "uci_orders":
            suites.append(_raw_uci_orders(feed, logical_date))
        else:
            raise ValueError(f"no raw suite for feed {feed.name}")
    if PRODUCTS_TABLE in wanted:
        suites.append(_raw_products())
    return suites


# --- mart suites ------------------------------------------------------------------------------
def _user_item_ratings(newer_than: datetime | None = None) -> SuiteSpec:
    """The ratings' suite; with ``newer_than`` it reads the pairs loaded after it (a daily run, see
    :mod:`recomart.quality.watermarks`)."""
    exps = _types(
        {
            "user_id": TEXT,
            "item_id": TEXT,
            "rating": DOUBLE,
            "interactions": INTEGER,
            "purchases": INTEGER,
            "last_interaction_at": TIMESTAMPTZ,
            "event_timestamp": TIMESTAMPTZ,
        },
        query_batch=newer_than is not None,
    ) + [
        # One row per user x item is dbt's test (unique_combination_of_columns in user_item_ratings.yml), which
        # fails `dbt build` before this suite runs; GX's compound uniqueness was the same check at twice its
        # cost (about 30 s of the 6M-row suite at 10M events).
        *_not_null(["user_id", "item_id", "rating", "interactions", "purchases", "event_timestamp"]),
        # a run with newer_than reads a table that held rows (its latest load is the mark)
        *([_not_empty()] if newer_than is None else []),
        _between("rating", "rating_range", CRITICAL, min_value=1, max_value=5),
        _between("interactions", "interactions_min", CRITICAL, min_value=1),
        _between("purchases", "purchases_non_negative", CRITICAL, min_value=0),
        tag(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="interactions", column_B="purchases", or_equal=True),
            "purchases_le_interactions",
            CRITICAL,
        ),
        # 0 for a pair whose strength decayed below the 6 decimals it is rounded to (a long history)
        _between("score", "score_non_negative", WARNING, min_value=0),
        _references("user_id", "item_id", "marts.user_features", "user_id", WARNING),
        _references("item_id", "user_id", "marts.item_features", "item_id", WARNING),
    ]
    return SuiteSpec("marts.user_item_ratings", "marts", "user_item_ratings", tuple(exps), newer_than=newer_than)


def _user_features(dataset: str) -> SuiteSpec:
    counts = ["frequency", "monetary", "distinct_items"]
    exps = _types(
        {
            "user_id": TEXT,
            "event_timestamp": TIMESTAMPTZ,
            "recency_days": DOUBLE,
            "frequency": INTEGER,
            "monetary": DOUBLE,
            "distinct_items": INTEGER,
            "days_since_first_seen": DOUBLE,
        }
    ) + [
        *_not_null(["user_id", "event_timestamp", *counts]),
        _unique("user_id"),
        _not_empty(),
        *[_between(c, f"{c}_non_negative", CRITICAL, min_value=0) for c in [*counts, "recency_days"]],
        _between("days_since_first_seen", "days_since_first_seen_non_negative", WARNING, min_value=0),
    ]
    if dataset == "generated":
        exps.append(
            tag(
                gxe.ExpectColumnValuesToBeInSet(column="segment", value_set=["consumer", "business", "wholesale"]),
                "segment_accepted_values",
                WARNING,
            )
        )
    return SuiteSpec("marts.user_features", "marts", "user_features", tuple(exps))


def _item_features() -> SuiteSpec:
    counts = ["pop_7d", "pop_30d", "pop_90d", "distinct_buyers"]
    exps = _types(
        {
            "item_id": TEXT,
            "event_timestamp": TIMESTAMPTZ,
            **dict.fromkeys(counts, INTEGER),
            "revenue": DOUBLE,
            "price": DOUBLE,
            "price_band": TEXT,
            "content_text": TEXT,
        }
    ) + [
        *_not_null(["item_id", "event_timestamp", *counts, "revenue", "price_band", "content_text"]),
        _unique("item_id"),
        _not_empty(),
        *[_between(c, f"{c}_non_negative", CRITICAL, min_value=0) for c in [*counts, "revenue"]],
        tag(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="pop_30d", column_B="pop_7d", or_equal=True),
            "pop_30d_ge_pop_7d",
            CRITICAL,
        ),
        tag(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="pop_90d", column_B="pop_30d", or_equal=True),
            "pop_90d_ge_pop_30d",
            CRITICAL,
        ),
        _between("price", "price_positive", CRITICAL, min_value=0, strict_min=True),
        tag(
            gxe.ExpectColumnValuesToBeInSet(
                column="price_band", value_set=["budget", "mid", "upper", "premium", "unknown"]
            ),
            "price_band_accepted_values",
            CRITICAL,
        ),
    ]
    return SuiteSpec("marts.item_features", "marts", "item_features", tuple(exps))


def _dim_products() -> SuiteSpec:
    exps = _types(
        {
            "item_id": TEXT,
            "title": TEXT,
            "category": TEXT,
            "brand": TEXT,
            "price": (NUMERIC, "NUMERIC(12, 4)"),
            "in_catalog": BOOLEAN,
            "event_timestamp": TIMESTAMPTZ,
        }
    ) + [
        *_not_null(["item_id", "in_catalog", "event_timestamp"]),
        _unique("item_id"),
        _not_empty(),
        _between("price", "price_positive", CRITICAL, min_value=0, strict_min=True),
        *_not_null(["title"], WARNING),
    ]
    return SuiteSpec("marts.dim_products", "marts", "dim_products", tuple(exps))


MART_TABLES = ("user_item_ratings", "user_features", "item_features", "dim_products")


def mart_suites(
    dataset: str, *, tables: Iterable[str] | None = None, ratings_newer_than: datetime | None = None
) -> list[SuiteSpec]:
    """Suites of the marts the model and the feature store read; ``ratings_newer_than``: the ratings'
    suite reads only the pairs loaded after it."""
    wanted = set(tables) if tables is not None else set(MART_TABLES)
    unknown = wanted - set(MART_TABLES)
    if unknown:
        raise ValueError(f"no mart suites for {sorted(unknown)}")
    builders = {
        "user_item_ratings": lambda: _user_item_ratings(ratings_newer_than),
        "user_features": lambda: _user_features(dataset),
        "item_features": _item_features,
        "dim_products": _dim_products,
    }
    return [builders[t]() for t in MART_TABLES if t in wanted]
