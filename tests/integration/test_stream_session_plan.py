"""The stream worker's session-row queries stay index reads as ``raw.stream_events`` grows.

A full run of ``benchmarks/serving.py`` lost its freshness target when these queries joined the batch's
users to the table and Postgres answered with a sequential scan of all of it (233.7 of 243.7 ms per
micro-batch). Here the table holds many other users' events, as after a day of traffic, and the plan of
each query must reach it through the ``(user_id, event_time)`` index, never by a sequential scan; the
rows must be those of the same events folded one by one (``SessionState.add``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest

from recomart.features.session import COUNT_WINDOW, RECENT_ITEMS, SESSION_TTL, SessionEvent, SessionState
from recomart.stream.batch import LAST_EVENTS, RECENT_LISTS, WINDOW_TIMES, session_rows
from recomart.warehouse.migrate import migrate

pytestmark = pytest.mark.integration

OTHER_USERS, EVENTS_EACH = 20_000, 10
BATCH_USERS = [f"u{n}" for n in range(0, 2_000, 20)]
NOW = datetime(2031, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def filled(warehouse_dsn: str) -> str:
    """The warehouse with 200,000 stream events of 20,000 users, ten each five minutes apart, analysed."""
    migrate(warehouse_dsn)
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(
            "insert into raw.stream_events (event_id, event_time, user_id, item_id, event_type, received_at,"
            " _stream_id, _load_id)"
            " select 'e' || g, %(now)s - (g / %(users)s) * interval '5 minutes' - (g %% 60) * interval '1 second',"
            " 'u' || (g %% %(users)s),"
            " 'i' || (g %% 997), (array['view', 'add_to_cart', 'purchase'])[1 + g %% 3], %(now)s, g || '-0', 'plan'"
            " from generate_series(1, %(rows)s) as g",
            {"now": NOW, "users": OTHER_USERS, "rows": OTHER_USERS * EVENTS_EACH},
        )
        conn.execute("analyze raw.stream_events")
    return warehouse_dsn


def _scans(plan: dict) -> list[tuple[str, str | None]]:
    """``(node type, relation)`` of every node of an ``EXPLAIN (format json)`` plan."""
    nodes = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        nodes.extend(_scans(child))
    return nodes


@pytest.mark.parametrize("query", ["last", "recent", "window"])
def test_each_session_query_reads_the_table_through_its_user_index(filled: str, query: str) -> None:
    last_at = [NOW] * len(BATCH_USERS)
    statement, params = {
        "last": (LAST_EVENTS, {"users": BATCH_USERS}),
        "recent": (RECENT_LISTS, {"users": BATCH_USERS, "last": last_at, "span": SESSION_TTL, "recent": RECENT_ITEMS}),
        "window": (WINDOW_TIMES, {"users": BATCH_USERS, "last": last_at, "span": COUNT_WINDOW}),
    }[query]
    with psycopg.connect(filled) as conn:
        [[plan]] = conn.execute(f"explain (format json) {statement}", params).fetchall()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    reads = [(node, relation) for node, relation in _scans(plan[0]["Plan"]) if relation == "stream_events"]
    assert reads, f"the plan never reads raw.stream_events: {plan}"
    assert "Seq Scan" not in {node for node, _ in reads}, reads


def test_session_rows_match_the_events_folded_one_by_one(filled: str) -> None:
    users = BATCH_USERS[:5]
    with psycopg.connect(filled) as conn:
        rows = {user: (row_time, state) for user, row_time, state in session_rows(conn, users)}
        conn.rollback()  # leave the session clock as it was
        events = conn.execute(
            "select user_id, item_id, event_type, event_time from raw.stream_events where user_id = any(%s)"
            " order by event_time",
            (users,),
        ).fetchall()
    assert sorted(rows) == sorted(users)
    for user in users:
        folded = SessionState()
        for event in (SessionEvent(*event) for event in events if event[0] == user):
            folded.add(event)
        row_time, state = rows[user]
        assert row_time == folded.last_event_at
        assert state.features() == folded.features()
        assert state.features()["views_30m"] + state.features()["carts_30m"] + state.features()["purchases_30m"] > 0
