"""dbt project end to end on real Postgres: hand-made raw rows in, marts and failing tests out."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from recomart.config import Settings
from recomart.transform import DbtBuildError, DbtResult, dbt_build
from recomart.transform.dbt import run_dbt

pytestmark = pytest.mark.integration

AS_OF = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

# Raw tables as docs/architecture.md defines them (the ingest DAGs create the real ones).
GENERATED_RAW_SQL = """
drop schema if exists raw cascade;
create schema raw;
create table raw.events (
    event_id text, event_time timestamp, user_id text, item_id text, event_type text,
    quantity integer, unit_price numeric,
    _logical_date date, _load_id text, _source_file text, _line_number integer,
    _loaded_at timestamptz default now()
);
create table raw.users (
    user_id text, country text, segment text, signup_date date,
    _logical_date date, _load_id text, _source_file text, _line_number integer,
    _loaded_at timestamptz default now()
);
create table raw.products (
    item_id text primary key, title text, description text, category text, brand text,
    price numeric, updated_at timestamptz, payload jsonb, _load_id text,
    _loaded_at timestamptz default now(), active boolean not null default true, deactivated_at timestamptz,
    deactivated_by_load text
);
insert into raw.products (item_id, title, description, category, brand, price, updated_at, _load_id) values
    ('p1', 'Chef Knife', 'Sharp steel knife', 'kitchen', 'acme', 10, '2024-01-01 00:00+00', 'c1'),
    ('p2', 'Cutting Board', 'Oak board', 'kitchen', 'acme', 20, '2024-01-01 00:00+00', 'c1'),
    ('p3', 'Garden Hose', '25 m hose', 'garden', 'verde', 30, '2024-01-01 00:00+00', 'c1'),
    ('p4', 'Lawn Mower', 'Quiet mower', 'garden', 'verde', 40, '2024-01-01 00:00+00', 'c1');
insert into raw.users values
    ('u1', 'GB', 'loyal', '2024-01-01', '2024-03-01', 'l1', 'users.csv', 2),
    ('u2', 'DE', 'new', '2024-02-01', '2024-03-01', 'l1', 'users.csv', 3),
    ('u3', 'FR', 'new', '2024-02-20', '2024-03-01', 'l1', 'users.csv', 4);
-- event_time is the file's naive UTC time
insert into raw.events values
    ('e1', '2024-03-01 10:00:00', 'u1', 'p1', 'view', 1, 10, '2024-03-01', 'l2', '2024-03-01.csv', 2),
    ('e2', '2024-03-01 11:00:00', 'u1', 'p1', 'add_to_cart', 1, 10, '2024-03-01', 'l2', '2024-03-01.csv', 3),
    ('e3', '2024-03-01 12:00:00', 'u1', 'p1', 'purchase', 2, 10, '2024-03-01', 'l2', '2024-03-01.csv', 4),
    ('e4', '2024-02-20 12:00:00', 'u1', 'p2', 'view', 1, 20, '2024-02-20', 'l3', '2024-02-20.csv', 2),
    ('e5', '2024-01-15 12:00:00', 'u2', 'p1', 'view', 1, 10, '2024-01-15', 'l4', '2024-01-15.csv', 2),
    ('e6', '2024-02-28 12:00:00', 'u2', 'p3', 'purchase', 1, 30, '2024-02-28', 'l5', '2024-02-28.csv', 2),
    ('e7', '2024-03-01 09:00:00', 'u2', 'p3', 'purchase', 1, 30, '2024-03-01', 'l2', '2024-03-01.csv', 5);
"""

UCI_RAW_SQL = """
create schema raw;
create table raw.uci_orders (
    invoice_no text, stock_code text, description text, quantity integer, invoice_date timestamp,
    unit_price numeric, customer_id text, country text,
    _logical_date date, _load_id text, _source_file text, _line_number integer,
    _loaded_at timestamptz default now()
);
create table raw.products (
    item_id text primary key, title text, description text, category text, brand text,
    price numeric, updated_at timestamptz, payload jsonb, _load_id text,
    _loaded_at timestamptz default now(), active boolean not null default true, deactivated_at timestamptz,
    deactivated_by_load text
);
insert into raw.products (item_id, title, description, price, updated_at, _load_id) values
    ('85123A', 'WHITE HANGING HEART T-LIGHT HOLDER', 'WHITE HANGING HEART T-LIGHT HOLDER', 2.55, '2011-01-01', 'c1'),
    ('71053', 'WHITE METAL LANTERN', 'WHITE METAL LANTERN', 3.39, '2011-01-01', 'c1');
insert into raw.uci_orders values
    ('536365', '85123A', 'WHITE HANGING HEART T-LIGHT HOLDER', 6, '2010-12-01 08:26:00', 2.55, '17850.0',
     'United Kingdom', '2010-12-01', 'l1', '2010-12-01.csv', 2),
    ('536365', '71053', 'WHITE METAL LANTERN', 6, '2010-12-01 08:26:00', 3.39, '17850.0',
     'United Kingdom', '2010-12-01', 'l1', '2010-12-01.csv', 3),
    ('536365', '71053', 'WHITE METAL LANTERN', 6, '2010-12-01 08:26:00', 3.39, '17850.0',
     'United Kingdom', '2010-12-01', 'l1', '2010-12-01.csv', 4),
    ('536366', '22633', 'HAND WARMER UNION JACK', 6, '2010-12-01 08:28:00', 1.85, '',
     'United Kingdom', '2010-12-01', 'l1', '2010-12-01.csv', 5),
    ('C536379', 'D', 'Discount', -1, '2010-12-01 09:41:00', 27.50, '14527.0',
     'United Kingdom', '2010-12-01', 'l1', '2010-12-01.csv', 6),
    ('536370', 'POST', 'POSTAGE', 3, '2010-12-01 08:45:00', 18.00, '12583.0',
     'France', '2010-12-01', 'l1', '2010-12-01.csv', 7),
    ('536371', 'gift_0001_20', 'Dotcomgiftshop Gift Voucher £20.00', 1, '2010-12-01 09:00:00', 17.02,
     '12583.0', 'France', '2010-12-01', 'l1', '2010-12-01.csv', 8),
    ('536372', '22139', 'RETROSPOT TEA SET CERAMIC 11 PC', -2, '2010-12-01 09:01:00', 4.95, '12583.0',
     'France', '2010-12-01', 'l1', '2010-12-01.csv', 9),
    ('536373', '22140', 'PARTY BAG', 4, '2010-12-01 09:02:00', 0, '12583.0',
     'France', '2010-12-01', 'l1', '2010-12-01.csv', 10),
    ('541431', '23166', 'MEDIUM CERAMIC TOP STORAGE JAR', 74215, '2011-01-18 10:01:00', 1.04, '12346.0',
     'United Kingdom', '2011-01-18', 'l2', '2011-01-18.csv', 2),
    ('536375', '85123A', 'WHITE HANGING HEART T-LIGHT HOLDER', 6, '2010-12-01 09:32:00', 2.55, '17850.0',
     'United Kingdom', '2010-12-01', 'l1', '2010-12-01.csv', 11),
    ('555000', '21258', 'VICTORIAN SEWING BOX LARGE', 32, '2011-06-01 09:09:00', 10.95, '15100.0',
     'United Kingdom', '2011-06-01', 'l3', '2011-06-01.csv', 2);
"""


def _strength_rating(events: list[tuple[str, int, float]], half_life: float = 30.0) -> float:
    """The documented formula with the project defaults: (type, quantity, age in days) -> rating."""
    weights = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
    score = 0.0
    for event_type, quantity, age_days in events:
        strength = weights[event_type] * ((1 + math.log(quantity)) if event_type == "purchase" else 1.0)
        score += strength * 0.5 ** (age_days / half_life)
    return 1 + 4 * (1 - math.exp(-score / 5.0))


def _query(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def _execute(dsn: str, statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statements)


@pytest.fixture(scope="module")
def dbt_project_dir(test_settings: Settings) -> Path:
    return test_settings.dbt_project_dir


@pytest.fixture(scope="module")
def generated_build(warehouse_dsn: str, tool_env: dict[str, str], dbt_project_dir: Path, tmp_path_factory) -> DbtResult:
    """Raw tables of the generated data set, then one full `dbt build`."""
    _execute(warehouse_dsn, GENERATED_RAW_SQL)
    work = tmp_path_factory.mktemp("dbt_generated")
    lines: list[str] = []
    result = dbt_build(
        dbt_project_dir,
        tool_env,
        vars={"dataset": "generated"},
        log=lines.append,
        target_path=work / "target",
        log_path=work / "logs",
    )
    assert any("Completed successfully" in line for line in lines), "\n".join(lines[-40:])
    return result


def test_build_passes_every_model_and_test(generated_build: DbtResult) -> None:
    assert generated_build.ok
    assert generated_build.failures == ()
    assert generated_build.count("success") >= 10  # models + snapshot
    assert generated_build.count("pass") >= 50  # data + unit tests
    names = {r.name for r in generated_build.results}
    assert {"user_item_ratings", "user_features", "item_features", "dim_products"} <= names
    summary = generated_build.as_dict()
    assert summary["ok"] and summary["failures"] == [] and summary["statuses"]["pass"] >= 50
    uci_models = ("stg_uci__", "int_uci_", "data_quality_exclusions")
    assert not any(name.startswith(uci_models) for name in names)


def test_the_nightly_build_leaves_the_unit_tests_to_ci(
    generated_build: DbtResult, tool_env: dict[str, str], dbt_project_dir: Path, tmp_path
) -> None:
    """This module's build runs the unit tests; the transform task's (build_warehouse_models) excludes
    them, as here: their inputs are fixed rows, so a nightly run would only repeat them."""
    assert any(result.unique_id.startswith("unit_test.") for result in generated_build.results)
    nightly = dbt_build(
        dbt_project_dir,
        tool_env,
        vars={"dataset": "generated"},
        select="report_hourly_interactions",  # incremental, read by no model: the run changes nothing
        exclude_resource_types=("unit_test",),
        log=lambda _line: None,
        target_path=tmp_path / "target",
        log_path=tmp_path / "logs",
    )
    kinds = {result.unique_id.split(".")[0] for result in nightly.results}
    assert "model" in kinds and "unit_test" not in kinds


def test_schemas_are_verbatim(generated_build: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        "select table_schema, table_name, table_type from information_schema.tables "
        "where table_schema in ('staging', 'intermediate', 'marts', 'snapshots')",
    )
    found = {(schema, name): kind for schema, name, kind in rows}
    assert found[("staging", "stg_shop__events")] == "VIEW"
    assert found[("intermediate", "int_interactions")] == "BASE TABLE"
    for mart in ("user_item_ratings", "user_features", "item_features", "dim_products"):
        assert found[("marts", mart)] == "BASE TABLE"
    assert ("snapshots", "snap_catalog__products") in found
    assert ("marts", "data_quality_exclusions") not in found  # UCI only


def test_staging_times_do_not_depend_on_session_time_zone(generated_build: DbtResult, warehouse_dsn: str) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute("set time zone 'Asia/Tokyo'")
        (event_time,) = conn.execute("select event_time from staging.stg_shop__events where event_id = 'e3'").fetchone()
    assert event_time == AS_OF


def test_user_item_ratings(generated_build: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        "select user_id, item_id, rating, interactions, purchases, last_interaction_at, event_timestamp "
        "from marts.user_item_ratings order by user_id, item_id",
    )
    by_pair = {(r[0], r[1]): r[2:] for r in rows}
    assert set(by_pair) == {("u1", "p1"), ("u1", "p2"), ("u2", "p1"), ("u2", "p3")}
    assert all(isinstance(r[2], float) for r in rows)
    assert {r[6] for r in rows} == {AS_OF}  # event_timestamp = max event time, on every row

    rating, interactions, purchases, last_at, _ = by_pair[("u1", "p1")]
    assert (interactions, purchases, last_at) == (3, 1, AS_OF)
    expected = _strength_rating([("view", 1, 2 / 24), ("add_to_cart", 1, 1 / 24), ("purchase", 2, 0.0)])
    assert rating == pytest.approx(expected, abs=1e-4)

    rating_u2_p3, interactions, purchases, _, _ = by_pair[("u2", "p3")]
    assert (interactions, purchases) == (2, 2)
    assert rating_u2_p3 == pytest.approx(_strength_rating([("purchase", 1, 2.0), ("purchase", 1, 3 / 24)]), abs=1e-4)
    # an old view rates far below recent repeat purchases
    assert by_pair[("u2", "p1")][0] < by_pair[("u1", "p2")][0] < rating_u2_p3 < rating


def test_user_features(generated_build: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        "select user_id, recency_days, frequency, monetary, distinct_items, favourite_category, country, "
        "segment, days_since_first_seen, event_timestamp from marts.user_features order by user_id",
    )
    users = {r[0]: r[1:] for r in rows}
    assert set(users) == {"u1", "u2", "u3"}
    assert users["u1"][:7] == (0.0, 1, 20.0, 2, "kitchen", "GB", "loyal")
    assert users["u1"][7] == pytest.approx(60.5)  # signup 2024-01-01 00:00 -> as_of
    assert users["u2"][:5] == (pytest.approx(3 / 24, abs=1e-4), 2, 60.0, 2, "garden")
    # cold-start user: profile only
    assert users["u3"][:5] == (None, 0, 0.0, 0, None)
    assert users["u3"][5:7] == ("FR", "new")
    assert {r[9] for r in rows} == {AS_OF}


def test_item_features_and_dim_products(generated_build: DbtResult, warehouse_dsn: str) -> None:
    items = {
        r[0]: r[1:]
        for r in _query(
            warehouse_dsn,
            "select item_id, pop_7d, pop_30d, pop_90d, distinct_buyers, revenue, price, price_band, "
            "category, content_text from marts.item_features",
        )
    }
    assert set(items) == {"p1", "p2", "p3", "p4"}
    assert items["p1"][:6] == (1, 1, 2, 1, 20.0, 10.0)  # u2's view is 46 days old
    assert items["p2"][:3] == (0, 1, 1)  # u1's view is 10 days old
    assert items["p3"][:5] == (1, 1, 1, 1, 60.0)
    assert items["p4"][:6] == (0, 0, 0, 0, 0.0, 40.0)  # never touched: still a row, for cold start
    assert [items[p][6] for p in ("p1", "p2", "p3", "p4")] == ["budget", "mid", "upper", "premium"]
    assert items["p3"][8] == "garden hose 25 m hose garden verde price_upper"

    dim = _query(warehouse_dsn, "select item_id, title, category, brand, price, in_catalog from marts.dim_products")
    assert len(dim) == 4
    assert ("p1", "Chef Knife", "kitchen", "acme", 10, True) in dim


def test_planted_bad_rows_fail_the_build(
    generated_build: DbtResult, warehouse_dsn: str, tool_env: dict[str, str], dbt_project_dir: Path, tmp_path
) -> None:
    _execute(
        warehouse_dsn,
        "insert into raw.events values "
        "('e8', '2024-03-01 08:00:00', 'u3', 'p2', 'click', 1, 20, '2024-03-01', 'planted', 'x.csv', 2), "
        "('e1', '2024-03-01 10:00:00', 'u1', 'p1', 'view', 1, 10, '2024-03-01', 'planted', 'x.csv', 3)",
    )
    try:
        with pytest.raises(DbtBuildError) as caught:
            dbt_build(
                dbt_project_dir,
                tool_env,
                vars={"dataset": "generated"},
                select="stg_shop__events",
                log=lambda _line: None,
                target_path=tmp_path / "target",
                log_path=tmp_path / "logs",
            )
    finally:
        _execute(warehouse_dsn, "delete from raw.events where _load_id = 'planted'")
    message = str(caught.value)
    assert "accepted_values_stg_shop__events_event_type" in message
    assert "unique_stg_shop__events_event_id" in message
    failing = {r.name.split(".")[0] for r in caught.value.failures}
    assert failing == {
        "accepted_values_stg_shop__events_event_type__view__add_to_cart__purchase",
        "unique_stg_shop__events_event_id",
    }
    assert all(r.status == "fail" for r in caught.value.failures)
    assert _query(warehouse_dsn, "select count(*) from raw.events")[0][0] == 7


def test_a_daily_build_tests_only_the_rows_loaded_after_the_last_build(
    generated_build: DbtResult, warehouse_dsn: str, tool_env: dict[str, str], dbt_project_dir: Path, tmp_path
) -> None:
    """The whole-project build recorded int_interactions' latest loaded_at; a later `dbt build` tests the
    event-grain models' rows loaded after it only (macros/tests/new_rows.sql), `dbt test` every row."""
    recorded, built = _query(
        warehouse_dsn,
        "select (select loaded_until from ops.dbt_last_build where project = 'recomart'),"
        " (select max(loaded_at) from intermediate.int_interactions)",
    )[0]
    assert recorded is not None and recorded == built
    _execute(  # a bad row loaded before that build (as if it had been tested then)
        warehouse_dsn,
        "insert into raw.events values ('e9', '2024-03-01 08:00:00', 'u3', 'p2', 'click', 1, 20, '2024-03-01',"
        f" 'planted_old', 'x.csv', 4, '{recorded.isoformat()}'::timestamptz - interval '1 day')",
    )

    def run(command: str) -> None:
        run_dbt(
            [command, "--vars", '{"dataset": "generated"}', "--select", "stg_shop__events"],
            project_dir=dbt_project_dir,
            env=tool_env,
            log=lambda _line: None,
            target_path=tmp_path / "target",
            log_path=tmp_path / "logs",
        )

    try:
        run("build")  # only rows loaded after `recorded`: none
        with pytest.raises(DbtBuildError) as caught:
            run("test")
    finally:
        _execute(warehouse_dsn, "delete from raw.events where _load_id = 'planted_old'")
    assert {r.name.split(".")[0] for r in caught.value.failures} == {
        "accepted_values_stg_shop__events_event_type__view__add_to_cart__purchase"
    }


def test_ratings_refuse_a_negative_weight(dbt_project_dir: Path, tool_env: dict[str, str], tmp_path: Path) -> None:
    """Daily tests read only the pairs loaded since the last build: the ratings stay in range for the
    others by construction, which a negative weight would break, so the model refuses to compile."""
    with pytest.raises(DbtBuildError, match="rating_weight_purchase must be >= 0, not -1"):
        run_dbt(
            [
                "compile",
                "--vars",
                '{"dataset": "generated", "rating_weight_purchase": -1}',
                "--select",
                "user_item_ratings",
            ],
            project_dir=dbt_project_dir,
            env=tool_env,
            log=lambda _line: None,
            target_path=tmp_path / "target",
            log_path=tmp_path / "logs",
        )


#: (model, the watermark of ops.dbt_last_build its daily tests read, its column compared with it, the
#: non-negative column a bad value is planted in, the row planted, the test that fails on it)
NEWER_ROW_CASES = {
    "history": (
        "user_features_history",
        "built_until",
        "built_at",
        "frequency",
        "user_id = 'u1' and as_of_date ="
        " (select min(as_of_date) from marts.user_features_history where user_id = 'u1')",
        "accepted_range_user_features_history_frequency__0",
    ),
    "ratings": (
        "user_item_ratings",
        "loaded_until",
        "loaded_at",
        "purchases",
        "(user_id, item_id) = (select user_id, item_id from marts.user_item_ratings order by 1, 2 limit 1)",
        "accepted_range_user_item_ratings_purchases__0",
    ),
}


@pytest.mark.parametrize("case", sorted(NEWER_ROW_CASES))
def test_a_daily_build_tests_only_the_rows_newer_than_the_last_build(
    case: str, generated_build: DbtResult, warehouse_dsn: str, tool_env: dict[str, str], dbt_project_dir: Path, tmp_path
) -> None:
    """The whole-project build recorded its start (built_until) and int_interactions' latest loaded_at
    (loaded_until); a later `dbt build` tests the feature histories' rows written (built_at) after the
    first and the ratings' pairs loaded (loaded_at) after the second only, `dbt test` every row, and a
    row that becomes newer than the watermark is tested."""
    model, watermark, column, value, row, failing = NEWER_ROW_CASES[case]
    (recorded,) = _query(warehouse_dsn, f"select {watermark} from ops.dbt_last_build where project = 'recomart'")[0]
    assert recorded is not None
    # x -> -x - 1 makes a non-negative value negative and, applied again, restores it
    flip = f"update marts.{model} set {value} = -{value} - 1 where"
    _execute(warehouse_dsn, f"{flip} {row}")  # a bad row that build wrote (and tested)

    def run(command: str) -> None:
        run_dbt(
            [command, "--vars", '{"dataset": "generated"}', "--select", model, "--resource-type", "test"],
            project_dir=dbt_project_dir,
            env=tool_env,
            log=lambda _line: None,
            target_path=tmp_path / "target",
            log_path=tmp_path / "logs",
        )

    try:
        assert _query(warehouse_dsn, f"select max({column}) <= %s from marts.{model}", (recorded,))[0][0]
        run("build")  # only rows newer than `recorded`: none
        with pytest.raises(DbtBuildError) as caught:
            run("test")
        assert {r.name.split(".")[0] for r in caught.value.failures} == {failing}
        _execute(warehouse_dsn, f"update marts.{model} set {column} = now() where {value} < 0")
        with pytest.raises(DbtBuildError) as caught:
            run("build")  # the row is now newer than the last successful build
        assert {r.name.split(".")[0] for r in caught.value.failures} == {failing}
    finally:
        _execute(warehouse_dsn, f"{flip} {value} < 0")


@pytest.fixture(scope="module")
def uci_dsn(test_settings: Settings) -> Iterator[str]:
    """A second private database holding only the UCI data set's raw tables (as a UCI deployment has)."""
    name = f"{test_settings.warehouse_db}_dbt_uci"
    with psycopg.connect(test_settings.pg_url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield test_settings.pg_url(name)
    finally:
        with psycopg.connect(test_settings.pg_url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def test_uci_cleaning_rules_and_marts(
    uci_dsn: str, tool_env: dict[str, str], dbt_project_dir: Path, tmp_path: Path
) -> None:
    _execute(uci_dsn, UCI_RAW_SQL)
    env = {**tool_env, "PGDATABASE": uci_dsn.rsplit("/", 1)[1], "RECOMART_DATASET": "uci"}
    result = dbt_build(
        dbt_project_dir,
        env,
        log=lambda _line: None,
        target_path=tmp_path / "target",
        log_path=tmp_path / "logs",
    )
    assert result.failures == ()
    # 21258 is bought but missing from the catalog: a warning, not an error
    assert [w.name.split(".")[0] for w in result.warnings] == [
        "relationships_int_interactions_item_id__item_id__ref_stg_catalog__products_"
    ]

    counts = dict(_query(uci_dsn, "select rule_name, row_count from marts.data_quality_exclusions"))
    assert counts == {
        "missing_customer": 1,
        "cancellation": 1,
        "exact_duplicate": 1,
        "non_product_code": 2,
        "non_positive_quantity": 1,
        "non_positive_price": 1,
        "outlier_quantity": 1,
        "kept": 4,
    }
    ratings = _query(
        uci_dsn,
        "select user_id, item_id, interactions, purchases, event_timestamp from marts.user_item_ratings "
        "order by user_id, item_id",
    )
    # 09:09 Europe/London in June (BST) is 08:09 UTC; the 2011-01-18 outlier line does not count
    as_of = datetime(2011, 6, 1, 8, 9, tzinfo=UTC)
    assert ratings == [
        ("15100", "21258", 1, 1, as_of),
        ("17850", "71053", 1, 1, as_of),
        ("17850", "85123A", 2, 2, as_of),
    ]
    dim = dict(_query(uci_dsn, "select item_id, in_catalog from marts.dim_products"))
    assert dim == {"85123A": True, "71053": True, "21258": False}
    (country,) = _query(uci_dsn, "select country from marts.user_features where user_id = '17850'")[0]
    assert country == "United Kingdom"


def test_unknown_dataset_is_rejected(tool_env: dict[str, str], dbt_project_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DbtBuildError, match="var 'dataset' must be 'generated' or 'uci', got 'movielens'"):
        dbt_build(
            dbt_project_dir,
            tool_env,
            vars={"dataset": "movielens"},
            log=lambda _line: None,
            target_path=tmp_path / "target",
            log_path=tmp_path / "logs",
        )
