"""Inactive products (gone from the catalogue's last full snapshot) stop at the data boundary (issue 12):
``dbt build`` leaves them out of dim_products, item_features and user_item_ratings, so the nightly
recommendation run never ranks them, not even by popularity or co-occurrence."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from test_dbt import GENERATED_RAW_SQL  # hand-made raw rows of the generated data set

from recomart.config import Settings
from recomart.transform import DbtResult, dbt_build

pytestmark = pytest.mark.integration

GONE = "p3"  # bought twice by u2: popular, and the co-occurrence partner of p1
_MARK_GONE = (
    "update raw.products set active = false, deactivated_at = now(), deactivated_by_load = 'catalog-full'"
    f" where item_id = '{GONE}'"
)


def _scalar_set(dsn: str, query: str) -> set:
    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute(query).fetchall()}


@pytest.fixture(scope="module")
def built(warehouse_dsn: str, tool_env: dict[str, str], test_settings: Settings, tmp_path_factory) -> DbtResult:
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(GENERATED_RAW_SQL)
        conn.execute(_MARK_GONE)
    work: Path = tmp_path_factory.mktemp("dbt_inactive")
    result = dbt_build(
        test_settings.dbt_project_dir,
        tool_env,
        vars={"dataset": "generated"},
        log=lambda _line: None,
        target_path=work / "target",
        log_path=work / "logs",
    )
    assert result.ok and result.failures == ()
    return result


def test_marts_leave_inactive_products_out(built: DbtResult, warehouse_dsn: str) -> None:
    assert GONE in _scalar_set(warehouse_dsn, "select item_id from staging.stg_catalog__products where not is_active")
    for mart in ("dim_products", "item_features", "user_item_ratings"):
        items = _scalar_set(warehouse_dsn, f"select item_id from marts.{mart}")
        assert GONE not in items and "p1" in items, mart
    history = _scalar_set(
        warehouse_dsn, f"select is_active from snapshots.snap_catalog__products where item_id = '{GONE}'"
    )
    assert history == {False}


def test_recommendations_similar_and_popular_items_leave_inactive_products_out(
    built: DbtResult, warehouse_dsn: str, test_settings: Settings
) -> None:
    from recomart.recommend.run import generate_recommendations

    result = generate_recommendations(
        warehouse_dsn,
        tracking_uri=test_settings.mlflow_tracking_uri,
        model_name=test_settings.model_name,
        k=3,
        dataset="generated",
        log=lambda _line: None,
    )
    assert result.rows > 0
    recommended = _scalar_set(warehouse_dsn, "select item_id from reco.user_recommendations")
    popular = _scalar_set(warehouse_dsn, "select item_id from reco.popular_items")
    similar = _scalar_set(
        warehouse_dsn, "select item_id from reco.similar_items union select similar_item_id from reco.similar_items"
    )
    assert recommended and popular and similar
    assert GONE not in recommended | popular | similar
