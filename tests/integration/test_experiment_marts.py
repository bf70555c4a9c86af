"""dbt attributes outcomes to exposures, and the experiment report's per-user frame reads the result.

Real Postgres and dbt: the raw tables of ``test_dbt_stream`` plus migrations ``0009`` and ``0012``
(``raw.stream_events`` with ``request_id``, ``raw.exposures``, ``ops.experiments``), then
``dbt build`` of the exposure models (their unit tests and data tests included).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, date, datetime

import psycopg
import pytest
from test_dbt_stream import RAW_SQL

from recomart.config import Settings
from recomart.experiments.definitions import Experiment, parse_variants
from recomart.experiments.frame import FRAME_COLUMNS, users_frame
from recomart.experiments.store import create_experiment
from recomart.transform import dbt_build
from recomart.warehouse.migrate import MIGRATIONS_DIR

pytestmark = pytest.mark.integration

# RAW_SQL's file events: e1 u1 views p1 at 10:00, e2 u1 buys 2 x p1 at 10 at 11:00, e3 u2 buys p2 at 20 at 09:00
EXPOSURES = """
insert into raw.exposures
    (request_id, user_id, item_ids, experiment, variant, generation_id, served_at, _stream_id, _load_id)
values
    ('x1', 'u1', array['p1', 'p2'], 'ab', 'hybrid', 1, '2024-03-01 10:30:00+00', '1-0', 'l'),
    ('x2', 'u2', array['p1'], 'ab', 'popularity', 1, '2024-03-01 10:00:00+00', '2-0', 'l'),
    ('x3', 'u1', array['p2'], null, null, 1, '2024-03-01 10:45:00+00', '3-0', 'l'),
    ('x4', 'u1', array['p1'], 'ab', 'hybrid', 1, '2024-03-03 10:00:00+00', '4-0', 'l')
"""
STREAM_ROWS = """
insert into raw.stream_events
    (event_id, event_time, user_id, item_id, event_type, received_at, request_id, _stream_id, _load_id)
values
    ('s1', '2024-03-01 12:00:00+00', 'u2', 'p1', 'view', '2024-03-01 12:00:00+00', 'x2', '5-0', 's'),
    ('s2', '2024-03-01 12:05:00+00', 'u2', 'p1', 'add_to_cart', '2024-03-01 12:05:00+00', null, '6-0', 's')
"""


@pytest.fixture(scope="module")
def built(warehouse_dsn: str, test_settings: Settings, tool_env: dict[str, str], tmp_path_factory) -> str:
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(RAW_SQL)
        for name in ("0009_stream_events.sql", "0012_exposures_experiments.sql"):
            conn.execute((MIGRATIONS_DIR / name).read_text())
        conn.execute(EXPOSURES)
        conn.execute(STREAM_ROWS)
    work = tmp_path_factory.mktemp("dbt")
    result = dbt_build(
        test_settings.dbt_project_dir, tool_env, vars={"dataset": "generated"},
        select="+fct_experiment_users stg_catalog__products", log=lambda _: None,
        target_path=work / "target", log_path=work / "logs",
    )  # fmt: skip
    assert result.ok and result.failures == (), [f.name for f in result.failures]
    return warehouse_dsn


def test_outcomes_are_attributed_once_within_the_window(built: str) -> None:
    with psycopg.connect(built) as conn:
        rows = conn.execute(
            "select request_id, clicks, carts, purchases, converted, revenue::float8, best_purchased_rank"
            " from marts.fct_exposures order by request_id"
        ).fetchall()
    assert rows == [
        ("x1", 0, 0, 1, True, 20.0, 1),  # e2: p1 bought 30 min after x1 showed it (e1's view came before)
        ("x2", 1, 1, 0, False, 0.0, None),  # s1 names x2; s2 is the latest exposure of p1 to u2
        ("x3", 0, 0, 0, False, 0.0, None),  # showed p2 only
        ("x4", 0, 0, 0, False, 0.0, None),  # nothing after it
    ]


def test_experiment_users_carry_the_pre_period(built: str) -> None:
    with psycopg.connect(built) as conn:
        rows = conn.execute(
            "select variant, user_id, exposures, converted, revenue::float8, pre_purchases, pre_revenue::float8,"
            " first_exposure_day from marts.fct_experiment_users where experiment = 'ab' order by user_id"
        ).fetchall()
    assert rows == [
        ("hybrid", "u1", 2, True, 20.0, 0, 0.0, date(2024, 3, 1)),  # x3 ran outside the experiment
        ("popularity", "u2", 1, False, 0.0, 1, 20.0, date(2024, 3, 1)),  # e3 at 09:00, an hour before x2
    ]


def test_the_report_frame_has_the_analysis_columns(built: str) -> None:
    experiment = Experiment(
        "ab", "salt", parse_variants("hybrid:0.5,popularity:0.5"), "hybrid", "conversion",
        datetime(2024, 3, 1, tzinfo=UTC),
    )  # fmt: skip
    with psycopg.connect(built) as conn:
        create_experiment(conn, experiment)
        frame = users_frame(conn, experiment)
        by_revenue = users_frame(conn, Experiment(**{**experiment.__dict__, "primary_metric": "revenue"}))
    assert tuple(frame.columns) == FRAME_COLUMNS
    assert frame["converted"].dtype == "int64" and frame["revenue"].dtype == "float64"
    assert frame.to_dict("records") == [
        {"user_id": "u1", "variant": "hybrid", "converted": 1, "revenue": 20.0, "pre_metric": 0.0,
         "first_exposure_day": date(2024, 3, 1), "exposures": 2},
        {"user_id": "u2", "variant": "popularity", "converted": 0, "revenue": 0.0, "pre_metric": 1.0,
         "first_exposure_day": date(2024, 3, 1), "exposures": 1},
    ]  # fmt: skip
    assert by_revenue["pre_metric"].tolist() == [0.0, 20.0]
    assert not any(math.isnan(value) for value in frame["revenue"])


def _report(test_settings: Settings, tool_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**tool_env, "RECOMART_DB_PREFIX": test_settings.db_prefix}
    return subprocess.run(
        [sys.executable, "-m", "recomart.cli", "experiment", "report", *args], env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_the_report_command_analyses_the_frame(built: str, test_settings: Settings, tool_env: dict[str, str]) -> None:
    """``experiment report`` runs the analysis on the mart's frame (after the frame test created ``ab``)."""
    as_json = _report(test_settings, tool_env, "ab", "--json")
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)
    assert result["control"] == "hybrid" and {v["variant"]: v["users"] for v in result["variants"]} == {
        "hybrid": 1, "popularity": 1,
    }  # fmt: skip
    assert {v["variant"]: v["exposures"] for v in result["variants"]} == {"hybrid": 2, "popularity": 1}
    assert 0 <= result["srm"]["p_value"] <= 1
    text = _report(test_settings, tool_env, "ab")
    assert text.returncode == 0 and "popularity" in text.stdout, text.stderr
    missing = _report(test_settings, tool_env, "nope")
    assert missing.returncode == 1 and "no experiment named 'nope'" in missing.stderr
