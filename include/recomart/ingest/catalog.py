"""Catalogue ingestion: fetch the catalog HTTP API and bring ``raw.products`` up to date in one transaction.

* HTTP (:mod:`recomart.ingest.catalog_client`): timeouts, retries with backoff and a retry budget,
  ``Retry-After``; every page of a run comes from one snapshot of the catalogue, or the run restarts
  paging (and fails after a few restarts): a run never commits a catalogue with an item skipped.
* A run is a **full snapshot** (every record) or **incremental** (records changed since the
  watermark, plus the unresolved quarantined keys, re-fetched by id).  An incremental run turns into
  a full snapshot when the last one is older than ``full_snapshot_every`` (measured at ``as_of``).
* Every record is validated with pydantic; invalid ones go to ``quarantine.products`` with the reason,
  the raw JSON and their key.  A quarantine row is resolved (``resolved_at``, ``resolved_by_load``,
  ``resolution``) by the first later load that gets a valid record of its key (``loaded``) or learns
  that the catalogue no longer has it (``absent``); a full snapshot also supersedes the rows without a
  readable key.  Too many invalid records among the paged ones (e.g. a schema change) fail the run.
* A full snapshot marks every product it did not serve inactive (with the time and the load), unless
  some record in it had no readable key (that product cannot be told apart, so nothing is deactivated);
  a product that is served again becomes active again.
* Nothing touches the database until every page is fetched.  Then one transaction stages the records,
  upserts ``raw.products`` (a row changes only when something in it changed), resolves and writes
  quarantine rows, reconciles, and advances ``ops.catalog_watermark`` (to the newest valid record of the
  paged range, never back).  A failed run commits nothing.  One load runs at a time (advisory lock).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from recomart.ingest import catalog_store as store
from recomart.ingest.catalog_client import CatalogClient, CatalogIngestError, FetchedRecord
from recomart.ingest.catalog_store import FEED
from recomart.warehouse.migrate import migrate_connection

__all__ = ["FEED", "CatalogIngestError", "CatalogLoadResult", "ingest_catalog"]

log = logging.getLogger(__name__)

#: a full snapshot runs at least daily, whatever the setting
MAX_FULL_SNAPSHOT_INTERVAL = timedelta(hours=24)


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


@dataclass(frozen=True)
class CatalogLoadResult:
    """Counts of one catalogue load. ``mode`` is ``full`` or ``incremental``; ``looked_up`` counts the
    quarantined keys re-fetched by id, ``resolved`` the quarantine rows this load resolved."""

    load_id: str
    mode: str
    snapshot: str
    fetched: int
    upserted: int
    inserted: int
    updated: int
    unchanged: int
    quarantined: int
    looked_up: int
    resolved: int
    deactivated: int
    reactivated: int
    pages: int
    restarts: int
    retries: int
    updated_since: datetime | None
    watermark: datetime | None
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("updated_since", "watermark"):
            d[key] = d[key].isoformat() if d[key] else None
        return d


def _key_of(raw: Any) -> str | None:
    """The record's ``item_id`` when it is readable (a non-empty string of at most 64 characters)."""
    key = raw.get("item_id") if isinstance(raw, dict) else None
    if isinstance(key, str) and 0 < len(key.strip()) <= 64 and "\x00" not in key:
        return key.strip()
    return None


def _reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors())[:1000]


@dataclass
class _Checked:
    """Validated records: staged rows ``(seq, in_range, columns..., payload)`` and quarantine rows
    ``(source, line, raw text, reason, key or None)``."""

    good: list[tuple] = field(default_factory=list)
    bad: list[tuple] = field(default_factory=list)

    def add(self, records: list[FetchedRecord], *, in_range: bool) -> None:
        for line, source, raw in records:
            text = json.dumps(raw, ensure_ascii=False, sort_keys=True)
            if not isinstance(raw, dict):
                self.bad.append((source, line, text, "record is not a JSON object", None))
                continue
            try:
                rec = ProductRecord.model_validate(raw)
            except ValidationError as exc:
                self.bad.append((source, line, text, _reason(exc), _key_of(raw)))
                continue
            self.good.append(
                (line, in_range, rec.item_id, rec.title, rec.description, rec.category, rec.brand, rec.price,
                 rec.updated_at, text)
            )  # fmt: skip

    @property
    def valid_keys(self) -> set[str]:
        return {row[2] for row in self.good}

    @property
    def invalid_keys(self) -> set[str]:
        return {row[4] for row in self.bad if row[4] is not None}

    @property
    def unidentified(self) -> int:
        return sum(1 for row in self.bad if row[4] is None)


@dataclass
class _Run:
    """One load: what it fetched and checked, and the decisions taken from it."""

    load_id: str
    full: bool
    updated_since: datetime | None
    snapshot: str = ""
    paged: int = 0
    pages: int = 0
    restarts: int = 0
    looked_up: int = 0
    missing: set[str] = field(default_factory=set)
    checked: _Checked = field(default_factory=_Checked)

    def resolutions(self, unresolved: frozenset[str]) -> dict[str, str]:
        """Unresolved quarantine key -> ``loaded`` (served valid now) or ``absent`` (no longer served)."""
        valid, invalid = self.checked.valid_keys, self.checked.invalid_keys
        if self.full:
            absent = unresolved - valid - invalid if not self.checked.unidentified else set()
        else:
            absent = self.missing & unresolved
        return {key: "loaded" for key in unresolved & valid} | {key: "absent" for key in absent}


def full_snapshot_interval(hours: float) -> timedelta:
    """The setting ``RECOMART_CATALOG_FULL_SNAPSHOT_HOURS`` as an interval; above 24 h or not positive
    is refused (a full snapshot runs at least daily)."""
    interval = timedelta(hours=hours)
    if not timedelta(0) < interval <= MAX_FULL_SNAPSHOT_INTERVAL:
        raise ValueError(f"the full catalogue snapshot interval must be in (0, 24] hours, got {hours}")
    return interval


def _plan(
    state: store.CatalogState,
    *,
    incremental: bool,
    updated_since: datetime | None,
    full_snapshot_every: timedelta | None,
    as_of: datetime,
) -> tuple[bool, datetime | None]:
    """``(full, updated_since)`` of this run: an explicit ``updated_since`` pages from there; a full
    load (``incremental`` False) pages everything; an incremental one pages from the watermark, or
    everything when there is none yet or the last full snapshot is older than ``full_snapshot_every``."""
    if updated_since is not None:
        return False, updated_since
    if not incremental or state.watermark is None:
        return True, None
    due = full_snapshot_every is not None and (
        state.last_full_at is None or as_of - state.last_full_at >= full_snapshot_every
    )
    return (True, None) if due else (False, state.watermark)


def _fetch(client: CatalogClient, run: _Run, unresolved: frozenset[str], page_size: int, max_restarts: int) -> None:
    """Page through one snapshot; an incremental run then re-fetches the unresolved quarantined keys it
    did not meet on the way by id."""
    paged = client.page_all(updated_since=run.updated_since, page_size=page_size, max_restarts=max_restarts)
    run.snapshot, run.paged, run.pages, run.restarts = paged.snapshot, len(paged.records), paged.pages, paged.restarts
    run.checked.add(paged.records, in_range=True)
    if run.full:
        return
    wanted = sorted(unresolved - run.checked.valid_keys - run.checked.invalid_keys)
    if wanted:
        looked_up = client.by_ids(wanted, first_line=len(paged.records) + 1)
        run.checked.add(looked_up.records, in_range=False)
        run.looked_up, run.missing = len(wanted), set(looked_up.missing)


def _check_invalid_share(run: _Run, max_invalid_share: float) -> None:
    """Fail when too many of the paged records are invalid (a schema change); records re-fetched by id
    (known-bad keys) do not count."""
    bad = run.paged - sum(1 for row in run.checked.good if row[1])
    if run.paged and bad / run.paged > max_invalid_share:
        examples = "; ".join(row[3] for row in run.checked.bad[:3])
        raise CatalogIngestError(
            f"{bad} of {run.paged} catalogue records are invalid (limit {max_invalid_share:.0%}),"
            f" has the API schema changed? e.g. {examples}"
        )


def _commit(
    conn: psycopg.Connection, run: _Run, unresolved: frozenset[str], base_url: str, as_of: datetime
) -> tuple[store.Upserted, store.LoadRecord, datetime | None]:
    """The write transaction of a load; returns what it upserted, what it recorded and the watermark."""
    checked = run.checked
    with conn.transaction():
        store.stage(conn, checked.good)
        upserted = store.upsert(conn, run.load_id)
        resolved = store.resolve_quarantine(conn, run.load_id, run.resolutions(unresolved), supersede_unkeyed=run.full)
        store.quarantine(conn, run.load_id, checked.bad)
        deactivated = 0
        if run.full and checked.unidentified:
            log.warning("%d records without a readable item_id: no product is deactivated", checked.unidentified)
        elif run.full:
            deactivated = store.deactivate_absent(conn, run.load_id, checked.invalid_keys)
        record = store.LoadRecord(
            load_id=run.load_id,
            source_url=base_url,
            mode="full" if run.full else "incremental",
            snapshot=run.snapshot,
            as_of=as_of,
            fetched=len(checked.good) + len(checked.bad),
            upserted=upserted.upserted,
            unchanged=upserted.distinct - upserted.upserted,
            quarantined=len(checked.bad),
            resolved=resolved,
            deactivated=deactivated,
            reactivated=upserted.reactivated,
        )
        watermark = store.advance_watermark(conn, record)
        if upserted.upserted or deactivated or upserted.reactivated:
            conn.execute("analyze raw.products")
    return upserted, record, watermark


def ingest_catalog(
    dsn: str,
    base_url: str,
    *,
    updated_since: datetime | None = None,
    page_size: int = 200,
    timeout_s: float = 5.0,
    max_retry_s: float = 60.0,
    max_restarts: int = 3,
    incremental: bool = False,
    full_snapshot_every: timedelta | None = None,
    as_of: datetime | None = None,
    max_invalid_share: float = 0.5,
    load_id: str | None = None,
) -> CatalogLoadResult:
    """Fetch the catalogue from ``base_url`` and bring ``raw.products`` of ``dsn`` up to date.

    ``incremental`` False (default): a full snapshot.  True: records changed since the watermark plus
    the unresolved quarantined keys; a full snapshot instead when there is no watermark yet or the last
    full snapshot is ``full_snapshot_every`` or more older than ``as_of`` (default: now; the DAG passes
    its data interval's end).  An explicit ``updated_since`` pages from there.  Raises
    :class:`CatalogIngestError` (nothing committed) when the API stays unavailable beyond the retry
    budget, keeps changing while paging (``max_restarts``), or when more than ``max_invalid_share`` of
    the paged records are invalid.
    """
    started = time.monotonic()
    load_id = load_id or f"catalog-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    as_of = as_of or datetime.now(UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:  # explicit transactions below
        migrate_connection(conn)
        conn.execute("select pg_advisory_lock(%s)", (store.LOCK_KEY,))  # held until the connection closes
        state = store.read_state(conn)
        full, since = _plan(
            state,
            incremental=incremental,
            updated_since=updated_since,
            full_snapshot_every=full_snapshot_every,
            as_of=as_of,
        )
        run = _Run(load_id, full, since)
        with CatalogClient(base_url, timeout_s=timeout_s, max_retry_s=max_retry_s) as client:
            _fetch(client, run, state.unresolved_keys, page_size, max_restarts)
            retries = client.retries
        _check_invalid_share(run, max_invalid_share)
        upserted, record, watermark = _commit(conn, run, state.unresolved_keys, base_url, as_of)
    result = CatalogLoadResult(
        load_id=load_id,
        mode=record.mode,
        snapshot=run.snapshot,
        fetched=record.fetched,
        upserted=upserted.upserted,
        inserted=upserted.inserted,
        updated=upserted.upserted - upserted.inserted,
        unchanged=record.unchanged,
        quarantined=record.quarantined,
        looked_up=run.looked_up,
        resolved=record.resolved,
        deactivated=record.deactivated,
        reactivated=record.reactivated,
        pages=run.pages,
        restarts=run.restarts,
        retries=retries,
        updated_since=since,
        watermark=watermark,
        duration_s=round(time.monotonic() - started, 3),
    )
    log.info("catalog load %s: %s", load_id, result.as_dict())
    return result
