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

import numpy as np
import pandas as pd
import psycopg
import pytest
from test_dbt import GENERATED_RAW_SQL  # the same valid raw rows as test_dbt.py

from recomart.config import Settings
from recomart.features import apply, entity_frames_at, historical_features, training_features
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


# --- leakage: a value stamped after the cutoff -----------------------------------------------------
CUTOFF = datetime(2024, 2, 15, tzinfo=UTC)
BEFORE, AFTER = datetime(2024, 2, 2, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)  # rows of 02-01, 02-28
KNOWN, FUTURE = 1, 999  # the planted users' frequency (and the items' pop_7d) before and after the cutoff


@pytest.fixture(scope="module")
def planted(feature_repo: Path, warehouse_dsn: str) -> Path:
    """A user and an item with one history row before :data:`CUTOFF` and one stamped after it.

    Their rows use days the history already holds, so the other tests of this module see the same days.
    """
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        for stamp, value in ((BEFORE, KNOWN), (AFTER, FUTURE)):
            day = (stamp - pd.Timedelta(days=1)).date()
            conn.execute(
                "insert into marts.user_features_history (user_id, event_timestamp, as_of_date, frequency)"
                " values ('leak_u', %s, %s, %s)",
                (stamp, day, value),
            )
            conn.execute(
                "insert into marts.item_features_history (item_id, event_timestamp, as_of_date, pop_7d)"
                " values ('leak_p', %s, %s, %s)",
                (stamp, day, value),
            )
    return feature_repo


def _leak_rows() -> pd.DataFrame:
    """Training rows of the planted pair: at the cutoff, at the cutoff's day end, and after the future row."""
    times = [CUTOFF, CUTOFF + pd.Timedelta(hours=23, minutes=59), AFTER + pd.Timedelta(hours=1)]
    return pd.DataFrame(
        {
            "user_id": ["leak_u", "leak_u", "leak_u"],
            "item_id": ["leak_p", "leak_p", "leak_p"],
            "event_timestamp": pd.to_datetime(times, utc=True),
            "label": [0, 1, 2],
        }
    )


def leaked(rows: pd.DataFrame) -> pd.DataFrame:
    """The training rows holding the planted future value although their time is before its stamp."""
    early = pd.to_datetime(rows["event_timestamp"], utc=True) < AFTER
    future = (rows["frequency"] == FUTURE) | (rows["pop_7d"] == FUTURE)
    return rows[early & future]


def _latest_value_read(warehouse_dsn: str, rows: pd.DataFrame) -> pd.DataFrame:
    """The naive read: each entity's latest history row, whatever the row's time (what a current mart holds)."""
    with psycopg.connect(warehouse_dsn) as conn:
        users = dict(
            conn.execute(
                "select distinct on (user_id) user_id, frequency from marts.user_features_history"
                " order by user_id, event_timestamp desc"
            ).fetchall()
        )
        items = dict(
            conn.execute(
                "select distinct on (item_id) item_id, pop_7d from marts.item_features_history"
                " order by item_id, event_timestamp desc"
            ).fetchall()
        )
    return rows.assign(frequency=rows["user_id"].map(users), pop_7d=rows["item_id"].map(items))


@pytest.mark.parametrize("read", [training_features, historical_features], ids=["sql", "feast"])
def test_a_value_stamped_after_the_cutoff_never_reaches_training_rows(planted: Path, tool_env, read) -> None:
    out = read(planted, tool_env, _leak_rows()).sort_values("label").reset_index(drop=True)
    assert leaked(out).empty, leaked(out)
    # before the future row's stamp: the value known then; after it: the planted future value is readable
    assert out["frequency"].tolist() == [KNOWN, KNOWN, FUTURE]
    assert out["pop_7d"].tolist() == [KNOWN, KNOWN, FUTURE]


def test_a_latest_value_read_would_leak(planted: Path, warehouse_dsn: str) -> None:
    """The check of the test above fails for a read that is not point-in-time."""
    naive = _latest_value_read(warehouse_dsn, _leak_rows())
    assert leaked(naive)["label"].tolist() == [0, 1]


def test_the_sql_read_equals_get_historical_features(planted: Path, warehouse_dsn: str, tool_env) -> None:
    """Every user x item of the history (planted ones too) at cutoffs around and between the history's days."""
    users = [u for (u,) in _query(warehouse_dsn, "select distinct user_id from marts.user_features_history")]
    items = [i for (i,) in _query(warehouse_dsn, "select distinct item_id from marts.item_features_history")]
    cutoffs = pd.to_datetime(
        ["2024-01-01", "2024-01-16", "2024-02-15", "2024-02-29", "2024-02-29 00:00:01", "2024-03-02", "2024-06-01"],
        utc=True,
        format="ISO8601",
    )
    grid = pd.MultiIndex.from_product([users + ["nobody"], items, cutoffs], names=["user_id", "item_id", "t"])
    rows = grid.to_frame(index=False).rename(columns={"t": "event_timestamp"})
    rows["label"] = range(len(rows))
    sql_read = training_features(planted, tool_env, rows).set_index("label").sort_index()
    feast_read = historical_features(planted, tool_env, rows).set_index("label").sort_index()
    assert len(sql_read) == len(feast_read) == len(rows)
    features = [c for c in feast_read.columns if c not in ("user_id", "item_id", "event_timestamp")]
    assert sql_read["frequency"].notna().any() and sql_read["pop_90d"].notna().any()
    # rows with one key read that key's view only, with the same values (a candidate set reads per entity)
    users_only = training_features(planted, tool_env, rows.drop(columns=["item_id"])).set_index("label").sort_index()
    assert "pop_90d" not in users_only
    user_columns = ["frequency", "monetary", "favourite_category", "country", "days_since_first_seen"]
    pd.testing.assert_frame_equal(users_only[user_columns], sql_read[user_columns])
    for column in features:
        ours, theirs = sql_read[column], feast_read[column]
        if isinstance(ours.dtype, pd.DatetimeTZDtype):  # Feast: naive UTC in microseconds
            ours, theirs = ours.astype("datetime64[ns, UTC]"), pd.to_datetime(theirs, utc=True).astype(ours.dtype)
        pd.testing.assert_series_equal(ours, theirs, check_dtype=False, check_names=False, obj=column)


def test_entity_frames_at_one_cutoff_are_the_pair_read(planted: Path, warehouse_dsn: str, tool_env) -> None:
    cutoff = datetime(2024, 3, 5, tzinfo=UTC)
    frames = entity_frames_at(planted, tool_env, cutoff, {"user_id": ["u1", "u2", "u1", "leak_u"], "item_id": ["p1"]})
    users, items = frames["user_id"], frames["item_id"]
    assert users.index.tolist() == ["u1", "u2", "leak_u"] and items.index.tolist() == ["p1"]
    assert users.loc["u1", "frequency"] == 1 and users.loc["leak_u", "frequency"] == FUTURE
    assert "pop_7d" not in users and "frequency" not in items
    pair = historical_features(
        planted,
        tool_env,
        pd.DataFrame({"user_id": ["u1"], "item_id": ["p1"], "event_timestamp": pd.to_datetime([cutoff], utc=True)}),
    )
    assert users.loc["u1", ["frequency", "monetary"]].tolist() == pair.loc[0, ["frequency", "monetary"]].tolist()
    assert items.loc["p1", ["pop_7d", "pop_90d"]].tolist() == pair.loc[0, ["pop_7d", "pop_90d"]].tolist()


def test_ranker_rows_hold_the_value_known_at_their_cutoff(planted: Path, test_settings: Settings, tool_env) -> None:
    """The train round's and the nightly job's reader (``store_features_at``: the model's FeatureService,
    point-in-time) fills the learned ranker's ``user_*`` / ``item_*`` columns: the planted future value
    only from a cutoff after its stamp."""
    from recomart.features.apply_state import apply_if_changed
    from recomart.ranking.base import TrainingSet
    from recomart.ranking.popularity import Popularity
    from recomart.ranking.ranker import LearnedRanker
    from recomart.tasks.common import store_features_at

    apply_if_changed(planted, tool_env)  # what the transform DAG runs: records the apply the reader checks
    features_at = store_features_at(test_settings)
    assert features_at is not None
    seen = pd.to_datetime([BEFORE, BEFORE], utc=True)
    history = pd.DataFrame({"user_id": ["leak_u", "u1"], "item_id": ["leak_p", "p1"], "purchases": 1})
    history = history.assign(last_interaction_at=seen)
    ranker = LearnedRanker({"popularity": Popularity()}, n_candidates=5, exclude="none").fit(TrainingSet.build(history))

    def planted_values(cutoff: datetime) -> tuple[float, float]:
        users = np.array(["leak_u"], dtype=object)
        ranker.user_features, ranker.item_features = features_at(pd.Timestamp(cutoff), users, ranker.item_ids)
        _, rows = ranker.rows_at(history, users)
        at = int(np.flatnonzero(ranker.item_ids[rows.cols] == "leak_p")[0])
        return float(rows.x[at, rows.names.index("user_frequency")]), float(rows.x[at, rows.names.index("item_pop_7d")])

    assert planted_values(CUTOFF) == (KNOWN, KNOWN)
    assert planted_values(AFTER + pd.Timedelta(hours=1)) == (FUTURE, FUTURE)
