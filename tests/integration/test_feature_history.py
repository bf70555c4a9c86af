"""The as-of feature histories on real Postgres with real dbt: incremental day by day equals a full build.

The raw events of ``test_dbt.py`` arrive as a daily ingest would deliver them (one load per event
day, the last day in two parts, so its first build sees a partial day), each load followed by an
incremental ``dbt build`` of the two history marts. A ``--full-refresh`` of the same raw rows must
then give exactly the same rows, every column. A late event for an old day reaches the histories in the
next daily build (``int_interactions`` rewrites its day, and the histories recompute from the first day
it rewrote since their own last build), which again equals a full build; so does a backfill from a day
(``feature_history_from``).
"""

from __future__ import annotations

import psycopg
import pytest
from test_dbt import GENERATED_RAW_SQL  # the same valid raw rows as test_dbt.py

from recomart.config import Settings
from recomart.transform import dbt_build

pytestmark = pytest.mark.integration

HISTORIES = "user_features_history item_features_history"
# one load per event day (03-01 in two parts: the morning, then the noon purchase)
LOADS = (
    "event_time < '2024-01-16'",
    "event_time >= '2024-01-16' and event_time < '2024-02-21'",
    "event_time >= '2024-02-21' and event_time < '2024-03-01'",
    "event_time >= '2024-03-01' and event_time < '2024-03-01 12:00'",
    "event_time >= '2024-03-01 12:00'",
)
LATE_EVENT = (
    "insert into raw.events values ('e8', '2024-01-20 08:00:00', 'u3', 'p2', 'purchase', 1, 20,"
    " '2024-01-20', 'l9', '2024-01-20.csv', 2)"
)
_USER_COLUMNS = (
    "user_id, event_timestamp, as_of_date, recency_days, frequency, monetary, distinct_items, favourite_category,"
    " country, segment, days_since_first_seen, last_interaction_at"
)
_ITEM_COLUMNS = (
    "item_id, event_timestamp, as_of_date, pop_7d, pop_30d, pop_90d, distinct_buyers, revenue, price, price_band,"
    " category, brand, content_text, first_seen_at"
)
_ROWS = {
    "user_features_history": f"select {_USER_COLUMNS} from marts.user_features_history order by 1, 2",
    "item_features_history": f"select {_ITEM_COLUMNS} from marts.item_features_history order by 1, 2",
}
# the table the former models built: one snapshot per build, no as_of_date
LEGACY_USER_HISTORY = """
drop table marts.user_features_history;
create table marts.user_features_history as
select user_id, event_timestamp, recency_days, frequency, monetary, distinct_items, favourite_category, country,
    segment, days_since_first_seen, last_interaction_at
from marts.user_features;
"""


def _rows(dsn: str) -> dict[str, list[tuple]]:
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(query).fetchall() for name, query in _ROWS.items()}


def _execute(dsn: str, statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statements)


@pytest.fixture(scope="module")
def build(tool_env: dict[str, str], test_settings: Settings, tmp_path_factory):
    """``dbt build`` of the history marts and their parents, with optional vars and --full-refresh."""
    work = tmp_path_factory.mktemp("dbt_history")
    # only the tests of the selected models (not those of the other marts that reference dim_products)
    env = {**tool_env, "DBT_INDIRECT_SELECTION": "cautious"}

    def run(full_refresh: bool = False, **vars: str) -> None:
        dbt_build(
            test_settings.dbt_project_dir,
            env,
            vars={"dataset": "generated", **vars},
            select=" ".join(f"+{name}" for name in HISTORIES.split()) + " int_user_items user_features item_features",
            full_refresh=full_refresh,
            log=lambda _line: None,
            target_path=work / "target",
            log_path=work / "logs",
        )

    return run


@pytest.fixture(scope="module")
def incremental_then_full(warehouse_dsn: str, build) -> tuple[dict, dict]:
    """The histories after the daily loads (incremental builds), then after a --full-refresh."""
    _execute(
        warehouse_dsn,
        GENERATED_RAW_SQL + "; create table public.pending_events as select * from raw.events; truncate raw.events",
    )
    for condition in LOADS:
        _execute(warehouse_dsn, f"insert into raw.events select * from public.pending_events where {condition}")
        build()
    incremental = _rows(warehouse_dsn)
    build(full_refresh=True)
    return incremental, _rows(warehouse_dsn)


def test_incremental_day_by_day_equals_full_refresh(incremental_then_full: tuple[dict, dict]) -> None:
    incremental, full = incremental_then_full
    assert len(full["user_features_history"]) >= 8 and len(full["item_features_history"]) >= 8
    assert incremental == full


def test_rows_are_as_of_each_event_day(incremental_then_full: tuple[dict, dict], warehouse_dsn: str) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        u2 = conn.execute(
            "select as_of_date::text, frequency, monetary, distinct_items from marts.user_features_history"
            " where user_id = 'u2' order by as_of_date"
        ).fetchall()
        p1 = conn.execute(
            "select as_of_date::text, pop_7d, pop_30d, pop_90d, distinct_buyers from marts.item_features_history"
            " where item_id = 'p1' order by as_of_date"
        ).fetchall()
    # u2: viewed p1 on 01-15, signed up 02-01, bought p3 on 02-28 and 03-01
    assert u2 == [
        ("2024-01-15", 0, 0.0, 1),
        ("2024-02-01", 0, 0.0, 1),
        ("2024-02-28", 1, 30.0, 2),
        ("2024-03-01", 2, 60.0, 2),
    ]
    # p1: u2's view of 01-15 leaves the 7-day window on 01-22 and the 30-day one on 02-14; u1 on 03-01
    assert p1 == [
        ("2024-01-15", 1, 1, 1, 0),
        ("2024-01-22", 0, 1, 1, 0),
        ("2024-02-14", 0, 0, 1, 0),
        ("2024-03-01", 1, 1, 2, 1),
    ]


# the current marts' cumulative columns, aggregated here from every interaction (the marts read them off
# each entity's latest history row: a history that drifted from its events differs)
_USER_TOTALS = """
select user_id, count(distinct order_id) filter (where event_type = 'purchase'), sum(revenue)::float8,
    count(distinct item_id), max(event_time)
from intermediate.int_interactions group by user_id
"""
_ITEM_TOTALS = """
select item_id, count(distinct user_id) filter (where event_type = 'purchase'), round(sum(revenue), 2)::float8,
    min(event_time)
from intermediate.int_interactions group by item_id
"""


def test_current_marts_agree_with_every_interaction(
    incremental_then_full: tuple[dict, dict], warehouse_dsn: str
) -> None:
    """user_features and item_features (the latest history rows) equal aggregates over int_interactions."""
    with psycopg.connect(warehouse_dsn) as conn:
        users = conn.execute(
            "select user_id, frequency, monetary, distinct_items, last_interaction_at from marts.user_features"
            " where last_interaction_at is not null"
        ).fetchall()
        items = conn.execute(
            "select item_id, distinct_buyers, revenue, first_seen_at from marts.item_features"
            " where first_seen_at is not null"
        ).fetchall()
        user_totals = conn.execute(_USER_TOTALS).fetchall()
        item_totals = conn.execute(_ITEM_TOTALS).fetchall()
    assert len(users) >= 2 and sorted(users) == sorted(user_totals)
    assert len(items) >= 3 and sorted(items) == sorted(item_totals)


def _days(rows: dict[str, list[tuple]], as_of_date: str) -> dict[str, list[str]]:
    """The entity ids with a row on ``as_of_date``, per history mart (column 0: id, column 2: as_of_date)."""
    return {name: sorted(row[0] for row in table if str(row[2]) == as_of_date) for name, table in rows.items()}


@pytest.mark.slow  # 45 s: three more dbt builds
def test_late_events_reach_the_histories_in_the_next_build(
    incremental_then_full: tuple[dict, dict], warehouse_dsn: str, build
) -> None:
    _execute(warehouse_dsn, LATE_EVENT)
    build()  # 01-20 is 41 days before the last day, far behind the lookback (3 days)
    caught = _rows(warehouse_dsn)
    assert _days(caught, "2024-01-20") == {"user_features_history": ["u3"], "item_features_history": ["p2"]}
    build(feature_history_from="2024-01-20")  # a backfill from the day gives the same rows
    assert caught == _rows(warehouse_dsn)
    build(full_refresh=True)
    assert caught == _rows(warehouse_dsn)


def test_a_table_of_the_former_models_is_rebuilt_from_raw(
    incremental_then_full: tuple[dict, dict], warehouse_dsn: str, build
) -> None:
    """The first build after the upgrade empties the one-snapshot-per-build table and fills every day."""
    expected = _rows(warehouse_dsn)
    _execute(warehouse_dsn, LEGACY_USER_HISTORY)
    build()
    assert _rows(warehouse_dsn) == expected
