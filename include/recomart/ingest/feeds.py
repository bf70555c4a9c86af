"""Declared landing-file feeds: where each file lives, its columns, and how it is loaded.

A :class:`Feed` is pure data: the parser (:mod:`recomart.ingest.parse`) and the loader
(:mod:`recomart.ingest.load`) read everything they need from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

ColumnType = Literal["text", "integer", "numeric", "timestamp", "date"]
LoadMode = Literal["daily_partition", "snapshot"]
MissingPolicy = Literal["skip", "fail"]
UserIdFormat = Literal["text", "decimal_integer"]

#: Postgres type of each column type (timestamps are read in the feed's time zone).
PG_TYPES: dict[str, str] = {
    "text": "text",
    "integer": "bigint",
    "numeric": "numeric",
    "timestamp": "timestamptz",
    "date": "date",
}


@dataclass(frozen=True)
class Column:
    """One file column: Postgres (snake_case) name, type, header name in the file."""

    name: str
    type: ColumnType = "text"
    required: bool = False
    source: str | None = None  # header name in the file; defaults to ``name``
    choices: tuple[str, ...] | None = None  # allowed values (text columns)

    @property
    def header(self) -> str:
        return self.source or self.name

    @property
    def pg_type(self) -> str:
        return PG_TYPES[self.type]


@dataclass(frozen=True)
class Feed:
    """A landing-file source format and how it lands in ``raw.<table>``.

    ``file_template`` is relative to ``<landing>/<subfolder>`` and is formatted with
    ``date=<logical date>`` (``events/{date:%Y-%m-%d}.csv``); a snapshot feed names a fixed file.
    """

    name: str
    subfolder: str
    file_template: str
    table: str
    mode: LoadMode
    columns: tuple[Column, ...]
    on_missing: MissingPolicy = "fail"
    max_rejected_share: float = 0.01
    # Longest value accepted (bytes, unquoted); longer ones are quarantined.  Below Postgres' btree entry
    # limit (about 2.7 kB), so any column can be indexed or joined on downstream.
    max_field_bytes: int = 2048
    repeat_purchases_recommendable: bool = False
    timezone: str = "UTC"  # zone of the file's naive timestamps
    date_format: str = "%Y-%m-%d"
    timestamp_format: str = "%Y-%m-%d %H:%M:%S"
    # The column naming the person a record is about (``forget user`` deletes by it, the loader leaves
    # erased users out by it) and how its values map to the warehouse's user ids: ``text`` as written,
    # ``decimal_integer`` as dbt staging casts them ('17850.0' -> '17850').
    user_column: str | None = None
    user_id_format: UserIdFormat = "text"
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.mode not in ("daily_partition", "snapshot"):
            raise ValueError(f"feed {self.name}: unknown mode {self.mode!r}")
        if self.on_missing not in ("skip", "fail"):
            raise ValueError(f"feed {self.name}: unknown missing-file policy {self.on_missing!r}")
        if not 0.0 <= self.max_rejected_share <= 1.0:
            raise ValueError(f"feed {self.name}: max_rejected_share must be within [0, 1]")
        if self.max_field_bytes < 1:
            raise ValueError(f"feed {self.name}: max_field_bytes must be positive")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names) or len({c.header for c in self.columns}) != len(names):
            raise ValueError(f"feed {self.name}: duplicate column names")
        if self.user_column is not None and self.user_column not in names:
            raise ValueError(f"feed {self.name}: user_column {self.user_column!r} is not one of its columns")
        if self.user_id_format not in ("text", "decimal_integer"):
            raise ValueError(f"feed {self.name}: unknown user_id_format {self.user_id_format!r}")
        for col in self.columns:
            if col.type not in PG_TYPES:
                raise ValueError(f"feed {self.name}: column {col.name} has unknown type {col.type!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def relative_path(self, logical_date: date) -> str:
        """The file of ``logical_date`` relative to the landing folder (stored as ``_source_file``)."""
        return f"{self.subfolder}/{self.file_template.format(date=logical_date)}"

    def path_for(self, landing_dir: Path, logical_date: date) -> Path:
        return Path(landing_dir) / self.relative_path(logical_date)


GENERATED_EVENTS = Feed(
    name="generated_events",
    subfolder="generated",
    file_template="events/{date:%Y-%m-%d}.csv",
    table="events",
    mode="daily_partition",
    columns=(
        Column("event_id", required=True),
        Column("event_time", "timestamp", required=True),
        Column("user_id", required=True),
        Column("item_id", required=True),
        Column("event_type", required=True, choices=("view", "add_to_cart", "purchase")),
        Column("quantity", "integer"),
        Column("unit_price", "numeric"),
    ),
    on_missing="fail",
    repeat_purchases_recommendable=False,
    user_column="user_id",
    description="Generated shop events, one file per UTC day.",
)

GENERATED_USERS = Feed(
    name="generated_users",
    subfolder="generated",
    file_template="users.csv",
    table="users",
    mode="snapshot",
    columns=(
        Column("user_id", required=True),
        Column("country"),
        Column("segment"),
        Column("signup_date", "date"),
    ),
    on_missing="fail",
    repeat_purchases_recommendable=False,
    user_column="user_id",
    description="Generated user snapshot; the whole table is replaced on each load.",
)

UCI_ORDERS = Feed(
    name="uci_orders",
    subfolder="uci",
    file_template="by-day/{date:%Y-%m-%d}.csv",
    table="uci_orders",
    mode="daily_partition",
    columns=(
        Column("invoice_no", required=True, source="InvoiceNo"),
        Column("stock_code", required=True, source="StockCode"),
        Column("description", source="Description"),
        Column("quantity", "integer", required=True, source="Quantity"),
        Column("invoice_date", "timestamp", required=True, source="InvoiceDate"),
        Column("unit_price", "numeric", required=True, source="UnitPrice"),
        Column("customer_id", source="CustomerID"),  # text as given ("17850.0"); staging casts
        Column("country", required=True, source="Country"),
    ),
    on_missing="skip",  # no files on Saturdays and over the Christmas break
    repeat_purchases_recommendable=True,
    timezone="Europe/London",
    user_column="customer_id",
    user_id_format="decimal_integer",
    description="UCI Online Retail order lines, one file per trading day (UK shop time).",
)

FEEDS: dict[str, Feed] = {f.name: f for f in (GENERATED_EVENTS, GENERATED_USERS, UCI_ORDERS)}

DATASET_FEEDS: dict[str, tuple[str, ...]] = {
    "generated": ("generated_events", "generated_users"),
    "uci": ("uci_orders",),
}


def get_feed(name: str) -> Feed:
    """The registered feed called ``name``."""
    try:
        return FEEDS[name]
    except KeyError:
        raise KeyError(f"unknown feed {name!r}; known feeds: {', '.join(sorted(FEEDS))}") from None


def feeds_for_dataset(name: str) -> list[Feed]:
    """The feeds that load data set ``name`` (``generated`` or ``uci``)."""
    try:
        return [FEEDS[f] for f in DATASET_FEEDS[name]]
    except KeyError:
        raise KeyError(f"no file feeds for data set {name!r}; known: {', '.join(sorted(DATASET_FEEDS))}") from None
