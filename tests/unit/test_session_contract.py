"""The session-feature contract (``recomart.features.session``): folding events, row times, the push frame."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from recomart.features.session import (
    PUSH_COLUMNS,
    RECENT_ITEMS,
    SESSION_FIELDS,
    SESSION_LOG_TABLE,
    SessionEvent,
    SessionState,
    fold_events,
    next_row_time,
    push_frame,
)
from recomart.warehouse.migrate import MIGRATIONS_DIR

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _view(user: str, item: str, seconds: float, kind: str = "view") -> SessionEvent:
    return SessionEvent(user, item, kind, T0 + timedelta(seconds=seconds))


def test_lists_are_newest_first_deduplicated_and_capped() -> None:
    events = [_view("u", f"i{n}", n) for n in range(RECENT_ITEMS + 5)] + [_view("u", "i0", 1000)]
    features = fold_events(events)["u"].features()
    assert features["viewed_item_ids"][0] == "i0"
    assert len(features["viewed_item_ids"]) == RECENT_ITEMS
    assert len(set(features["viewed_item_ids"])) == RECENT_ITEMS
    assert features["viewed_at"][0] == T0 + timedelta(seconds=1000)
    assert features["viewed_at"] == sorted(features["viewed_at"], reverse=True)


def test_out_of_order_events_keep_the_latest_time() -> None:
    features = fold_events([_view("u", "a", 50), _view("u", "a", 10), _view("u", "b", 20)])["u"].features()
    assert features["viewed_item_ids"] == ["a", "b"]
    assert features["viewed_at"][0] == T0 + timedelta(seconds=50)
    assert features["last_event_at"] == T0 + timedelta(seconds=50)


def test_counts_cover_the_last_30_minutes_per_event_type() -> None:
    events = [
        _view("u", "old", -31 * 60),
        _view("u", "a", 0),
        _view("u", "a", 5),
        _view("u", "c", 6, "add_to_cart"),
        _view("u", "d", 7, "purchase"),
    ]
    features = fold_events(events)["u"].features()
    assert (features["views_30m"], features["carts_30m"], features["purchases_30m"]) == (2, 1, 1)
    assert features["bought_item_ids"] == ["d"]


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event_type 'click'"):
        SessionState().add(_view("u", "a", 0, "click"))


def test_row_times_strictly_increase_by_whole_seconds() -> None:
    assert next_row_time(T0, None) == T0
    assert next_row_time(T0 + timedelta(milliseconds=300), T0) == T0 + timedelta(seconds=1)
    assert next_row_time(T0 + timedelta(seconds=5), T0) == T0 + timedelta(seconds=5)


def test_push_frame_columns_and_types() -> None:
    states = fold_events([_view("u1", "a", 0), _view("u2", "b", 1, "purchase")])
    frame = push_frame([(user, state.last_event_at, state) for user, state in states.items()])
    assert tuple(frame.columns) == PUSH_COLUMNS
    assert isinstance(frame["event_timestamp"].dtype, pd.DatetimeTZDtype)
    assert frame.set_index("user_id").loc["u2", "bought_item_ids"] == ["b"]


def test_state_rebuilds_from_its_features() -> None:
    state = fold_events([_view("u", "a", 0), _view("u", "b", 3, "add_to_cart")])["u"]
    rebuilt = SessionState.from_features(state.features())
    assert rebuilt.features() == state.features()


def test_log_table_migration_has_every_push_column_in_order() -> None:
    """Migration 0007 creates the session log with the push frame's columns and the fields' types."""
    ddl = (MIGRATIONS_DIR / "0007_session_feature_log.sql").read_text()
    body = ddl[ddl.index(f"create table if not exists {SESSION_LOG_TABLE} (") :]
    columns = re.findall(r"^    (\w+) ([^,\n]+),?$", body, flags=re.MULTILINE)
    expected_types = ["text not null", "timestamptz not null", *(f.pg_type for f in SESSION_FIELDS)]
    assert columns == list(zip(PUSH_COLUMNS, expected_types, strict=True))
