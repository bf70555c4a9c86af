"""One user's recommendations outside the API (``./recomart recommend user``), built as the API builds them.

The live generation and the user's nightly list are read from Postgres (``reco.generations``,
``reco.user_recommendations``) with the API's own readers, and the body is
:func:`recomart.serving.lists.build_recommendations` without a session: a user who is not in the
generation gets the labelled cold-start list.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from recomart.serving.lists import Filters, Request, build_recommendations
from recomart.serving.live import postgres_generation
from recomart.serving.reads import ListReader, postgres_pool


def user_recommendations(dsn: str, user_id: str, k: int = 10) -> dict[str, Any] | None:
    """The API's response body for ``user_id`` (no session, no filters); None when no generation is live.

    Returns the keys of ``GET /v1/users/{id}/recommendations``: ``strategy`` (``popular_cold_start``
    for a user not in the generation, with ``cold_start_segment``), ``generation_id``,
    ``model_version`` and ``items`` (rank, item_id, title, category, price, score, source, reasons).
    """
    generation = postgres_generation(dsn)
    if generation is None:
        return None
    with postgres_pool(dsn) as pool:
        user_list = ListReader(None, None, pool).pg_user(user_id)
    request = Request(user_id, k, Filters(), segment=None, session=None, weight=0.0, now=datetime.now(UTC))
    return build_recommendations(generation, user_list, None, request)
