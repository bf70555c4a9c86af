"""HTTP client of the catalog API: consistent paging through one snapshot, and look-ups by id.

* Per-request timeouts; retries with exponential backoff and jitter on 5xx, timeouts, connection
  errors and broken JSON; ``Retry-After`` honoured on 429/503; one retry time budget for the whole
  run (``max_retry_s``), after which the run fails.
* Paging cannot skip: every page must come from the snapshot the first page named (the API pins it
  in the cursor).  When the API no longer holds that snapshot (HTTP 410) or a page names another one,
  the records gathered so far are dropped and paging restarts from the first page, at most
  ``max_restarts`` times; then the run fails.  A run never returns a catalogue stitched together
  from two versions of the file.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

_BACKOFF_BASE_S = 0.25
_BACKOFF_CAP_S = 10.0
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
#: ids per ``GET /products/by-ids`` request (the API accepts up to 500; this keeps URLs short)
IDS_PER_REQUEST = 200

#: one fetched record: (line number within the run, where it came from, the record as served)
FetchedRecord = tuple[int, str, Any]


class CatalogIngestError(RuntimeError):
    """The catalogue could not be fetched or validated; nothing was committed."""


class _SnapshotLost(Exception):
    """The snapshot being paged through is gone or changed: restart from the first page."""


class _Page(BaseModel):
    items: list[Any]
    next_cursor: str | None = None
    snapshot: str | None = None


class _ByIds(BaseModel):
    items: list[Any]
    missing: list[str]


_Body = TypeVar("_Body", bound=BaseModel)


@dataclass
class Paged:
    """Every record of one snapshot (``updated_since`` on), in the API's ``(updated_at, item_id)`` order."""

    records: list[FetchedRecord]
    snapshot: str
    pages: int
    restarts: int


@dataclass
class LookedUp:
    """The current records of the ids asked for, and the ids the catalogue does not have."""

    records: list[FetchedRecord] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    requests: int = 0


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


class CatalogClient:
    """A session with the catalog API at ``base_url``; use as a context manager.

    ``retries`` counts the retried requests of the session, whatever they were for.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 5.0, max_retry_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(timeout_s))
        self._retrier = _Retrier(max_retry_s)

    def __enter__(self) -> CatalogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    @property
    def retries(self) -> int:
        return self._retrier.retries

    def _get(self, path: str, params: dict[str, Any], body: type[_Body]) -> _Body:
        """One GET, retried on transient failures; HTTP 410 raises :class:`_SnapshotLost`."""
        while True:
            started = time.monotonic()
            try:
                response = self._http.get(path, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self._retrier.wait(f"{type(exc).__name__}: {exc}", failed_call_s=time.monotonic() - started)
                continue
            elapsed = time.monotonic() - started
            if response.status_code in _RETRYABLE_STATUS:
                retry_after = _retry_after(response) if response.status_code in (429, 503) else None
                self._retrier.wait(f"HTTP {response.status_code}", retry_after, failed_call_s=elapsed)
                continue
            if response.status_code == 410:
                raise _SnapshotLost(response.text[:200])
            if response.status_code != 200:
                raise CatalogIngestError(
                    f"catalog API answered HTTP {response.status_code} to {path}: {response.text[:200]}"
                )
            try:
                parsed = body.model_validate(response.json())
            except (ValueError, ValidationError) as exc:  # cut-off or malformed body
                self._retrier.wait(f"unreadable response to {path} ({type(exc).__name__})", failed_call_s=elapsed)
                continue
            self._retrier.succeeded()
            return parsed

    def _page_through(self, params: dict[str, Any], stats: dict[str, int]) -> tuple[list[FetchedRecord], str]:
        """All pages of one snapshot, or :class:`_SnapshotLost`."""
        records: list[FetchedRecord] = []
        params = dict(params)
        snapshot: str | None = None
        cursors: set[str] = set()
        while True:
            page = self._get("/products", params, _Page)
            stats["pages"] += 1
            if page.snapshot is None:
                raise CatalogIngestError("catalog API did not name the snapshot of its pages: cannot prove them whole")
            if snapshot is not None and page.snapshot != snapshot:
                raise _SnapshotLost(f"page {stats['pages']} came from snapshot {page.snapshot}, not {snapshot}")
            snapshot = page.snapshot
            source = f"{self.base_url}/products page {stats['pages']}"
            records.extend((len(records) + k + 1, source, raw) for k, raw in enumerate(page.items))
            if not page.next_cursor:
                return records, snapshot
            if page.next_cursor in cursors:
                raise CatalogIngestError(f"catalog API repeated cursor {page.next_cursor!r}")
            cursors.add(page.next_cursor)
            params["cursor"] = page.next_cursor

    def page_all(self, *, updated_since: datetime | None = None, page_size: int = 200, max_restarts: int = 3) -> Paged:
        """Every record of one snapshot of the catalogue (changed since ``updated_since``, inclusive)."""
        params: dict[str, Any] = {"limit": page_size}
        if updated_since is not None:
            params["updated_since"] = updated_since.isoformat()
        stats = {"pages": 0}
        for restart in range(max_restarts + 1):
            try:
                records, snapshot = self._page_through(params, stats)
            except _SnapshotLost as exc:
                log.warning("catalog API: the catalogue changed while paging (%s); restart %d", exc, restart + 1)
                reason = str(exc)
                continue
            return Paged(records, snapshot, stats["pages"], restart)
        raise CatalogIngestError(
            f"the catalogue changed while paging, {max_restarts + 1} times in a row (last: {reason}); "
            "no complete snapshot was read, so nothing is committed"
        )

    def by_ids(self, ids: list[str], *, first_line: int = 1) -> LookedUp:
        """The current records of ``ids`` (``GET /products/by-ids``, in chunks); lines number from ``first_line``."""
        out = LookedUp()
        for start in range(0, len(ids), IDS_PER_REQUEST):
            chunk = ids[start : start + IDS_PER_REQUEST]
            body = self._get("/products/by-ids", {"ids": chunk}, _ByIds)
            out.requests += 1
            source = f"{self.base_url}/products/by-ids request {out.requests}"
            line = first_line + len(out.records)
            out.records.extend((line + k, source, raw) for k, raw in enumerate(body.items))
            out.missing.extend(body.missing)
        return out
