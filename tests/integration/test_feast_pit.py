"""Point-in-time training rows from the dbt as-of feature histories, through Feast's offline store.

``marts.user_features_history`` and ``marts.item_features_history`` hold the features as of the
end of every event-time day on which they changed (``event_timestamp`` = the midnight after the
day). One ``dbt build`` of the raw rows of ``test_dbt.py`` fills them for the whole history, so
``get_historical_features`` through the model's FeatureService at any past cutoff returns the
values as of the last day that ended by the cutoff: never an event of a later day (nor of the
cutoff's own day), and nothing older than the views' ttl.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from test_dbt import GENERATED_RAW_SQL  # the same valid raw rows as test_dbt.py

from recomart.config import Settings
from recomart.features import apply, historical_features
from recomart.transform import dbt_build

pytestmark = pytest.mark.integration

LATEST_AS_OF = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _query(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def built(warehouse_dsn: str, tool_env: dict[str, str], test_settings: Settings, tmp_path_factory) -> None:
    """One dbt build of all the raw rows (no as_of var): the whole history at once."""
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(GENERATED_RAW_SQL)
    work = tmp_path_factory.mktemp("dbt_pit")
    dbt_build(
        test_settings.dbt_project_dir,
        tool_env,
        vars={"dataset": "generated"},
        log=lambda _line: None,
        target_path=work / "target",
        log_path=work / "logs",
    )


@pytest.fixture(scope="module")
def feature_repo(built: None, test_settings: Settings, tool_env: dict[str, str]) -> Path:
    apply(test_settings.feature_repo_dir, tool_env)
    return test_settings.feature_repo_dir


def test_one_build_fills_every_past_day(built: None, warehouse_dsn: str) -> None:
    days = _query(warehouse_dsn, "select distinct as_of_date::text from marts.user_features_history order by 1")
    assert [d for (d,) in days] == ["2024-01-01", "2024-01-15", "2024-02-01", "2024-02-20", "2024-02-28", "2024-03-01"]
    # the current mart still holds the one snapshot as of the latest event
    assert _query(warehouse_dsn, "select distinct event_timestamp from marts.user_features") == [(LATEST_AS_OF,)]


def test_training_rows_see_the_last_day_that_ended_before_the_label(feature_repo: Path, tool_env) -> None:
    labels = pd.DataFrame(
        {
            "user_id": ["u2", "u2", "u2", "u1", "u2"],
            "item_id": ["p1", "p3", "p3", "p1", "p3"],
            "event_timestamp": pd.to_datetime(
                [
                    "2024-02-25 00:00",  # after u2's signup day, before the purchases
                    "2024-02-28 23:59",  # the purchase of 02-28 12:00 is in the row of the day's end only
                    "2024-02-29 00:00",  # that row
                    "2024-03-05 00:00",  # after the last day
                    "2024-06-15 00:00",  # more than the ttl (90 days) after u2's and p3's last row
                ],
                utc=True,
            ),
            "label": [0, 1, 2, 3, 4],
        }
    )
    out = historical_features(feature_repo, tool_env, labels).sort_values("label").reset_index(drop=True)
    assert len(out) == 5
    values = out[["frequency", "monetary", "distinct_items", "pop_7d", "pop_30d", "pop_90d", "distinct_buyers"]]
    # 02-25: u2 viewed p1 on 01-15 only; p1's view left the 7- and 30-day windows (01-22, 02-14)
    assert values.loc[0].tolist() == [0, 0.0, 1, 0, 0, 1, 0]
    # 02-28 23:59: still the row of 02-01 (u2's signup day) and nothing for p3 yet
    assert out.loc[1, ["frequency", "monetary"]].tolist() == [0, 0.0]
    assert pd.isna(out.loc[1, "pop_7d"])
    # 02-29 00:00: the row of 02-28
    assert values.loc[2].tolist() == [1, 30.0, 2, 1, 1, 1, 1]
    # 03-05: u1 as of 03-01 (bought p1 twice in one order), p1 with u1's and u2's users
    assert out.loc[3, ["frequency", "monetary", "distinct_items", "favourite_category"]].tolist() == [
        1,
        20.0,
        2,
        "kitchen",
    ]
    assert out.loc[3, ["pop_7d", "pop_30d", "pop_90d", "distinct_buyers"]].tolist() == [1, 1, 2, 1]
    # the time-dependent features are as of the row: u1's last event (03-01 12:00) to the day's end
    assert out.loc[3, "recency_days"] == pytest.approx(0.5)
    # beyond the ttl: nothing
    assert pd.isna(out.loc[4, "frequency"]) and pd.isna(out.loc[4, "pop_90d"])
