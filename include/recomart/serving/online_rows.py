"""A request's online feature rows (Feast's online read), batched with the concurrent requests' reads.

The session and user views are read through :class:`recomart.features.retrieval.OnlineReader`, the
readers the live state loads (``LiveState.session_reader``, ``segment_reader``). Each view has its own
:class:`~recomart.serving.batching.Coalescer`: reads arriving while one is in flight share the next
``online_read_async`` (one pipelined ``HMGET`` per user in Feast's Redis store).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recomart.features.retrieval import OnlineReader
from recomart.serving import metrics
from recomart.serving.batching import Coalescer
from recomart.serving.live import LiveState
from recomart.serving.rerank import Session


def _view_rows(reader_of: Callable[[], OnlineReader | None]) -> Coalescer[str, dict[str, Any]]:
    """Batched reads of the users' rows of the current reader's one view."""

    async def fetch_many(user_ids: list[str]) -> list[dict[str, Any]]:
        reader = reader_of()
        if reader is None:
            raise RuntimeError("the feature store's reader was unloaded")
        view = reader.views[0]
        return [rows[view] for rows in await reader.read_many_async(user_ids)]

    return Coalescer(fetch_many)


class OnlineRows:
    """The user's session (fresh rows only) and segment, from the live state's online readers."""

    def __init__(self, state: LiveState) -> None:
        self.state = state
        self._sessions = _view_rows(lambda: state.session_reader)
        self._segments = _view_rows(lambda: state.segment_reader)

    async def _row(
        self, reader: OnlineReader | None, rows: Coalescer[str, dict[str, Any]], user_id: str
    ) -> dict[str, Any] | None:
        """The user's row (None if the store is down or the read fails)."""
        if reader is None or self.state.health.redis is not None:
            # Redis failed the last poll (at most a second ago): Feast's client would retry it with backoff
            # for seconds per request, so serve without features until the poller sees Redis again
            return None
        try:
            return await rows.get(user_id)
        except Exception:  # Feast raises Redis, registry and conversion errors: serve without features
            metrics.SESSION_READ_ERRORS.inc()
            return None

    async def session(self, user_id: str) -> Session | None:
        """The user's fresh session (None if absent, stale or unreadable)."""
        row = await self._row(self.state.session_reader, self._sessions, user_id)
        return Session.from_features(row["features"]) if row and row["freshness"] == "fresh" else None

    async def segment(self, user_id: str) -> str | None:
        """The segment of a user not in the generation, from the nightly user features (None if unknown)."""
        row = await self._row(self.state.segment_reader, self._segments, user_id)
        return row["features"].get("segment") if row else None
