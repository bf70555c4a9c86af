"""Point-in-time training rows from dbt-built feature history, through Feast's offline store.

The marts hold one snapshot (``event_timestamp = as_of``), so a point-in-time join over
them alone can only return the latest snapshot or nothing. ``marts.user_features_history``
and ``marts.item_features_history`` (incremental, one row per entity and as_of) keep every
snapshot. Here dbt builds the same raw rows twice, as of 2024-02-21 and as of the latest
event (2024-03-01 12:00), in between u2 buys twice; a label before the second snapshot
must see u2's old values.

Feast reads a copy of ``feature_repo/`` whose sources select from the history tables (a
no-op once ``feature_repo/data_sources.py`` itself reads them).
"""

from __future__ import annotations

import re
import shutil
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

FIRST_AS_OF = datetime(2024, 2, 21, tzinfo=UTC)
LATEST_AS_OF = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
_MART_TABLE = re.compile(r"\bfrom marts\.(user|item)_features\b(?!_history)")


def _query(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def two_snapshots(warehouse_dsn: str, tool_env: dict[str, str], test_settings: Settings, tmp_path_factory) -> None:
    """dbt build as of 2024-02-21, then as of the latest event: two snapshots in the history."""
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(GENERATED_RAW_SQL)
    work = tmp_path_factory.mktemp("dbt_pit")
    for as_of in (FIRST_AS_OF.strftime("%Y-%m-%d %H:%M:%S"), ""):
        dbt_build(
            test_settings.dbt_project_dir,
            tool_env,
            vars={"dataset": "generated", "as_of": as_of},
            log=lambda _line: None,
            target_path=work / "target",
            log_path=work / "logs",
        )


@pytest.fixture(scope="module")
def history_repo(test_settings: Settings, tmp_path_factory) -> Path:
    """feature_repo/ with its PostgreSQLSources reading the history tables."""
    repo = tmp_path_factory.mktemp("feature_repo") / "feature_repo"
    shutil.copytree(test_settings.feature_repo_dir, repo, ignore=shutil.ignore_patterns("__pycache__", "data"))
    sources = repo / "data_sources.py"
    text = _MART_TABLE.sub(lambda m: f"from marts.{m.group(1)}_features_history", sources.read_text())
    assert "marts.user_features_history" in text and "marts.item_features_history" in text
    sources.write_text(text)
    return repo


def test_history_keeps_one_row_per_entity_and_snapshot(two_snapshots: None, warehouse_dsn: str) -> None:
    history = _query(
        warehouse_dsn,
        "select user_id, event_timestamp, frequency, monetary from marts.user_features_history "
        "order by user_id, event_timestamp",
    )
    assert {r[1] for r in history} == {FIRST_AS_OF, LATEST_AS_OF}
    u2 = [r[1:] for r in history if r[0] == "u2"]
    assert u2 == [(FIRST_AS_OF, 0, 0.0), (LATEST_AS_OF, 2, 60.0)]
    # the mart itself only holds the latest snapshot
    assert _query(warehouse_dsn, "select distinct event_timestamp from marts.user_features") == [(LATEST_AS_OF,)]
    items = _query(
        warehouse_dsn,
        "select event_timestamp, pop_30d, pop_90d from marts.item_features_history where item_id = 'p1' "
        "order by event_timestamp",
    )
    assert items == [(FIRST_AS_OF, 0, 1), (LATEST_AS_OF, 1, 2)]


def test_rebuilding_a_snapshot_replaces_it_and_full_refresh_keeps_history(
    two_snapshots: None, warehouse_dsn: str, tool_env: dict[str, str], test_settings: Settings, tmp_path: Path
) -> None:
    count = "select event_timestamp, count(*) from marts.user_features_history group by 1 order by 1"
    before = _query(warehouse_dsn, count)
    dbt_build(
        test_settings.dbt_project_dir,
        tool_env,
        vars={"dataset": "generated"},
        select="user_features_history item_features_history",
        full_refresh=True,
        log=lambda _line: None,
        target_path=tmp_path / "target",
        log_path=tmp_path / "logs",
    )
    assert _query(warehouse_dsn, count) == before  # latest snapshot replaced, not doubled; older one kept
    assert [r[0] for r in before] == [FIRST_AS_OF, LATEST_AS_OF]


def test_training_rows_see_the_snapshot_before_the_label(
    two_snapshots: None, history_repo: Path, tool_env: dict[str, str]
) -> None:
    apply(history_repo, tool_env)
    labels = pd.DataFrame(
        {
            "user_id": ["u2", "u2", "u1"],
            "item_id": ["p1", "p3", "p2"],
            "event_timestamp": pd.to_datetime(["2024-02-25 00:00", "2024-03-02 00:00", "2024-02-20 00:00"], utc=True),
            "label": [1.0, 2.0, 3.0],
        }
    )
    out = historical_features(history_repo, tool_env, labels).sort_values("label").reset_index(drop=True)
    assert len(out) == 3
    # 2024-02-25: u2 had not bought yet (the purchases of 02-28 and 03-01 are in the later snapshot)
    assert out.loc[0, "frequency"] == 0 and out.loc[0, "monetary"] == 0.0
    assert out.loc[0, "pop_90d"] == 1 and out.loc[0, "pop_30d"] == 0
    # 2024-03-02: the latest snapshot
    assert out.loc[1, "frequency"] == 2 and out.loc[1, "monetary"] == pytest.approx(60.0)
    assert out.loc[1, "distinct_buyers"] == 1
    # before the first snapshot: nothing from the future
    assert pd.isna(out.loc[2, "frequency"]) and pd.isna(out.loc[2, "pop_90d"])
