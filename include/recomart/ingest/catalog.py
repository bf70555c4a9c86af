"""Catalogue ingestion: page through the catalog HTTP API and upsert ``raw.products`` in one transaction.

* HTTP (httpx): per-request timeouts; retries with exponential backoff and jitter on 5xx,
  timeouts, connection errors and broken JSON; ``Retry-After`` honoured on 429/503; the total
  time spent retrying is capped (``max_retry_s``), after which the run fails.
* Every record is validated with pydantic; invalid ones go to ``quarantine.products`` with the
  reason and the raw JSON.  Too many invalid records (e.g. a schema change) fail the run.
* Nothing touches the database until every page is fetched.  Then one transaction COPYs the
  snapshot into a temp table, upserts ``raw.products`` (``ON CONFLICT ... DO UPDATE ... WHERE``
  something changed, so a re-run with the same catalogue rewrites nothing), writes the
  quarantine rows and advances ``ops.catalog_watermark``.  A failed run commits nothing.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger(__name__)

FEED = "products"
_LOCK_KEY = 0x5245434F  # pg advisory lock: one catalogue load at a time
_BACKOFF_BASE_S = 0.25
_BACKOFF_CAP_S = 10.0
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
_BUSINESS_COLUMNS = ("title", "description", "category", "brand", "price", "updated_at")

DDL = """
create schema if not exists raw;
create schema if not exists quarantine;
create schema if not exists ops;
create table if not exists raw.products (
    item_id text primary key,
    title text not null,
    description text,
    category text not null,
    brand text,
    price numeric not null,
    updated_at timestamptz not null,
    payload jsonb not null,
    _load_id text not null,
    _loaded_at timestamptz not null
);
create table if not exists quarantine.products (
    load_id text not null,
    source_file text not null,
    line_number integer not null,
    raw_record text not null,
    reason text not null,
    quarantined_at timestamptz not null default now()
);
create table if not exists ops.catalog_watermark (
    feed text primary key,
    watermark timestamptz,
    last_load_id text not null,
    last_success_at timestamptz not null,
    source_url text not null,
    fetched integer not null,
    upserted integer not null,
    unchanged integer not null,
    quarantined integer not null
);
"""


class CatalogIngestError(RuntimeError):
    """The catalogue could not be fetched or validated; nothing was committed."""


class ProductRecord(BaseModel):
    """One catalogue record as the API serves it (extra keys are kept in ``payload`` only)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    item_id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=1000)
    description: str | None = Field(None, max_length=10000)
    category: str = Field(min_length=1, max_length=200)
    brand: str | None = Field(None, max_length=200)
    price: Decimal = Field(ge=0, lt=10**9, allow_inf_nan=False)
    updated_at: datetime

    @field_validator("item_id", "title", "description", "category", "brand")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value

    @field_validator("updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Page(BaseModel):
    items: list[Any]
    next_cursor: str | None = None


@dataclass(frozen=True)
class CatalogLoadResult:
    """Counts of one catalogue load."""

    load_id: str
    fetched: int
    upserted: int
    inserted: int
    updated: int
    unchanged: int
    quarantined: int
    pages: int
    retries: int
    updated_since: datetime | None
    watermark: datetime | None
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("updated_since", "watermark"):
            d[key] = d[key].isoformat() if d[key] else None
        return d


@dataclass
class _Fetched:
    records: list[tuple[int, str, dict[str, Any]]]  # (line number, source, raw record)
    pages: int
    retries: int


class _Retrier:
    """Backoff with jitter and one time budget for all retries of a run."""

    def __init__(self, max_retry_s: float) -> None:
        self.budget_s = max_retry_s
        self.spent_s = 0.0
        self.retries = 0
        self.attempt = 0

    def wait(self, reason: str, retry_after_s: float | None = None, failed_call_s: float = 0.0) -> None:
        """Sleep before the next attempt, or raise when the retry budget would be exceeded."""
        self.spent_s += failed_call_s
        if retry_after_s is not None:
            delay = retry_after_s + random.uniform(0.0, 0.1 + 0.1 * retry_after_s)
        else:
            delay = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**self.attempt) * random.uniform(0.5, 1.0)
        if self.spent_s + delay > self.budget_s:
            raise CatalogIngestError(
                f"gave up after {self.retries} retries ({self.spent_s:.1f}s of a {self.budget_s:.0f}s retry "
                f"budget spent): {reason}"
            )
        self.retries += 1
        self.attempt += 1
        log.warning("catalog API: %s; retry %d in %.2fs", reason, self.retries, delay)
        time.sleep(delay)
        self.spent_s += delay

    def succeeded(self) -> None:
        self.attempt = 0


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _get_page(client: httpx.Client, params: dict[str, Any], retrier: _Retrier) -> _Page:
    """One page, retried on transient failures."""
    while True:
        started = time.monotonic()
        try:
            response = client.get("/products", params=params)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            retrier.wait(f"{type(exc).__name__}: {exc}", failed_call_s=time.monotonic() - started)
            continue
        elapsed = time.monotonic() - started
        if response.status_code in _RETRYABLE_STATUS:
            retry_after = _retry_after(response) if response.status_code in (429, 503) else None
            retrier.wait(f"HTTP {response.status_code}", retry_after, failed_call_s=elapsed)
            continue
        if response.status_code != 200:
            raise CatalogIngestError(f"catalog API answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            page = _Page.model_validate(response.json())
        except (ValueError, ValidationError) as exc:  # cut-off or malformed body
            retrier.wait(f"unreadable page ({type(exc).__name__})", failed_call_s=elapsed)
            continue
        retrier.succeeded()
        return page


def fetch_catalogue(
    base_url: str,
    *,
    updated_since: datetime | None = None,
    page_size: int = 200,
    timeout_s: float = 5.0,
    max_retry_s: float = 60.0,
) -> _Fetched:
    """Every record the API serves (since ``updated_since``), as raw JSON objects."""
    retrier = _Retrier(max_retry_s)
    params: dict[str, Any] = {"limit": page_size}
    if updated_since is not None:
        params["updated_since"] = updated_since.isoformat()
    records: list[tuple[int, str, dict[str, Any]]] = []
    seen_cursors: set[str] = set()
    pages = 0
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout_s)) as client:
        while True:
            page = _get_page(client, params, retrier)
            pages += 1
            source = f"{base_url.rstrip('/')}/products page {pages}"
            records.extend((len(records) + k + 1, source, raw) for k, raw in enumerate(page.items))
            if not page.next_cursor:
                break
            if page.next_cursor in seen_cursors:
                raise CatalogIngestError(f"catalog API repeated cursor {page.next_cursor!r}")
            seen_cursors.add(page.next_cursor)
            params["cursor"] = page.next_cursor
    return _Fetched(records, pages, retrier.retries)


def _reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors())[:1000]


def _validate(fetched: _Fetched) -> tuple[list[tuple], list[tuple]]:
    """Split into staged rows ``(seq, columns..., payload)`` and quarantine rows."""
    good: list[tuple] = []
    bad: list[tuple] = []
    for line, source, raw in fetched.records:
        text = json.dumps(raw, ensure_ascii=False, sort_keys=True)
        if not isinstance(raw, dict):
            bad.append((source, line, text, "record is not a JSON object"))
            continue
        try:
            rec = ProductRecord.model_validate(raw)
        except ValidationError as exc:
            bad.append((source, line, text, _reason(exc)))
            continue
        good.append(
            (line, rec.item_id, rec.title, rec.description, rec.category, rec.brand, rec.price, rec.updated_at, text)
        )
    return good, bad


def ensure_catalog_tables(conn: psycopg.Connection) -> None:
    """Create ``raw.products``, ``quarantine.products`` and ``ops.catalog_watermark`` if missing."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for statement in filter(str.strip, DDL.split(";")):
            conn.execute(statement)


def read_watermark(conn: psycopg.Connection) -> datetime | None:
    row = conn.execute("select watermark from ops.catalog_watermark where feed = %s", (FEED,)).fetchone()
    return row[0] if row else None


_UPSERT = """
with latest as (
    select distinct on (item_id) item_id, title, description, category, brand, price, updated_at, payload
    from _stage_products order by item_id, updated_at desc, seq desc
)
insert into raw.products as p (item_id, title, description, category, brand, price, updated_at, payload,
                               _load_id, _loaded_at)
select item_id, title, description, category, brand, price, updated_at, payload, %(load_id)s, now()
from latest
on conflict (item_id) do update
    set title = excluded.title, description = excluded.description, category = excluded.category,
        brand = excluded.brand, price = excluded.price, updated_at = excluded.updated_at,
        payload = excluded.payload, _load_id = excluded._load_id, _loaded_at = excluded._loaded_at
    where excluded.updated_at >= p.updated_at
      and (p.title, p.description, p.category, p.brand, p.price, p.updated_at, p.payload)
          is distinct from (excluded.title, excluded.description, excluded.category, excluded.brand,
                            excluded.price, excluded.updated_at, excluded.payload)
"""


def _write(
    conn: psycopg.Connection, load_id: str, base_url: str, good: list[tuple], bad: list[tuple], fetched: int
) -> tuple[int, int, int, datetime | None]:
    """Stage, upsert, quarantine and advance the watermark inside the caller's transaction."""
    conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    conn.execute(
        "create temp table _stage_products (seq integer not null, item_id text not null, title text not null,"
        " description text, category text not null, brand text, price numeric not null,"
        " updated_at timestamptz not null, payload jsonb not null) on commit drop"
    )
    with conn.cursor() as cur:
        with cur.copy(
            "copy _stage_products (seq, item_id, title, description, category, brand, price,"
            " updated_at, payload) from stdin"
        ) as copy:
            for row in good:
                copy.write_row(row)
        with cur.copy(
            "copy quarantine.products (load_id, source_file, line_number, raw_record, reason) from stdin"
        ) as copy:
            for row in bad:
                copy.write_row((load_id, *row))
        cur.execute("select count(distinct item_id), max(updated_at) from _stage_products")
        distinct, max_updated = cur.fetchone()
        cur.execute(
            "select count(*) from raw.products p where exists"
            " (select 1 from _stage_products s where s.item_id = p.item_id)"
        )
        existing = cur.fetchone()[0]
        cur.execute(_UPSERT, {"load_id": load_id})
        upserted = cur.rowcount
        cur.execute(
            """
            insert into ops.catalog_watermark as w (feed, watermark, last_load_id, last_success_at, source_url,
                                                    fetched, upserted, unchanged, quarantined)
            values (%s, %s, %s, now(), %s, %s, %s, %s, %s)
            on conflict (feed) do update
                set watermark = greatest(w.watermark, excluded.watermark),
                    last_load_id = excluded.last_load_id, last_success_at = excluded.last_success_at,
                    source_url = excluded.source_url, fetched = excluded.fetched,
                    upserted = excluded.upserted, unchanged = excluded.unchanged,
                    quarantined = excluded.quarantined
            returning watermark
            """,
            (FEED, max_updated, load_id, base_url, fetched, upserted, distinct - upserted, len(bad)),
        )
        watermark = cur.fetchone()[0]
        if upserted:
            cur.execute("analyze raw.products")
    inserted = distinct - existing
    return upserted, inserted, distinct - upserted, watermark


def ingest_catalog(
    dsn: str,
    base_url: str,
    *,
    updated_since: datetime | None = None,
    page_size: int = 200,
    timeout_s: float = 5.0,
    max_retry_s: float = 60.0,
    incremental: bool = False,
    max_invalid_share: float = 0.5,
    load_id: str | None = None,
) -> CatalogLoadResult:
    """Fetch the catalogue from ``base_url`` and upsert it into ``raw.products`` of ``dsn``.

    With ``updated_since`` None and ``incremental`` True, only records changed since the last
    successful run's watermark are fetched; otherwise the whole catalogue is.  Raises
    :class:`CatalogIngestError` (nothing committed) when the API stays unavailable beyond the
    retry budget or when more than ``max_invalid_share`` of the records are invalid.
    """
    started = time.monotonic()
    load_id = load_id or f"catalog-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:  # explicit transactions below
        ensure_catalog_tables(conn)
        if updated_since is None and incremental:
            updated_since = read_watermark(conn)
        fetched = fetch_catalogue(
            base_url, updated_since=updated_since, page_size=page_size, timeout_s=timeout_s, max_retry_s=max_retry_s
        )
        good, bad = _validate(fetched)
        total = len(fetched.records)
        if total and len(bad) / total > max_invalid_share:
            examples = "; ".join(reason for *_, reason in bad[:3])
            raise CatalogIngestError(
                f"{len(bad)} of {total} catalogue records are invalid (limit {max_invalid_share:.0%}),"
                f" has the API schema changed? e.g. {examples}"
            )
        with conn.transaction():
            upserted, inserted, unchanged, watermark = _write(conn, load_id, base_url, good, bad, total)
    result = CatalogLoadResult(
        load_id=load_id,
        fetched=total,
        upserted=upserted,
        inserted=inserted,
        updated=upserted - inserted,
        unchanged=unchanged,
        quarantined=len(bad),
        pages=fetched.pages,
        retries=fetched.retries,
        updated_since=updated_since,
        watermark=watermark,
        duration_s=round(time.monotonic() - started, 3),
    )
    log.info("catalog load %s: %s", load_id, result.as_dict())
    return result
