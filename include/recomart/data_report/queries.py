"""The data report's reads of the warehouse: one set-based aggregate per plot, never raw rows.

Each function takes an open psycopg connection returning ``dict_row`` rows and returns the plot's
rows (a few hundred at most: counts per day, per bucket, per reason).  Interactions are
``intermediate.int_interactions`` (every data set's cleaned interactions in one shape), counted per day
and hour, and their purchase baskets per day and size, by the incremental dbt models of :data:`HOURLY`
and :data:`BASKETS` (a daily build adds the new day's rows, so the report sums a few thousand); counts per
user or per product come from its user-item pairs, ``intermediate.int_user_items`` (each pair's
interactions and purchases up to ``as_of``: 6M pairs to group instead of 10M interactions at 10M
events); products are ``marts.dim_products``.  A relation a young warehouse does not have yet reads as
no rows.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

Rows = list[dict[str, Any]]
Conn = psycopg.Connection[dict[str, Any]]  # opened with row_factory=dict_row

INTERACTIONS = "intermediate.int_interactions"
PAIRS = "intermediate.int_user_items"
PRODUCTS = "marts.dim_products"
EXCLUSIONS = "marts.data_quality_exclusions"
#: per day: interactions by hour, and purchase baskets by size with their repeat lines (dbt builds them
#: incrementally, so a daily report does not group every interaction again)
HOURLY = "marts.report_hourly_interactions"
BASKETS = "marts.report_daily_baskets"

#: A quarantine reason without its record's specifics: no ``line N:`` prefix, only the first of
#: several problems, quoted values as ``'…'`` and numbers as ``N``, so reasons group into kinds.
REASON_KIND = """regexp_replace(regexp_replace(regexp_replace(
    split_part(regexp_replace(reason, '^line [0-9]+: ', ''), '; ', 1),
    '''[^'']*''', '''…''', 'g'), '"[^"]*"', '"…"', 'g'), '[0-9]+', 'N', 'g')"""

#: quarantine table -> the day a record counts on (the file feeds' logical date, else when it was set aside)
QUARANTINE_DAYS = {
    "events": "_logical_date",
    "users": "_logical_date",
    "uci_orders": "_logical_date",
    "products": "quarantined_at::date",
    "stream_events": "quarantined_at::date",
}


def existing(conn: Conn, *relations: str) -> bool:
    """True when every ``schema.name`` of ``relations`` exists (a table or a view)."""
    query = "select bool_and(to_regclass(r) is not null) as found from unnest(%s::text[]) r"
    row = conn.execute(query, (list(relations),)).fetchone()
    return bool(row and row["found"])


def _rows(conn: Conn, query: str | sql.Composed) -> Rows:
    return list(conn.execute(query).fetchall())


def volumes_per_day(conn: Conn) -> Rows:
    """``feed, day, records``: the live load of each file feed per logical date (``ops.loaded_files``)
    and the stream's events per UTC day of receipt (``raw.stream_events``)."""
    parts = []
    if existing(conn, "ops.loaded_files"):
        parts.append(
            "select feed, logical_date as day, records_loaded::bigint as records from ops.loaded_files"
            " where is_live and feed <> 'stream_events'"
        )
    if existing(conn, "raw.stream_events"):
        parts.append(
            "select 'stream_events', (received_at at time zone 'UTC')::date, count(*) from raw.stream_events group by 2"
        )
    if not parts:
        return []
    return _rows(conn, " union all ".join(parts) + " order by day, feed")


def long_tail(conn: Conn) -> Rows:
    """``entity ('user'|'item'), interactions, entities``: how many users (items) have exactly that
    many interactions (summed over their pairs)."""
    if not existing(conn, PAIRS):
        return []
    return _rows(
        conn,
        f"with per_user as (select sum(interactions)::bigint as n from {PAIRS} group by user_id),"
        f" per_item as (select sum(interactions)::bigint as n from {PAIRS} group by item_id)"
        " select 'user' as entity, n as interactions, count(*) as entities from per_user group by n"
        " union all select 'item', n, count(*) from per_item group by n order by 1, 2",
    )


def weekday_hour(conn: Conn) -> Rows:
    """``weekday (1 = Monday .. 7), hour (0..23, UTC), interactions``."""
    if not existing(conn, HOURLY):
        return []
    return _rows(
        conn,
        "select extract(isodow from activity_date)::int as weekday, hour_of_day as hour,"
        " sum(interactions)::bigint as interactions"
        f" from {HOURLY} group by 1, 2 order by 1, 2",
    )


def basket_sizes(conn: Conn) -> Rows:
    """``items`` (distinct products in a basket), ``baskets``: the distribution of basket sizes (a
    basket: an order, or in the generated shop a user's purchases of one UTC day; see the dbt model)."""
    if not existing(conn, BASKETS):
        return []
    return _rows(
        conn,
        f"select basket_items as items, sum(baskets)::bigint as baskets from {BASKETS} group by 1 order by 1",
    )


def repeat_purchases(conn: Conn) -> Rows:
    """``week`` (Monday, UTC), ``purchases`` (item-in-basket lines), ``repeats`` (of those, the user
    had bought the item in an earlier basket), ``repeat_share``."""
    if not existing(conn, BASKETS):
        return []
    return _rows(
        conn,
        "with weekly as (select date_trunc('week', basket_date)::date as week,"
        " sum(baskets * basket_items)::bigint as purchases, sum(repeat_lines)::bigint as repeats"
        f" from {BASKETS} group by 1)"
        " select week, purchases, repeats, round(repeats::numeric / purchases, 4)::float8 as repeat_share"
        " from weekly order by week",
    )


def price_distribution(conn: Conn) -> Rows:
    """``price_from, price_to, products``: catalogue prices in quarter-octave bins (2^(k/4)), positive
    prices only."""
    if not existing(conn, PRODUCTS):
        return []
    return _rows(
        conn,
        "with binned as (select floor(4 * log(2, price::numeric))::int as k, count(*) as products"
        f" from {PRODUCTS} where price > 0 group by 1)"
        " select round(power(2, k / 4.0)::numeric, 4)::float8 as price_from,"
        " round(power(2, (k + 1) / 4.0)::numeric, 4)::float8 as price_to, products from binned order by k",
    )


def category_mix(conn: Conn) -> Rows:
    """``category, products, interactions, purchases`` per catalogue category (``(not in the catalogue)``: products
    of ``marts.dim_products`` the catalogue does not describe)."""
    if not existing(conn, PRODUCTS, PAIRS):
        return []
    return _rows(
        conn,
        f"with per_item as (select item_id, sum(interactions) as interactions,"
        f" sum(purchases) as purchases from {PAIRS} group by item_id)"
        " select coalesce(p.category, '(not in the catalogue)') as category, count(*) as products,"
        " coalesce(sum(i.interactions), 0)::bigint as interactions,"
        " coalesce(sum(i.purchases), 0)::bigint as purchases"
        f" from {PRODUCTS} p left join per_item i on i.item_id = p.item_id"
        " group by 1 order by interactions desc, category",
    )


def quarantine_reasons(conn: Conn) -> Rows:
    """``day, feed, reason, records``: quarantined records per day, feed and kind of reason
    (:data:`REASON_KIND`)."""
    parts = [
        sql.SQL(
            "select {day} as day, {feed} as feed, {kind} as reason, count(*) as records from {table} group by 1, 3"
        ).format(
            day=sql.SQL(day),
            feed=sql.Literal(feed),
            kind=sql.SQL(REASON_KIND),
            table=sql.Identifier("quarantine", feed),
        )
        for feed, day in QUARANTINE_DAYS.items()
        if existing(conn, f"quarantine.{feed}")
    ]
    if not parts:
        return []
    return _rows(conn, sql.SQL(" union all ").join(parts) + sql.SQL(" order by day, feed, reason"))


def dbt_exclusions(conn: Conn, dataset: str) -> Rows:
    """``rule_order, rule_name, description, row_count, pct_of_source_rows`` of
    ``marts.data_quality_exclusions`` (built for UCI only; other data sets have no cleaning rules)."""
    if dataset != "uci" or not existing(conn, EXCLUSIONS):
        return []
    return _rows(
        conn,
        "select rule_order, rule_name, description, row_count, pct_of_source_rows"
        f" from {EXCLUSIONS} order by rule_order",
    )


def totals(conn: Conn, tail: Rows) -> dict[str, Any]:
    """The headline figures: interactions, users, items (of the interactions), products, first and
    last interaction time. The counts come from ``tail``, the rows of :func:`long_tail` (a second pass
    over every interaction with two distinct counts took 18 s at 10M interactions); the first and
    last times from the interactions of their first and last day (the ``event_date`` index)."""
    out: dict[str, Any] = {}
    if existing(conn, INTERACTIONS):
        users = [row for row in tail if row["entity"] == "user"]
        out |= {
            "interactions": sum(row["interactions"] * row["entities"] for row in users),
            "users": sum(row["entities"] for row in users),
            "items": sum(row["entities"] for row in tail if row["entity"] == "item"),
        }
        out |= (
            conn.execute(
                f"select (select min(event_time) from {INTERACTIONS}"
                f" where event_date = (select min(event_date) from {INTERACTIONS})) as first_interaction,"
                f" (select max(event_time) from {INTERACTIONS}"
                f" where event_date = (select max(event_date) from {INTERACTIONS})) as last_interaction"
            ).fetchone()
            or {}
        )
    if existing(conn, PRODUCTS):
        out |= conn.execute(f"select count(*) as products from {PRODUCTS}").fetchone() or {}
    return out
