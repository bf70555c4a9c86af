"""dbt staging unions the stream's events with the file events: an event in both feeds counts once.

``raw.stream_events`` is created by its warehouse migration (``0009_stream_events``); the file feed's
``raw.events`` as ``docs/architecture.md`` defines it.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from recomart.config import Settings
from recomart.transform import dbt_build
from recomart.warehouse.migrate import MIGRATIONS_DIR

pytestmark = pytest.mark.integration

RAW_SQL = """
drop schema if exists raw cascade;
create schema raw;
create schema if not exists quarantine;
create schema if not exists ops;
create table raw.events (
    event_id text, event_time timestamp, user_id text, item_id text, event_type text,
    quantity integer, unit_price numeric,
    _logical_date date, _load_id text, _source_file text, _line_number integer,
    _loaded_at timestamptz default now()
);
create table raw.users (
    user_id text, country text, segment text, signup_date date,
    _logical_date date, _load_id text, _source_file text, _line_number integer,
    _loaded_at timestamptz default now()
);
create table raw.products (
    item_id text primary key, title text, description text, category text, brand text,
    price numeric, updated_at timestamptz, payload jsonb, _load_id text,
    _loaded_at timestamptz default now(), active boolean not null default true, deactivated_at timestamptz,
    deactivated_by_load text
);
insert into raw.products (item_id, title, description, category, brand, price, updated_at, _load_id) values
    ('p1', 'Chef Knife', 'Sharp steel knife', 'kitchen', 'acme', 10, '2024-01-01 00:00+00', 'c1'),
    ('p2', 'Cutting Board', 'Oak board', 'kitchen', 'acme', 20, '2024-01-01 00:00+00', 'c1');
insert into raw.users values
    ('u1', 'GB', 'loyal', '2024-01-01', '2024-03-01', 'l1', 'users.csv', 2),
    ('u2', 'DE', 'new', '2024-02-01', '2024-03-01', 'l1', 'users.csv', 3);
insert into raw.events values
    ('e1', '2024-03-01 10:00:00', 'u1', 'p1', 'view', 1, 10, '2024-03-01', 'l2', '2024-03-01.csv', 2),
    ('e2', '2024-03-01 11:00:00', 'u1', 'p1', 'purchase', 2, 10, '2024-03-01', 'l2', '2024-03-01.csv', 3),
    ('e3', '2024-03-01 09:00:00', 'u2', 'p2', 'purchase', 1, 20, '2024-03-01', 'l2', '2024-03-01.csv', 4);
"""
STREAM_ROWS = """
insert into raw.stream_events
    (event_id, event_time, user_id, item_id, event_type, quantity, unit_price, received_at, _stream_id, _load_id)
values
    ('e2', '2024-03-01 11:00:00+00', 'u1', 'p1', 'purchase', 2, 10, '2024-03-01 11:00:01+00', '1-0', 's1'),
    ('s1', '2024-03-01 12:00:00+00', 'u2', 'p1', 'view', null, null, '2024-03-01 12:00:00+00', '2-0', 's1'),
    ('s2', '2024-03-01 12:05:00+00', 'u2', 'p1', 'add_to_cart', null, null, '2024-03-01 12:05:00+00', '3-0', 's1')
"""


def _build(tool_env: dict[str, str], project: Path, work: Path):
    return dbt_build(
        project,
        tool_env,
        vars={"dataset": "generated"},
        select="+int_interactions stg_catalog__products",
        log=lambda _: None,
        target_path=work / "target",
        log_path=work / "logs",
    )


def _interactions(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select interaction_id, source_feed from intermediate.int_interactions order by 1"
        ).fetchall()


def test_union_counts_an_event_in_both_feeds_once(
    warehouse_dsn: str, test_settings: Settings, tool_env: dict[str, str], tmp_path: Path
) -> None:
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(RAW_SQL)
    before = _build(tool_env, test_settings.dbt_project_dir, tmp_path / "before")  # no stream table yet
    assert before.ok and before.failures == ()
    assert _interactions(warehouse_dsn) == [("e1", "shop_events"), ("e2", "shop_events"), ("e3", "shop_events")]

    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute((MIGRATIONS_DIR / "0009_stream_events.sql").read_text())
        conn.execute((MIGRATIONS_DIR / "0012_exposures_experiments.sql").read_text())  # stream_events.request_id
        conn.execute(STREAM_ROWS)
        conn.commit()
    after = _build(tool_env, test_settings.dbt_project_dir, tmp_path / "after")
    assert after.ok and after.failures == (), [f.name for f in after.failures]
    assert _interactions(warehouse_dsn) == [
        ("e1", "shop_events"),
        ("e2", "shop_events"),  # in the file and the stream: once, as the file's row
        ("e3", "shop_events"),
        ("s1", "shop_stream"),
        ("s2", "shop_stream"),
    ]
