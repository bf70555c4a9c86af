"""The session-feature contract on real Feast: push through the PushSource, read through ``serving_v1``.

The stream worker builds its rows with ``recomart.features.session`` and pushes them; the API reads
them back only through Feast's online read. Batch materialization must leave pushed rows alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from recomart.config import Settings
from recomart.features import OnlineReader, apply, feature_store, materialize_window
from recomart.features.session import (
    FIELD_NAMES,
    SERVING_FEATURE_SERVICE,
    SESSION_FEATURE_VIEW,
    SESSION_PUSH_SOURCE,
    SessionEvent,
    fold_events,
    next_row_time,
    push_frame,
)

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
MARTS_DDL = """
create schema if not exists marts;
create table marts.user_features_history (user_id text not null, event_timestamp timestamptz not null,
    recency_days float8, frequency integer, monetary numeric(12, 2), distinct_items integer,
    favourite_category text, country text, segment text, days_since_first_seen float8);
create table marts.item_features_history (item_id text not null, event_timestamp timestamptz not null,
    pop_7d integer, pop_30d integer, pop_90d bigint, distinct_buyers integer, revenue numeric(14, 2),
    price numeric(10, 2), price_band text, category text, brand text, content_text text,
    first_seen_at timestamptz);
insert into marts.user_features_history values
    ('u1', '2025-03-01 00:00:00+00', 2, 10, 123.45, 7, 'books', 'GB', 'loyal', 300);
"""


@pytest.fixture(scope="module")
def store(warehouse_dsn: str, test_settings: Settings, tool_env: dict[str, str]):
    """The real feature_repo/ applied to this module's registry, without the optional log table."""
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(MARTS_DDL)
    apply(test_settings.feature_repo_dir, tool_env)
    return feature_store(test_settings.feature_repo_dir, tool_env)


def _push(store, events: list[SessionEvent], previous: dict[str, datetime] | None = None) -> dict[str, datetime]:
    """Fold ``events`` into fresh states and push one row per user; returns each user's row time."""
    from feast.data_source import PushMode

    states = fold_events(events)
    previous = previous or {}
    rows = [(user, next_row_time(s.last_event_at, previous.get(user)), s) for user, s in states.items()]
    store.push(SESSION_PUSH_SOURCE, push_frame(rows), to=PushMode.ONLINE)
    return {user: at for user, at, _ in rows}


def _session(store, user: str, now: datetime) -> dict:
    """The user's row of both views of the serving service, in one online read."""
    reader = OnlineReader(store, ["user_features", SESSION_FEATURE_VIEW], SERVING_FEATURE_SERVICE)
    return reader.read(user, now)[SESSION_FEATURE_VIEW]


def test_registry_has_push_source_stream_view_and_service(store) -> None:
    assert store.get_data_source(SESSION_PUSH_SOURCE).name == SESSION_PUSH_SOURCE
    view = store.get_feature_view(SESSION_FEATURE_VIEW)
    assert view.stream_source.name == SESSION_PUSH_SOURCE
    assert [f.name for f in view.features] == list(FIELD_NAMES)
    service = store.get_feature_service(SERVING_FEATURE_SERVICE)
    assert {p.name for p in service.feature_view_projections} == {"user_features", SESSION_FEATURE_VIEW}


def test_pushed_rows_read_back_through_the_service(store) -> None:
    events = [
        SessionEvent("s1", "i1", "view", T0),
        SessionEvent("s1", "i2", "view", T0 + timedelta(seconds=5)),
        SessionEvent("s1", "i1", "view", T0 + timedelta(seconds=9)),
        SessionEvent("s1", "i3", "add_to_cart", T0 + timedelta(seconds=10)),
        SessionEvent("s1", "i4", "purchase", T0 - timedelta(hours=2)),
    ]
    _push(store, events)
    got = _session(store, "s1", T0 + timedelta(minutes=1))
    assert got["found"] and got["freshness"] == "fresh"
    assert got["event_timestamp"] == T0 + timedelta(seconds=10)
    assert got["features"]["viewed_item_ids"] == ["i1", "i2"]
    assert got["features"]["viewed_at"] == [T0 + timedelta(seconds=9), T0 + timedelta(seconds=5)]
    assert got["features"]["carted_item_ids"] == ["i3"]
    assert got["features"]["bought_item_ids"] == ["i4"]
    assert (got["features"]["views_30m"], got["features"]["carts_30m"], got["features"]["purchases_30m"]) == (3, 1, 0)


def test_two_batches_in_one_second_both_land(store) -> None:
    """Feast's Redis store drops a row whose event second is not newer: next_row_time bumps it."""
    first = _push(store, [SessionEvent("s2", "a", "view", T0)])
    second = _push(
        store,
        [SessionEvent("s2", "a", "view", T0), SessionEvent("s2", "b", "view", T0 + timedelta(milliseconds=300))],
        previous=first,
    )
    assert second["s2"] == T0 + timedelta(seconds=1)
    got = _session(store, "s2", T0 + timedelta(seconds=2))
    assert got["features"]["viewed_item_ids"] == ["b", "a"]


def test_batch_materialization_leaves_pushed_rows_alone(store, test_settings, tool_env, warehouse_dsn) -> None:
    """A window over the marts neither reads the session log nor overwrites pushed rows."""
    _push(store, [SessionEvent("s3", "x", "view", T0)])
    result = materialize_window(test_settings.feature_repo_dir, tool_env, T0 - timedelta(days=30), T0)
    assert SESSION_FEATURE_VIEW not in result.feature_views
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:  # the log exists (migration 0007), unread
        assert conn.execute("select count(*) from raw.user_session_features").fetchone() == (0,)
    got = _session(store, "s3", T0)
    assert got["features"]["viewed_item_ids"] == ["x"]
