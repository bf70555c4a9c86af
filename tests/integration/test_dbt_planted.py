"""Every kind of dbt data test can fail: one planted bad row each, on a project built from valid rows.

The project is built once on test_dbt.py's hand-made raw rows of the generated data set
(every test passes). Each case then plants one bad row (or, for ``not_empty``, removes
all rows), runs the smallest dbt invocation that covers the test, asserts that it raises
:class:`DbtBuildError` naming exactly that test, and restores the data.

- Raw plants (staging tests) run ``dbt build --select stg_shop__events``: the staging
  view is rebuilt over raw and its tests run, as in a real build.
- Mart plants (tests that valid raw data cannot break, such as ``relationships`` between
  marts) run ``dbt test`` on the planted mart: a ``dbt build`` would rebuild the table and
  wipe the plant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from test_dbt import GENERATED_RAW_SQL  # the same valid raw rows as test_dbt.py

from recomart.config import Settings
from recomart.transform import DbtBuildError, DbtResult, dbt_build, run_dbt

pytestmark = pytest.mark.integration

VARS = {"dataset": "generated"}
_EVENT_COLUMNS = (
    "event_id, event_time, user_id, item_id, event_type, quantity, unit_price, "
    "_logical_date, _load_id, _source_file, _line_number"
)
_RATING_COLUMNS = "user_id, item_id, rating, score, interactions, purchases, last_interaction_at, event_timestamp"
# a valid user_item_ratings row apart from the planted fault; score 0.424242 marks planted rows
_RATING_ROW = (
    "'{user}', '{item}', 2.0, 0.424242, {interactions}, {purchases}, '2024-03-01 12:00+00', '2024-03-01 12:00+00'"
)


def _event(event_id: str, user_id: str | None, event_type: str, quantity: int) -> str:
    user = "null" if user_id is None else f"'{user_id}'"
    return (
        f"insert into raw.events ({_EVENT_COLUMNS}) values ('{event_id}', '2024-03-01 08:00:00', {user}, 'p2', "
        f"'{event_type}', {quantity}, 20, '2024-03-01', 'planted', 'planted.csv', 2)"
    )


def _rating(user: str, item: str, interactions: int = 1, purchases: int = 0) -> str:
    row = _RATING_ROW.format(user=user, item=item, interactions=interactions, purchases=purchases)
    return f"insert into marts.user_item_ratings ({_RATING_COLUMNS}) values ({row})"


RAW_CLEANUP = "delete from raw.events where _load_id = 'planted'"
MART_CLEANUP = "delete from marts.user_item_ratings where score = 0.424242"
STAGING = ("build", "stg_shop__events")
RATINGS = ("test", "user_item_ratings,test_type:data")


@dataclass(frozen=True)
class Plant:
    """One bad row, how to remove it, the dbt invocation that must fail and the test it must name."""

    kind: str
    plant_sql: str
    cleanup_sql: str
    invocation: tuple[str, str]
    failing_test: str


PLANTS = [
    Plant(
        "unique",
        _event("e1", "u1", "view", 1),  # e1 already exists
        RAW_CLEANUP,
        STAGING,
        "unique_stg_shop__events_event_id",
    ),
    Plant(
        "not_null",
        _event("e90", None, "view", 1),
        RAW_CLEANUP,
        STAGING,
        "not_null_stg_shop__events_user_id",
    ),
    Plant(
        "accepted_values",
        _event("e91", "u3", "click", 1),
        RAW_CLEANUP,
        STAGING,
        "accepted_values_stg_shop__events_event_type__view__add_to_cart__purchase",
    ),
    Plant(
        "accepted_range",
        _event("e92", "u3", "view", 0),
        RAW_CLEANUP,
        STAGING,
        "accepted_range_stg_shop__events_quantity__1",
    ),
    Plant(
        "not_empty",
        "create table raw.events_aside as select * from raw.events; delete from raw.events",
        "insert into raw.events select * from raw.events_aside; drop table raw.events_aside",
        STAGING,
        "not_empty_stg_shop__events_",
    ),
    Plant(
        "relationships",
        _rating("ghost", "p1"),  # no such user in user_features
        MART_CLEANUP,
        RATINGS,
        "relationships_user_item_ratings_user_id__user_id__ref_user_features_",
    ),
    Plant(
        "expression_is_true",
        _rating("u3", "p4", interactions=1, purchases=2),  # more purchases than interactions
        MART_CLEANUP,
        RATINGS,
        "expression_is_true_user_item_ratings_purchases_interactions",
    ),
    Plant(
        "unique_combination_of_columns",
        _rating("u1", "p1"),  # (u1, p1) already rated
        MART_CLEANUP,
        RATINGS,
        "unique_combination_of_columns_user_item_ratings_user_id__item_id",
    ),
]


def _execute(dsn: str, statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statements)


def _count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One target/log folder for the module, so dbt's partial parsing is reused between runs."""
    return tmp_path_factory.mktemp("dbt_planted")


@pytest.fixture(scope="module")
def valid_build(warehouse_dsn: str, tool_env: dict[str, str], test_settings: Settings, work_dir: Path) -> DbtResult:
    """The whole project built on valid raw rows: every model and test passes."""
    _execute(warehouse_dsn, GENERATED_RAW_SQL)
    result = dbt_build(
        test_settings.dbt_project_dir,
        tool_env,
        vars=VARS,
        log=lambda _line: None,
        target_path=work_dir / "target",
        log_path=work_dir / "logs",
    )
    assert result.ok and result.failures == ()
    return result


def _run(command: str, select: str, test_settings: Settings, tool_env: dict[str, str], work_dir: Path) -> DbtResult:
    if command == "build":
        return dbt_build(
            test_settings.dbt_project_dir,
            tool_env,
            vars=VARS,
            select=select,
            log=lambda _line: None,
            target_path=work_dir / "target",
            log_path=work_dir / "logs",
        )
    return run_dbt(
        ["test", "--vars", json.dumps(VARS), "--select", *select.split()],
        project_dir=test_settings.dbt_project_dir,
        env=tool_env,
        log=lambda _line: None,
        target_path=work_dir / "target",
        log_path=work_dir / "logs",
    )


def test_every_planted_kind_is_a_test_of_the_project(valid_build: DbtResult) -> None:
    """The planted tests exist and passed on valid data (so each failure below is the plant's doing)."""
    passed = {r.name.split(".")[0] for r in valid_build.results if r.status == "pass"}
    missing = {plant.failing_test for plant in PLANTS} - passed
    assert not missing, f"not in the valid build (renamed?): {sorted(missing)}"


@pytest.mark.parametrize("plant", PLANTS, ids=[p.kind for p in PLANTS])
def test_planted_bad_row_fails_its_test(
    plant: Plant,
    valid_build: DbtResult,
    warehouse_dsn: str,
    tool_env: dict[str, str],
    test_settings: Settings,
    work_dir: Path,
) -> None:
    command, select = plant.invocation
    _execute(warehouse_dsn, plant.plant_sql)
    try:
        with pytest.raises(DbtBuildError) as caught:
            _run(command, select, test_settings, tool_env, work_dir)
    finally:
        _execute(warehouse_dsn, plant.cleanup_sql)
    assert plant.failing_test in str(caught.value)
    failing = {r.name.split(".")[0] for r in caught.value.failures}
    assert failing == {plant.failing_test}
    assert all(r.status == "fail" and r.failures for r in caught.value.failures)


def test_restored_data_passes_again(
    valid_build: DbtResult, warehouse_dsn: str, tool_env: dict[str, str], test_settings: Settings, work_dir: Path
) -> None:
    """After the cleanups, the same tests pass again: the failures above came from the plants only."""
    assert _count(warehouse_dsn, "select count(*) from raw.events") == 7
    assert _count(warehouse_dsn, "select count(*) from marts.user_item_ratings") == 4
    result = _run("test", "stg_shop__events user_item_ratings,test_type:data", test_settings, tool_env, work_dir)
    assert result.ok and result.failures == ()
    assert result.count("pass") >= 15


def test_docs_generate_writes_catalog_and_site(
    valid_build: DbtResult, tool_env: dict[str, str], test_settings: Settings, tmp_path: Path
) -> None:
    """`dbt docs generate` works: catalog.json (with the marts' columns), manifest.json and index.html."""
    target = tmp_path / "target"
    run_dbt(
        ["docs", "generate", "--vars", json.dumps(VARS)],
        project_dir=test_settings.dbt_project_dir,
        env=tool_env,
        log=lambda _line: None,
        target_path=target,
        log_path=tmp_path / "logs",
    )
    assert (target / "index.html").stat().st_size > 1000
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    columns = set(catalog["nodes"]["model.recomart.user_features"]["columns"])
    assert {"user_id", "event_timestamp", "recency_days", "frequency", "monetary"} <= columns
    assert "model.recomart.user_item_ratings" in catalog["nodes"]
    assert "formula" in manifest["nodes"]["model.recomart.user_item_ratings"]["description"].lower()
    # the lineage graph of the docs site comes from the manifest's parent map
    parents = manifest["parent_map"]["model.recomart.user_item_ratings"]
    assert {"model.recomart.int_as_of", "model.recomart.int_user_items"} <= set(parents)
