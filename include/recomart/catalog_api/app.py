"""Catalogue HTTP API: ``GET /products`` pages ``products.csv`` with a keyset cursor.

* ``GET /products?cursor=&limit=&updated_since=`` returns ``{"items": [...], "next_cursor": str | null}``
  ordered by ``(updated_at, item_id)``; the cursor is an opaque token of the last key served, so
  pages stay consistent while the file changes; ``updated_since`` (ISO 8601, inclusive) filters.
* ``GET /health``; ``GET``/``POST /admin/faults`` read or replace the fault settings.
* Faults (for testing clients): a share of 500s, 429 with ``Retry-After``, slow responses,
  truncated JSON bodies, corrupted records and a changed schema; each as a rate (drawn from a
  seeded RNG, so a given request sequence gets the same faults) or as a count for the next calls.
* The file is re-read when its modification time changes (a regenerated catalogue is served).

Run: ``python -m recomart.catalog_api.app --products FILE --host 127.0.0.1 --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import bisect
import contextlib
import csv
import json
import random
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

MAX_LIMIT = 1000
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
    """Products sorted by (updated_at, item_id), with the sort keys for bisection."""

    mtime_ns: int
    keys: list[tuple[str, str]]
    records: list[dict[str, Any]]


def _utc_text(value: str) -> str:
    """Any ISO 8601 / ``YYYY-MM-DD HH:MM:SS`` timestamp (naive = UTC) as ``YYYY-MM-DDTHH:MM:SSZ``."""
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime(_TS_FORMAT)


def load_catalogue(path: Path) -> _Catalogue:
    """Read ``products.csv`` (columns of the data contract) into memory, sorted by the paging key."""
    mtime_ns = path.stat().st_mtime_ns
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
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
    return _Catalogue(mtime_ns, [(r["updated_at"], r["item_id"]) for r in records], records)


def encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, item_id = json.loads(raw)
        return _utc_text(str(updated_at)), str(item_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise HTTPException(status_code=400, detail="invalid cursor") from exc


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
    """Mutable server state: the catalogue, the fault settings and their RNG, counters."""

    def __init__(self, products_csv: Path, faults: FaultConfig) -> None:
        self.path = Path(products_csv)
        self.catalogue = load_catalogue(self.path)
        self.stats: Counter[str] = Counter()
        self.set_faults(faults)

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault settings; restart their RNG and the request counters."""
        self.faults = faults.model_copy()
        self.rng = random.Random(faults.seed)
        self.stats.clear()

    def current(self) -> _Catalogue:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return self.catalogue
        if mtime_ns != self.catalogue.mtime_ns:
            self.catalogue = load_catalogue(self.path)
        return self.catalogue

    def draw_fault(self) -> str | None:
        """The fault for this request: pending counts first, then one seeded draw against the rates."""
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


def create_app(products_csv: Path, faults: FaultConfig | dict | None = None) -> FastAPI:
    """The catalogue API serving ``products_csv``, with optional initial fault settings."""
    initial = faults if isinstance(faults, FaultConfig) else FaultConfig(**(faults or {}))
    state = _State(products_csv, initial)
    app = FastAPI(title="RecoMart catalogue API", version="1.0")
    app.state.catalog = state

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "products": len(state.current().records)}

    @app.get("/admin/faults")
    async def get_faults() -> dict[str, Any]:
        return {"faults": state.faults.model_dump(), "stats": dict(state.stats)}

    @app.post("/admin/faults")
    async def set_faults(config: FaultConfig) -> dict[str, Any]:
        state.set_faults(config)
        return {"faults": state.faults.model_dump(), "stats": dict(state.stats)}

    @app.get("/products")
    async def products(
        cursor: str | None = Query(None, description="opaque token from the previous page"),
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
        updated_since: str | None = Query(None, description="ISO 8601 timestamp, inclusive"),
    ) -> Response:
        state.stats["requests"] += 1
        fault = state.draw_fault()
        if fault:
            state.stats[fault] += 1
        if fault == "error":
            return JSONResponse({"detail": "injected internal error"}, status_code=500)
        if fault == "rate_limit":
            return JSONResponse(
                {"detail": "rate limited"}, status_code=429, headers={"Retry-After": str(state.faults.retry_after_s)}
            )
        if fault == "slow":
            await asyncio.sleep(state.faults.slow_s)

        catalogue = state.current()
        start = 0
        if updated_since:
            try:
                since = _utc_text(updated_since)
            except ValueError as exc:
                raise HTTPException(status_code=400, detail="invalid updated_since") from exc
            start = bisect.bisect_left(catalogue.keys, (since,))
        if cursor:
            start = max(start, bisect.bisect_right(catalogue.keys, decode_cursor(cursor)))
        page = catalogue.records[start : start + limit]
        more = start + limit < len(catalogue.records)
        items = [_corrupt(r, state.faults.seed) if state.is_corrupted(r["item_id"]) else r for r in page]
        if state.faults.schema_change:
            items = [_v2(r) for r in page]
        body = {
            "items": items,
            "next_cursor": encode_cursor(catalogue.keys[start + len(page) - 1]) if page and more else None,
        }
        if fault == "truncate":
            raw = json.dumps(body).encode()
            return Response(raw[: max(1, len(raw) // 2)], media_type="application/json")
        return JSONResponse(body)

    return app


@contextlib.contextmanager
def serve_in_thread(
    products_csv: Path, faults: FaultConfig | dict | None = None, host: str = "127.0.0.1"
) -> Iterator[str]:
    """Run the API under uvicorn in a background thread on a free port; yield its base URL.

    For embedding the catalog in tests and notebooks; ``main`` is the stand-alone server.
    """
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(products_csv, faults), host=host, port=port, log_level="warning", access_log=False)
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
    parser.add_argument("--faults", default="{}", help="initial faults as JSON, e.g. '{\"error_rate\": 0.1}'")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    app = create_app(args.products, FaultConfig.model_validate_json(args.faults))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
