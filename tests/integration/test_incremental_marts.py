"""The incremental marts on real Postgres with real dbt: a daily build equals a full refresh, row for row.

The raw events of ``test_dbt.py`` arrive as the daily ingest and the stream deliver them: one file load
per event day (the last day in two parts), each stamped with its own ``_loaded_at``, and stream events
(``raw.stream_events``, migration 0009) among them: one the day's file later repeats (the file's row
wins), one late for the day before (inside the lookback window). Each load is followed by an
incremental ``dbt build`` of ``int_interactions``, the feature histories, ``int_user_items`` and the marts
built from its pairs. Then a file event for a day far outside the lookback window arrives:
``int_interactions`` rewrites its day by ``loaded_at``, and ``int_user_items`` and the histories recompute
what the rows it wrote since their own last build touch (``built_at``). A second build for the same day must leave
the same rows, and a ``--full-refresh`` must give exactly the same rows (``EXCEPT ALL`` both ways).
"""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql
from test_dbt import GENERATED_RAW_SQL  # the same valid raw rows as test_dbt.py

from recomart.config import Settings
from recomart.transform import dbt_build, run_dbt
from recomart.warehouse.migrate import MIGRATIONS_DIR

pytestmark = pytest.mark.integration

INCREMENTAL_MARTS = (
    ("intermediate", "int_interactions"),
    ("intermediate", "int_user_category_history"),
    ("marts", "user_features_history"),
    ("marts", "item_features_history"),
    ("marts", "report_hourly_interactions"),
    ("marts", "report_daily_baskets"),
    ("intermediate", "int_user_items"),
    # tables, built from int_user_items' pairs
    ("marts", "user_item_ratings"),
    ("marts", "user_features"),
    ("marts", "item_features"),
)
SELECT = (
    "+int_interactions +user_features_history +item_features_history +user_item_ratings +user_features +item_features"
    " +report_hourly_interactions +report_daily_baskets"
)
_RAW_COLUMNS = (
    "event_id, event_time, user_id, item_id, event_type, quantity, unit_price, _logical_date, _load_id,"
    " _source_file, _line_number"
)
# one file load per event day (03-01 in two parts); each load gets its own _loaded_at
LOADS = (
    "event_time < '2024-01-16'",
    "event_time >= '2024-01-16' and event_time < '2024-02-21'",
    "event_time >= '2024-02-21' and event_time < '2024-03-01'",
    "event_time >= '2024-03-01' and event_time < '2024-03-01 12:00'",
    "event_time >= '2024-03-01 12:00'",
)
# after the 4th load: e3 (in the 5th load's file later) and a late view of 02-28 arrive by the stream
STREAM_AFTER_LOAD = 3
STREAM_ROWS = """
insert into raw.stream_events
    (event_id, event_time, user_id, item_id, event_type, quantity, unit_price, received_at, _stream_id, _load_id)
values
    ('e3', '2024-03-01 12:00:00+00', 'u1', 'p1', 'purchase', 2, 10, '2024-03-01 12:00:01+00', '1-0', 's1'),
    ('s1', '2024-02-28 23:00:00+00', 'u3', 'p4', 'view', null, null, '2024-03-01 11:30:00+00', '2-0', 's1')
"""
# u3's views of p2 (02-26, 03-01) and p3 (02-22, 02-25), in the 3rd and 4th loads: the last loads' builds
# (window 02-28 or 03-01) need p2's day before their window (its 03-01 is no return within 7 days) and
# p3's day after 02-22 (its pop_7d does not end on 03-01)
PROBED_EVENTS = """
insert into public.pending_events values
    ('x1', '2024-02-26 10:00:00', 'u3', 'p2', 'view', 1, 20, '2024-02-26', 'l6', '2024-02-26.csv', 2, now()),
    ('x2', '2024-03-01 10:30:00', 'u3', 'p2', 'view', 1, 20, '2024-03-01', 'l2', '2024-03-01.csv', 6, now()),
    ('x3', '2024-02-22 10:00:00', 'u3', 'p3', 'view', 1, 30, '2024-02-22', 'l7', '2024-02-22.csv', 2, now()),
    ('x4', '2024-02-25 10:00:00', 'u3', 'p3', 'view', 1, 30, '2024-02-25', 'l8', '2024-02-25.csv', 2, now())
"""
# 41 days before the last day: far outside the lookback windows (3 days)
LATE_DAY = "2024-01-20"
LATE_EVENT = (
    "insert into raw.events values ('e8', '2024-01-20 08:00:00', 'u3', 'p2', 'purchase', 1, 20,"
    " '2024-01-20', 'l9', '2024-01-20.csv', 2, clock_timestamp())"
)

PLANTED_INDEX = "int_interactions_user_time_planted"
PLANTED_INDEX_LEFT = f"select count(*) from pg_indexes where indexname = '{PLANTED_INDEX}'"
AFTER_RERUN: dict[str, int] = {}  # what the fixture saw after the re-run's build


def _execute(dsn: str, statement: str | sql.Composable) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def _count(dsn: str, query: sql.Composable) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]


def _keep(dsn: str, tag: str) -> None:
    """Copy every incremental mart to ``public.<tag>_<name>``."""
    for schema, name in INCREMENTAL_MARTS:
        copy = sql.Identifier("public", f"{tag}_{name}")
        _execute(dsn, sql.SQL("drop table if exists {}").format(copy))
        _execute(dsn, sql.SQL("create table {} as table {}").format(copy, sql.Identifier(schema, name)))


def _differences(dsn: str, a: sql.Identifier, b: sql.Identifier) -> int:
    """Rows of table ``a`` that ``b`` lacks plus rows of ``b`` that ``a`` lacks (``EXCEPT ALL`` both ways:
    a duplicated row counts too), on every column of ``a`` but the run metadata ``built_at`` (when an
    invocation wrote the row: a full refresh writes every row again)."""
    with psycopg.connect(dsn) as conn:
        described = conn.execute(sql.SQL("select * from {} limit 0").format(a)).description or []
    names = [column.name for column in described if column.name != "built_at"]
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    query = sql.SQL(
        "select count(*) from ((select {c} from {a} except all select {c} from {b})"
        " union all (select {c} from {b} except all select {c} from {a})) as d"
    ).format(a=a, b=b, c=columns)
    return _count(dsn, query)


@pytest.fixture(scope="module")
def build(tool_env: dict[str, str], test_settings: Settings, tmp_path_factory):
    """The incremental marts and their parents: ``dbt run`` for a daily build (the data tests once, at
    the end), ``dbt build --full-refresh`` (models and their tests) for the full refresh."""
    work = tmp_path_factory.mktemp("dbt_incremental")
    env = {**tool_env, "DBT_INDIRECT_SELECTION": "cautious"}
    paths = {"log": lambda _line: None, "target_path": work / "target", "log_path": work / "logs"}

    def run(full_refresh: bool = False, **vars: str) -> None:
        all_vars = {"dataset": "generated", **vars}
        if full_refresh:
            dbt_build(test_settings.dbt_project_dir, env, vars=all_vars, select=SELECT, full_refresh=True, **paths)
            return
        args = ["run", "--vars", json.dumps(all_vars), "--select", *SELECT.split()]
        run_dbt(args, project_dir=test_settings.dbt_project_dir, env=env, **paths)

    return run


@pytest.fixture(scope="module")
def daily_then_rerun_then_full(warehouse_dsn: str, build) -> str:
    """Daily loads with incremental builds (kept as ``daily_*``), a re-run (``rerun_*``), a full refresh."""
    _execute(warehouse_dsn, "create schema if not exists quarantine; create schema if not exists ops")
    _execute(warehouse_dsn, GENERATED_RAW_SQL)
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute((MIGRATIONS_DIR / "0009_stream_events.sql").read_text())
        conn.execute((MIGRATIONS_DIR / "0012_exposures_experiments.sql").read_text())  # stream_events.request_id
        conn.execute("create table public.pending_events as select * from raw.events; truncate raw.events")
        conn.execute(PROBED_EVENTS)
    for number, condition in enumerate(LOADS):
        _execute(
            warehouse_dsn,
            f"insert into raw.events select {_RAW_COLUMNS}, clock_timestamp() from public.pending_events"
            f" where {condition}",
        )
        if number == STREAM_AFTER_LOAD:
            _execute(warehouse_dsn, STREAM_ROWS)
        build()
    _keep(warehouse_dsn, "loaded")  # before the late event, whose build recomputes every day after it
    _execute(warehouse_dsn, LATE_EVENT)
    build()  # int_interactions rewrites the late day, and the histories recompute from it
    _keep(warehouse_dsn, "daily")
    # an index an earlier version of int_interactions created; the same day's build drops it
    _execute(warehouse_dsn, f"create index {PLANTED_INDEX} on intermediate.int_interactions (user_id, event_time)")
    build()  # the same day again
    _keep(warehouse_dsn, "rerun")
    AFTER_RERUN["planted_index"] = _count(warehouse_dsn, sql.SQL(PLANTED_INDEX_LEFT))
    build(full_refresh=True)
    return warehouse_dsn


def test_a_build_drops_the_index_an_earlier_int_interactions_had(daily_then_rerun_then_full: str) -> None:
    # (user_id, event_time) is no longer configured: the post-hook drop_index_on removes it from an older table
    assert AFTER_RERUN["planted_index"] == 0


def test_late_events_are_in_the_daily_build(daily_then_rerun_then_full: str) -> None:
    dsn = daily_then_rerun_then_full
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select interaction_id, source_feed, event_date::text from public.daily_int_interactions"
            " order by interaction_id"
        ).fetchall()
        u3_late = conn.execute(
            "select frequency, monetary from public.daily_user_features_history"
            " where user_id = 'u3' and as_of_date = %s",
            (LATE_DAY,),
        ).fetchone()
    assert ("e8", "shop_events", LATE_DAY) in rows  # 41 days late: its day came back by loaded_at
    assert ("s1", "shop_stream", "2024-02-28") in rows  # late stream event inside the lookback
    assert ("e3", "shop_events", "2024-03-01") in rows and ("e3", "shop_stream", "2024-03-01") not in rows
    assert len(rows) == 13
    assert u3_late == (1, 20.0)


def test_a_daily_build_finds_a_repeat_purchase_of_an_earlier_build(daily_then_rerun_then_full: str) -> None:
    """u2 bought p3 on 02-28 and again on 03-01: the last load's build recomputes 03-01 only, where the
    repeat is seen by a lookup of the days before its window (kept as ``loaded_*``, before the late
    event's build recomputes every day from 01-20)."""
    with psycopg.connect(daily_then_rerun_then_full) as conn:
        repeats = conn.execute(
            "select basket_date::text, repeat_lines from public.loaded_report_daily_baskets where repeat_lines > 0"
        ).fetchall()
    assert repeats == [("2024-03-01", 1)]


def test_the_daily_builds_popularity_windows_count_the_users_active_in_them(daily_then_rerun_then_full: str) -> None:
    """Every row the daily builds left before the late event (``loaded_*``: the last ones recomputed 02-28
    or 03-01 only) against the definition: pop_<n>d of a day counts the users with an interaction in
    the n days up to it."""
    with psycopg.connect(daily_then_rerun_then_full) as conn:
        rows, wrong = conn.execute(
            "select count(*),"
            " count(*) filter (where (h.pop_7d, h.pop_30d, h.pop_90d) is distinct from (d.n7, d.n30, d.n90))"
            " from public.loaded_item_features_history as h cross join lateral ("
            "  select count(distinct i.user_id) filter (where i.event_date > h.as_of_date - 7) as n7,"
            "         count(distinct i.user_id) filter (where i.event_date > h.as_of_date - 30) as n30,"
            "         count(distinct i.user_id) as n90"
            "  from public.loaded_int_interactions as i"
            "  where i.item_id = h.item_id and i.event_date <= h.as_of_date and i.event_date > h.as_of_date - 90) as d"
        ).fetchone()
    assert rows >= 10
    assert wrong == 0


@pytest.mark.parametrize(("schema", "name"), INCREMENTAL_MARTS)
def test_daily_builds_equal_a_full_refresh(daily_then_rerun_then_full: str, schema: str, name: str) -> None:
    dsn = daily_then_rerun_then_full
    assert _count(dsn, sql.SQL("select count(*) from {}").format(sql.Identifier(schema, name))) >= 3
    assert _differences(dsn, sql.Identifier("public", f"daily_{name}"), sql.Identifier(schema, name)) == 0


@pytest.mark.parametrize(("schema", "name"), INCREMENTAL_MARTS)
def test_a_rerun_for_the_same_day_leaves_the_same_rows(daily_then_rerun_then_full: str, schema: str, name: str) -> None:
    dsn = daily_then_rerun_then_full
    assert _count(dsn, sql.SQL("select count(*) from {}").format(sql.Identifier("public", f"rerun_{name}"))) >= 3
    daily, rerun = sql.Identifier("public", f"daily_{name}"), sql.Identifier("public", f"rerun_{name}")
    assert _differences(dsn, daily, rerun) == 0


AS_OF = "2024-02-21 00:00:00"  # a past as_of: the pairs' later interactions leave int_user_items


def test_an_as_of_build_rebuilds_the_pairs_and_the_next_build_catches_up(
    daily_then_rerun_then_full: str, build
) -> None:
    """``int_user_items`` keeps no interaction after var ``as_of``: an incremental build with it rebuilds
    every pair (equal to a ``--full-refresh`` with it), and the next build without it rebuilds them again
    (equal to the full refresh without it). Runs last: it rebuilds the module's tables."""
    dsn = daily_then_rerun_then_full
    pairs, ratings = sql.Identifier("intermediate", "int_user_items"), sql.Identifier("marts", "user_item_ratings")
    build(as_of=AS_OF)
    _keep(dsn, "asof")
    build(full_refresh=True, as_of=AS_OF)
    assert _differences(dsn, sql.Identifier("public", "asof_int_user_items"), pairs) == 0
    assert _differences(dsn, sql.Identifier("public", "asof_user_item_ratings"), ratings) == 0
    later = sql.SQL("select count(*) from {} where last_interaction_at > %s::timestamptz").format(pairs)
    with psycopg.connect(dsn) as conn:
        assert conn.execute(later, (AS_OF + "+00",)).fetchone()[0] == 0
    assert _count(dsn, sql.SQL("select count(*) from {}").format(pairs)) < _count(
        dsn, sql.SQL("select count(*) from public.daily_int_user_items")
    )
    build()
    assert _differences(dsn, sql.Identifier("public", "daily_int_user_items"), pairs) == 0
    assert _differences(dsn, sql.Identifier("public", "daily_user_item_ratings"), ratings) == 0


def test_interactions_from_recomputes_the_pairs_of_those_days(daily_then_rerun_then_full: str, build) -> None:
    """var ``interactions_from`` (recompute ``int_interactions`` from a day) recomputes the pairs with an
    interaction from that day too, however old: a pair's row spoilt by hand comes back as built. Runs after
    the ``as_of`` test, which leaves the tables as the daily builds made them."""
    dsn = daily_then_rerun_then_full
    pairs = sql.Identifier("intermediate", "int_user_items")
    _execute(dsn, "update intermediate.int_user_items set interactions = interactions + 100 where user_id = 'u3'")
    assert _differences(dsn, sql.Identifier("public", "daily_int_user_items"), pairs) > 0
    build(interactions_from=LATE_DAY)
    assert _differences(dsn, sql.Identifier("public", "daily_int_user_items"), pairs) == 0
