"""``marts_digest``: the same rows give the same digest whatever their order; any change changes it."""

from __future__ import annotations

import psycopg
import pytest

from recomart.marts import marts_digest

pytestmark = pytest.mark.integration

RELATIONS = ("marts.digest_a", "marts.digest_b")


def _build(dsn: str, order: str, price: float = 1.5) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("create schema if not exists marts")
        conn.execute("drop table if exists marts.digest_a, marts.digest_b")
        conn.execute(
            "create table marts.digest_a as select g::text as user_id, now()::date - g as day, g * %s as price"
            f" from generate_series(1, 500) g order by {order}",
            (price,),
        )
        conn.execute("create table marts.digest_b as select 'x'::text as item_id")


def test_digest_ignores_row_order_and_sees_every_change(warehouse_dsn: str) -> None:
    assert marts_digest(warehouse_dsn, RELATIONS) is None  # no mart yet
    _build(warehouse_dsn, "g")
    first = marts_digest(warehouse_dsn, RELATIONS)
    _build(warehouse_dsn, "random()")  # the same rows, rebuilt in another physical order
    assert marts_digest(warehouse_dsn, RELATIONS) == first
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute("update marts.digest_a set price = price + 0.001 where user_id = '250'")
    changed = marts_digest(warehouse_dsn, RELATIONS)
    assert changed != first
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute("delete from marts.digest_b")
    assert marts_digest(warehouse_dsn, RELATIONS) not in (first, changed)
