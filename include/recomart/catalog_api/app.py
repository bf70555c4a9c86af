"""Catalogue HTTP API: ``GET /products`` pages ``products.csv`` with a keyset cursor over a pinned snapshot.

* ``GET /products?cursor=&limit=&updated_since=`` returns ``{"items": [...], "next_cursor": str | null,
  "snapshot": str}`` ordered by ``(updated_at, item_id)``; ``updated_since`` (ISO 8601, inclusive)
  filters.  The first page pins the catalogue as it is then (``snapshot``, a hash of the file); the
  cursor names that snapshot and the last key served, so every later page comes from the same
  snapshot however the file changes meanwhile: no item is skipped or served twice.  The last
  :data:`KEPT_SNAPSHOTS` snapshots are held; a cursor naming an older one gets HTTP 410 (restart).
* ``GET /products/by-ids?ids=A&ids=B`` returns the current records of those ids (``items``) and the ids
  the catalogue does not have (``missing``); the catalogue client re-fetches quarantined keys with it.
* ``GET /health``.  Bad parameters (unparseable or out-of-range timestamps, malformed, oversized or
  foreign cursors, too many ids) get HTTP 400 with a reason, never a 500.
* Faults (for testing clients), only with ``--enable-faults`` (``enable_faults=True``): ``GET``/``POST
  /admin/faults`` read or replace them; without it that endpoint does not exist.  A share of 500s, 429
  with ``Retry-After``, slow responses, truncated JSON bodies, corrupted records and a changed schema;
  each as a rate (drawn from a seeded RNG, so a given request sequence gets the same faults) or as a
  count for the next calls.
* The file is re-read when its modification time changes (a regenerated catalogue is served).

Run: ``python -m recomart.catalog_api.app --products FILE --host 127.0.0.1 --port 8765 [--enable-faults]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import bisect
import contextlib
import csv
import hashlib
import io
import json
import random
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

MAX_LIMIT = 1000
#: ids per ``GET /products/by-ids`` request
MAX_IDS = 500
#: a cursor is three short strings; anything longer is not one of ours
MAX_CURSOR_CHARS = 512
#: snapshots held for clients still paging through them
KEPT_SNAPSHOTS = 4
_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class FaultConfig(BaseModel):
    """Which faults ``GET /products`` injects. Rates are shares of requests; ``*_next`` are counts."""

    seed: int = 0
    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered with HTTP 500")
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="share answered 429 + Retry-After")
    truncate_rate: float = Field(0.0, ge=0, le=1, description="share with a cut-off JSON body (HTTP 200)")
    slow_rate: float = Field(0.0, ge=0, le=1, description="share delayed by slow_s before answering")
    invalid_rate: float = Field(0.0, ge=0, le=1, description="share of records served corrupted")
    schema_change: bool = Field(False, description="serve records in a changed (v2) schema")
    error_next: int = Field(0, ge=0, description="the next N requests get HTTP 500")
    rate_limit_next: int = Field(0, ge=0, description="the next N requests get HTTP 429")
    truncate_next: int = Field(0, ge=0, description="the next N requests get truncated JSON")
    slow_next: int = Field(0, ge=0, description="the next N requests are slow")
    retry_after_s: int = Field(1, ge=0, le=3600)
    slow_s: float = Field(3.0, ge=0, le=600)


@dataclass
class _Catalogue:
    """One snapshot of the file: products sorted by (updated_at, item_id), the sort keys for bisection
    and the records by id; ``snapshot`` names it (a hash of the file's bytes)."""

    snapshot: str
    mtime_ns: int
    keys: list[tuple[str, str]]
    records: list[dict[str, Any]]
    by_id: dict[str, dict[str, Any]]


def _utc_text(value: str) -> str:
    """Any ISO 8601 / ``YYYY-MM-DD HH:MM:SS`` timestamp (naive = UTC) as ``YYYY-MM-DDTHH:MM:SSZ``.

    Raises ``ValueError`` for text that is not a timestamp and for one that has no UTC equivalent
    (e.g. ``9999-12-31T23:59:59-23:59``, past year 9999 in UTC).
    """
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC).strftime(_TS_FORMAT)
    except OverflowError as exc:
        raise ValueError(f"{value!r} is out of range in UTC") from exc


def load_catalogue(path: Path) -> _Catalogue:
    """Read ``products.csv`` (columns of the data contract) into memory, sorted by the paging key."""
    mtime_ns = path.stat().st_mtime_ns
    data = path.read_bytes()
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    records = [
        {
            "item_id": r["item_id"],
            "title": r["title"],
            "description": r["description"] or None,
            "category": r["category"],
            "brand": r["brand"] or None,
            "price": float(r["price"]),
            "updated_at": _utc_text(r["updated_at"]),
        }
        for r in rows
    ]
    records.sort(key=lambda r: (r["updated_at"], r["item_id"]))
    return _Catalogue(
        snapshot=hashlib.sha256(data).hexdigest()[:16],
        mtime_ns=mtime_ns,
        keys=[(r["updated_at"], r["item_id"]) for r in records],
        records=records,
        by_id={r["item_id"]: r for r in records},
    )


def encode_cursor(snapshot: str, key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps([snapshot, *key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, tuple[str, str]]:
    """``(snapshot, (updated_at, item_id))`` of a cursor; HTTP 400 for anything else."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise HTTPException(status_code=400, detail=f"invalid cursor: longer than {MAX_CURSOR_CHARS} characters")
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
            raise ValueError("not [snapshot, updated_at, item_id]")
        snapshot, updated_at, item_id = value
        return snapshot, (_utc_text(updated_at), item_id)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise HTTPException(status_code=400, detail="invalid cursor: not a token this API issued") from exc


def _since_key(updated_since: str | None) -> tuple[str] | None:
    if updated_since is None:
        return None
    try:
        return (_utc_text(updated_since),)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"invalid updated_since: {exc}") from exc


def _corrupt(record: dict[str, Any], seed: int) -> dict[str, Any]:
    """One of a few realistic defects, chosen deterministically per item."""
    kind = zlib.crc32(f"{seed}:{record['item_id']}:kind".encode()) % 4
    bad = dict(record)
    if kind == 0:
        bad["price"] = -abs(bad["price"]) - 1
    elif kind == 1:
        bad.pop("title")
    elif kind == 2:
        bad["updated_at"] = "not-a-date"
    else:
        bad["price"] = "N/A"
    return bad


def _v2(record: dict[str, Any]) -> dict[str, Any]:
    """The record in a changed schema: renamed keys and a nested price."""
    return {
        "sku": record["item_id"],
        "name": record["title"],
        "details": record["description"],
        "category_path": [record["category"]],
        "brand": record["brand"],
        "price": {"amount": f"{record['price']:.2f}", "currency": "GBP"},
        "last_modified": record["updated_at"],
    }


class _State:
    """Mutable server state: the held snapshots, the fault settings and their RNG, counters."""

    def __init__(self, products_csv: Path, faults: FaultConfig) -> None:
        self.path = Path(products_csv)
        self.snapshots: OrderedDict[str, _Catalogue] = OrderedDict()
        self.catalogue = self._hold(load_catalogue(self.path))
        self.stats: Counter[str] = Counter()
        self.set_faults(faults)

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault settings; restart their RNG and the request counters."""
        self.faults = faults.model_copy()
        self.rng = random.Random(faults.seed)
        self.stats.clear()

    def _hold(self, catalogue: _Catalogue) -> _Catalogue:
        self.snapshots[catalogue.snapshot] = catalogue
        self.snapshots.move_to_end(catalogue.snapshot)
        while len(self.snapshots) > KEPT_SNAPSHOTS:
            self.snapshots.popitem(last=False)
        return catalogue

    def current(self) -> _Catalogue:
        """The file as it is now (re-read when its modification time changed)."""
        try:
            mtime_ns = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return self.catalogue
        if mtime_ns != self.catalogue.mtime_ns:
            self.catalogue = self._hold(load_catalogue(self.path))
        return self.catalogue

    def pinned(self, snapshot: str) -> _Catalogue:
        """The held snapshot a cursor names; HTTP 410 once it is no longer held."""
        catalogue = self.snapshots.get(snapshot)
        if catalogue is None:
            raise HTTPException(
                status_code=410, detail=f"catalogue snapshot {snapshot} is no longer held: restart from the first page"
            )
        return catalogue

    def draw_fault(self) -> str | None:
        """The fault for this request (counted in ``stats``)."""
        self.stats["requests"] += 1
        fault = self._pick_fault()
        if fault:
            self.stats[fault] += 1
        return fault

    def _pick_fault(self) -> str | None:
        """Pending counts first, then one seeded draw against the rates."""
        f = self.faults
        for name in ("error", "rate_limit", "truncate", "slow"):
            pending = getattr(f, f"{name}_next")
            if pending:
                setattr(f, f"{name}_next", pending - 1)
                return name
        draw, edge = self.rng.random(), 0.0
        for name in ("error", "rate_limit", "truncate", "slow"):
            edge += getattr(f, f"{name}_rate")
            if draw < edge:
                return name
        return None

    def is_corrupted(self, item_id: str) -> bool:
        rate = self.faults.invalid_rate
        return rate > 0 and zlib.crc32(f"{self.faults.seed}:{item_id}".encode()) / 2**32 < rate

    def served(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records as the fault settings serve them (corrupted, or in the changed schema)."""
        if self.faults.schema_change:
            return [_v2(r) for r in records]
        return [_corrupt(r, self.faults.seed) if self.is_corrupted(r["item_id"]) else r for r in records]


async def _answer(state: _State, build: Callable[[], dict[str, Any]]) -> Response:
    """Draw this request's fault, then answer with ``build()``'s body (or the fault instead)."""
    fault = state.draw_fault()
    if fault == "error":
        return JSONResponse({"detail": "injected internal error"}, status_code=500)
    if fault == "rate_limit":
        return JSONResponse(
            {"detail": "rate limited"}, status_code=429, headers={"Retry-After": str(state.faults.retry_after_s)}
        )
    if fault == "slow":
        await asyncio.sleep(state.faults.slow_s)
    body = build()
    if fault == "truncate":
        raw = json.dumps(body).encode()
        return Response(raw[: max(1, len(raw) // 2)], media_type="application/json")
    return JSONResponse(body)


def _page(state: _State, cursor: str | None, limit: int, updated_since: str | None) -> dict[str, Any]:
    """One page of ``GET /products``: from the snapshot the cursor names, else from the current file."""
    since = _since_key(updated_since)
    if cursor:
        snapshot, after = decode_cursor(cursor)
        catalogue = state.pinned(snapshot)
    else:
        catalogue, after = state.current(), None
    start = bisect.bisect_left(catalogue.keys, since) if since else 0
    if after:
        start = max(start, bisect.bisect_right(catalogue.keys, after))
    page = catalogue.records[start : start + limit]
    more = start + limit < len(catalogue.records)
    last = catalogue.keys[start + len(page) - 1] if page else None
    return {
        "items": state.served(page),
        "next_cursor": encode_cursor(catalogue.snapshot, last) if last and more else None,
        "snapshot": catalogue.snapshot,
    }


def _by_ids(state: _State, ids: list[str]) -> dict[str, Any]:
    """``GET /products/by-ids``: the current records of ``ids`` and the ids the catalogue lacks."""
    if len(ids) > MAX_IDS:
        raise HTTPException(status_code=400, detail=f"at most {MAX_IDS} ids per request, got {len(ids)}")
    catalogue = state.current()
    wanted = list(dict.fromkeys(ids))
    found = [catalogue.by_id[i] for i in wanted if i in catalogue.by_id]
    return {
        "items": state.served(found),
        "missing": [i for i in wanted if i not in catalogue.by_id],
        "snapshot": catalogue.snapshot,
    }


def _add_fault_routes(app: FastAPI, state: _State) -> None:
    @app.get("/admin/faults")
    async def get_faults() -> dict[str, Any]:
        return {"faults": state.faults.model_dump(), "stats": dict(state.stats)}

    @app.post("/admin/faults")
    async def set_faults(config: FaultConfig) -> dict[str, Any]:
        state.set_faults(config)
        return {"faults": state.faults.model_dump(), "stats": dict(state.stats)}


def create_app(products_csv: Path, faults: FaultConfig | dict | None = None, *, enable_faults: bool = False) -> FastAPI:
    """The catalogue API serving ``products_csv``.

    ``enable_faults`` adds ``/admin/faults`` (for tests); ``faults`` (initial fault settings) needs it.
    """
    if faults and not enable_faults:
        raise ValueError("fault settings were given but fault injection is not enabled (enable_faults)")
    initial = faults if isinstance(faults, FaultConfig) else FaultConfig(**(faults or {}))
    state = _State(products_csv, initial)
    app = FastAPI(title="RecoMart catalogue API", version="1.1")
    app.state.catalog = state
    if enable_faults:
        _add_fault_routes(app, state)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        catalogue = state.current()
        return {"status": "ok", "products": len(catalogue.records), "snapshot": catalogue.snapshot}

    @app.get("/products")
    async def products(
        cursor: str | None = Query(None, description="opaque token from the previous page"),
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
        updated_since: str | None = Query(None, description="ISO 8601 timestamp, inclusive"),
    ) -> Response:
        return await _answer(state, lambda: _page(state, cursor, limit, updated_since))

    @app.get("/products/by-ids")
    async def products_by_ids(
        ids: list[str] = Query(..., description=f"item ids (repeat the parameter), at most {MAX_IDS}"),
    ) -> Response:
        return await _answer(state, lambda: _by_ids(state, ids))

    return app


@contextlib.contextmanager
def serve_in_thread(
    products_csv: Path,
    faults: FaultConfig | dict | None = None,
    host: str = "127.0.0.1",
    *,
    enable_faults: bool = False,
) -> Iterator[str]:
    """Run the API under uvicorn in a background thread on a free port; yield its base URL.

    For embedding the catalog in tests and notebooks; ``main`` is the stand-alone server.
    ``enable_faults`` adds ``/admin/faults`` (see :func:`create_app`).
    """
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(products_csv, faults, enable_faults=enable_faults),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"catalog API did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m recomart.catalog_api.app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--products", type=Path, required=True, help="products.csv to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--enable-faults", action="store_true", help="serve /admin/faults (fault injection, for tests only)"
    )
    parser.add_argument(
        "--faults", default=None, help="initial faults as JSON, e.g. '{\"error_rate\": 0.1}' (needs --enable-faults)"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if args.faults is not None and not args.enable_faults:
        parser.error("--faults needs --enable-faults")
    faults = FaultConfig.model_validate_json(args.faults) if args.faults else None
    app = create_app(args.products, faults, enable_faults=args.enable_faults)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
