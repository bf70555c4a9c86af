"""The scale study records which generation, model version and strategies a size's recommend published."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from recomart.config import Settings
from recomart.warehouse.migrate import migrate

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ lives at the project root, outside the installed package
    sys.path.insert(0, str(ROOT))
S = importlib.import_module("benchmarks.scale")


def test_the_live_generation_is_recorded_with_its_strategies(test_settings: Settings) -> None:
    migrate(test_settings.warehouse_url)
    with psycopg.connect(test_settings.warehouse_url) as conn:
        conn.execute("delete from reco.generations")
        conn.commit()
    assert S.published_generation(test_settings) is None
    with psycopg.connect(test_settings.warehouse_url) as conn:
        conn.execute(
            "insert into reco.generations (model_version, status, is_live, strategy_summary)"
            " values ('3', 'superseded', false, %s), ('4', 'live', true, %s)",
            (Jsonb({"blend": 10}), Jsonb({"ranker": 90, "cold_start": 5})),
        )
        conn.commit()
    published = S.published_generation(test_settings)
    assert published is not None
    assert (published["model_version"], published["strategy_summary"]) == ("4", {"ranker": 90, "cold_start": 5})
