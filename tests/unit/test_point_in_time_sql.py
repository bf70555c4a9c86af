"""The SQL of ``recomart.features.training_features``: one bounded, ordered LIMIT 1 lookup per view (no database)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from recomart.features.point_in_time import ViewRead, point_in_time_sql, rows_views

USERS = ViewRead(
    name="user_features",
    source_sql="(select user_id, event_timestamp, frequency from marts.user_features_history)",
    join_key="user_id",
    timestamp_field="event_timestamp",
    created_timestamp_column=None,
    ttl_seconds=7_776_000,
    features=("frequency",),
)
ITEMS = ViewRead(
    name="item_features",
    source_sql="marts.item_features_history",
    join_key="item_id",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    ttl_seconds=0,
    features=("pop_7d", "price"),
)


def _text(reads: list[ViewRead]) -> str:
    return " ".join(point_in_time_sql(reads).as_string(None).split())


def test_each_view_takes_the_latest_row_at_or_before_the_label_time_within_the_ttl() -> None:
    text = _text([USERS])
    assert (
        'left join lateral (select "src"."frequency" from (select user_id, event_timestamp, frequency from '
        'marts.user_features_history) as src where "src"."user_id" = "e"."user_id" and '
        '"src"."event_timestamp" <= e.event_timestamp and "src"."event_timestamp" >= e.event_timestamp - '
        '7776000 * interval \'1 second\' order by "src"."event_timestamp" desc limit 1) as "fv0" on true'
    ) in text
    assert text.startswith('select "e"."_pit_row", "fv0"."frequency" from "recomart_pit_entities" as e')
    assert text.endswith('order by e."_pit_row"')


def test_no_ttl_means_no_lower_bound_and_created_time_breaks_ties() -> None:
    text = _text([USERS, ITEMS])
    item_join = text[text.index('as "fv0" on true') :]
    assert ">=" not in item_join
    assert 'order by "src"."event_timestamp" desc, "src"."created" desc limit 1) as "fv1"' in item_join
    assert re.search(r'"fv1"\."pop_7d", "fv1"\."price" from', text)


def test_entity_rows_need_a_key_and_an_aware_cutoff_and_read_the_views_of_their_keys() -> None:
    rows = pd.DataFrame(
        {"user_id": ["u1"], "item_id": ["p1"], "event_timestamp": pd.to_datetime(["2024-01-01"], utc=True)}
    )
    assert rows_views(rows, [USERS, ITEMS]) == [USERS, ITEMS]
    assert rows_views(rows.drop(columns=["item_id"]), [USERS, ITEMS]) == [USERS]
    with pytest.raises(ValueError, match="timezone-aware"):
        rows_views(rows.assign(event_timestamp=pd.to_datetime(["2024-01-01"])), [USERS])
    with pytest.raises(ValueError, match="none of the service's join keys"):
        rows_views(rows[["event_timestamp"]], [USERS, ITEMS])
    with pytest.raises(ValueError, match="lack event_timestamp"):
        rows_views(rows.drop(columns=["event_timestamp"]), [USERS])
    with pytest.raises(ValueError, match="empty"):
        rows_views(rows.assign(user_id=[None]), [USERS])
