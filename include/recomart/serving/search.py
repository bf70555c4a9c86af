"""``GET /v1/search``: product search over the API process's in-memory index (issue 18).

A :class:`SearchIndex` holds one immutable snapshot (a :class:`~recomart.search.searcher.Searcher`
and when it was built) that a request reads once.  It is built from ``marts.dim_products`` and the
stored vectors of ``reco.item_embeddings`` when the API starts, and again whenever the live poller
(:mod:`recomart.serving.live`) sees a new generation, in a background thread: requests keep being
answered from the previous snapshot while the next one is built, and ``rebuilding`` says so.
With the search extra the index is BM25 + MiniLM embeddings fused by reciprocal rank; without it
(or before any vector is stored) TF-IDF + LSA, and ``index_reason`` says why.  No query cache.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Response

from recomart.search.retrievers import one_blas_thread
from recomart.search.searcher import Searcher

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 200
MAX_K = 100


@dataclass(frozen=True)
class Snapshot:
    """One built index: the searcher, the generation live when its build began, and the build's times."""

    searcher: Searcher
    generation_id: int | None
    built_at: str
    build_s: float


class SearchIndex:
    """The searcher one API process serves, rebuilt in the background on request.

    ``build`` maps the warehouse DSN to a new searcher (default :meth:`Searcher.from_warehouse`).
    Requests made while a build runs are coalesced into one more build after it.
    """

    def __init__(self, dsn: str, build: Callable[[str], Searcher] = Searcher.from_warehouse) -> None:
        one_blas_thread()  # this process answers many small queries at once: see one_blas_thread
        self._dsn = dsn
        self._build = build
        self.snapshot: Snapshot | None = None
        self.problem: str | None = "not built yet"
        self._lock = threading.Lock()
        self._pending = False
        self._pending_generation: int | None = None
        self._worker: threading.Thread | None = None

    @property
    def rebuilding(self) -> bool:
        worker = self._worker
        return worker is not None and worker.is_alive()

    def rebuild(self, generation_id: int | None) -> None:
        """Build a new snapshot for ``generation_id`` in the background (returns at once)."""
        with self._lock:
            self._pending, self._pending_generation = True, generation_id
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="recomart-search-build", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._worker = None
                    return
                generation_id, self._pending = self._pending_generation, False
            started = time.perf_counter()
            try:
                searcher = self._build(self._dsn)
            except Exception as exc:  # psycopg, a missing mart, a broken model: keep serving the last snapshot
                self.problem = f"search index build failed: {str(exc).strip().splitlines()[0][:300]}"
                log.exception("building the search index failed")
                continue
            build_s = round(time.perf_counter() - started, 3)
            built_at = datetime.now(UTC).isoformat(timespec="seconds")
            self.snapshot, self.problem = Snapshot(searcher, generation_id, built_at, build_s), None
            log.info("search index %s built over %d items in %.2f s", searcher.index, len(searcher.item_ids), build_s)

    def search(self, query: str, k: int) -> dict[str, Any]:
        """The response body of ``GET /v1/search`` (503 while no snapshot was ever built)."""
        snapshot = self.snapshot
        if snapshot is None:
            raise HTTPException(503, detail=f"search index not available: {self.problem}")
        hits = snapshot.searcher.search(query, k)
        about = snapshot.searcher.describe()
        return {
            "query": query,
            "k": k,
            "index": about["index"],
            "index_reason": about["index_reason"],
            "model": about["model"],
            "retrievers": about["retrievers"],
            "index_items": about["items"],
            "index_generation_id": snapshot.generation_id,
            "index_built_at": snapshot.built_at,
            "rebuilding": self.rebuilding,
            "items": [{"rank": n, **hit.as_dict()} for n, hit in enumerate(hits, 1)],
            "request_id": uuid.uuid4().hex,
        }


def install(app: FastAPI, index: SearchIndex, to_json: Callable[[dict[str, Any]], Response]) -> None:
    """Add ``GET /v1/search`` answering from ``index`` (``to_json``: the API's JSON response maker)."""

    @app.get("/v1/search", tags=["search"], responses={503: {"description": "No search index built yet"}})
    def search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="What the shopper typed.")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="How many items.")] = 10,
    ) -> Response:
        """Products matching ``q``: BM25 + embeddings fused by reciprocal rank (or the TF-IDF + LSA
        fallback, ``index`` says which), each with its fused score and the retrievers that found it."""
        if not q.strip():
            raise HTTPException(422, detail="q is blank: give at least one word to search for")
        return to_json(index.search(q.strip(), k))
