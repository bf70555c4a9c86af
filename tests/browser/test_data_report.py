"""The data report on ten real UCI days (../shared/data): the figures it embeds equal the same figures
in SQL, it shows UCI's known dirt (missing customers, cancellations, duplicates, non-product codes),
it opens in headless Chromium from file:// with every request refused and draws every plot, and the
nightly copy is idempotent per day and logged to MLflow.  Screenshot: .state/test-artifacts/data_report/.

The warehouse is built once for the module: the ten days through the real loader (plus one malformed
day, so the quarantine plot has rows), the derived catalogue through the catalog API, the dbt models
the report reads (``dbt run``), and the raw Great Expectations suites with a docs folder.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest
from integration.test_uci import (  # noqa: F401  (module fixtures, registered here)
    FIRST,
    LAST,
    MALFORMED_DAY,
    by_day,
    prepared,
    ten_day_source,
    uci_settings,
    write_malformed,
)
from playwright.sync_api import Browser

from recomart.catalog_api.app import serve_in_thread
from recomart.config import Settings
from recomart.data_report.charts import PLOTS
from recomart.data_report.nightly import DAY_TAG, EXPERIMENT, nightly_path
from recomart.data_report.render import KNOWN_DIRT, collect, write_report
from recomart.ingest.catalog import ingest_catalog
from recomart.ingest.feeds import UCI_ORDERS
from recomart.ingest.load import load_feed_date
from recomart.quality import ValidationSummary, validate_raw
from recomart.tasks.ingest_events import days_in_window, ingest_landing_files
from recomart.tasks.transform import report_day, write_data_report
from recomart.transform.dbt import run_dbt

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.shared_data]

MODELS = (
    "+int_interactions +int_user_items +dim_products +data_quality_exclusions +report_hourly_interactions"
    " +report_daily_baskets"
)
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".state" / "test-artifacts" / "data_report"
SPEC = re.compile(r'<script type="application/json" class="spec" data-plot="(\w+)">(.*?)</script>')


def rows(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def report_settings(uci_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # noqa: F811
    """The UCI settings with a private state folder (GX results, nightly reports, MLflow artifacts)."""
    return dataclasses.replace(uci_settings, state_dir=tmp_path_factory.mktemp("report_state"))


@pytest.fixture(scope="module")
def uci_warehouse(
    report_settings: Settings,
    by_day: Path,  # noqa: F811
    prepared: str,  # noqa: F811
    tool_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    s, dsn = report_settings, report_settings.warehouse_url
    ingest_landing_files(dsn, s, days_in_window(FIRST.isoformat(), LAST.isoformat(), None, None))
    target = UCI_ORDERS.path_for(s.landing_dir, MALFORMED_DAY)
    write_malformed(by_day / f"{MALFORMED_DAY}.csv", target)
    assert load_feed_date(dsn, UCI_ORDERS, s.landing_dir, MALFORMED_DAY).records_rejected == 4
    with serve_in_thread(s.landing_dir / "uci" / "products.csv") as base_url:
        ingest_catalog(dsn, base_url, page_size=500)
    dbt_dir = tmp_path_factory.mktemp("dbt")
    run_dbt(
        ["run", "--select", *MODELS.split()],
        project_dir=s.dbt_project_dir,
        env={**tool_env, "RECOMART_DATASET": "uci"},
        log=lambda _line: None,
        target_path=dbt_dir / "target",
        log_path=dbt_dir / "logs",
    )
    return dsn


@pytest.fixture(scope="module")
def gx_summary(report_settings: Settings, uci_warehouse: str) -> ValidationSummary:
    """The raw suites on the UCI tables, their results kept under the state folder's Data Docs."""
    return validate_raw(uci_warehouse, "uci", docs_dir=report_settings.gx_docs_dir)


@pytest.fixture(scope="module")
def report(
    report_settings: Settings,
    uci_warehouse: str,
    gx_summary: ValidationSummary,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    path = tmp_path_factory.mktemp("report") / "uci report.html"
    write_report(report_settings, path)
    return path


def embedded(report: Path) -> dict[str, list[dict]]:
    """Each drawn plot's data, read back from its inline Vega-Lite spec."""
    return {name: json.loads(spec)["data"]["values"] for name, spec in SPEC.findall(report.read_text())}


def test_uci_dirt_and_figures_equal_sql(
    report: Path, uci_warehouse: str, gx_summary: ValidationSummary, report_settings: Settings
) -> None:
    data, dsn = embedded(report), uci_warehouse
    assert set(data) == {p.name for p in PLOTS}, "every plot has data on ten UCI days"

    # the known dirt, each rule excluding rows, counted again from the staged lines (first rule wins)
    excluded = {row["rule_name"]: row["row_count"] for row in data["dbt_exclusions"]}
    assert all(excluded[rule] > 0 for rule in KNOWN_DIRT), excluded
    ((no_customer, cancelled, duplicates),) = rows(
        dsn,
        "with lines as (select *, row_number() over (partition by invoice_no, stock_code, description, quantity,"
        " invoiced_at, unit_price, customer_id, country order by source_file, line_number) as copy"
        " from staging.stg_uci__order_lines)"
        " select count(*) filter (where customer_id is null),"
        " count(*) filter (where customer_id is not null and invoice_no like 'C%%'),"
        " count(*) filter (where customer_id is not null and invoice_no not like 'C%%' and copy > 1) from lines",
    )
    assert (excluded["missing_customer"], excluded["cancellation"], excluded["exact_duplicate"]) == (
        no_customer,
        cancelled,
        duplicates,
    )
    assert excluded == dict(
        rows(dsn, "select rule_name, row_count from marts.data_quality_exclusions where rule_name <> 'kept'")
    )
    html = report.read_text()
    for rule in KNOWN_DIRT:
        assert f'class="dirt" data-rule="{rule}"' in html

    # the long tail adds up to every interaction, per user and per item
    (interactions,) = rows(dsn, "select count(*) from intermediate.int_interactions")[0]
    for entity in ("user", "item"):
        tail = [r for r in data["long_tail"] if r["entity"] == entity]
        assert sum(r["interactions"] * r["entities"] for r in tail) == interactions
    assert sum(r["interactions"] for r in data["weekday_hour"]) == interactions
    # the headline figures (counted from the long tail, first and last from the event_date index)
    totals = collect(dsn, "uci", report_settings.gx_docs_dir).totals
    names = ("interactions", "users", "items", "first_interaction", "last_interaction")
    assert (
        tuple(totals[name] for name in names)
        == rows(
            dsn,
            "select count(*), count(distinct user_id), count(distinct item_id), min(event_time), max(event_time)"
            " from intermediate.int_interactions",
        )[0]
    )

    # volumes are the ledger's live loads; the quarantine is the malformed day's four records
    ledger = rows(dsn, "select logical_date::text, records_loaded from ops.loaded_files where is_live order by 1")
    assert sorted((r["day"], r["records"]) for r in data["volumes"]) == ledger
    assert {(r["day"], r["records"]) for r in data["quarantine_reasons"]} <= {(MALFORMED_DAY.isoformat(), 1)}
    assert sum(r["records"] for r in data["quarantine_reasons"]) == 4

    # baskets are invoices: as many baskets as purchase invoices, as many items as distinct lines
    ((invoices, lines),) = rows(
        dsn, "select count(distinct order_id), count(distinct (order_id, item_id)) from intermediate.int_interactions"
    )
    assert sum(r["baskets"] for r in data["basket_sizes"]) == invoices
    assert sum(r["items"] * r["baskets"] for r in data["basket_sizes"]) == lines
    assert sum(r["purchases"] for r in data["repeat_purchases"]) == lines
    # a repeat: the customer bought the item on an earlier invoice (by time, then invoice number)
    ((repeats,),) = rows(
        dsn,
        "select count(*) filter (where n > 1) from (select row_number() over (partition by user_id, item_id"
        " order by bought_at, order_id) as n from (select user_id, item_id, order_id, min(event_time) as bought_at"
        " from intermediate.int_interactions where event_type = 'purchase' group by 1, 2, 3) as l) as r",
    )
    assert 0 < sum(r["repeats"] for r in data["repeat_purchases"]) == repeats
    (products,) = rows(dsn, "select count(*) from marts.dim_products where price > 0")[0]
    assert sum(r["products"] for r in data["price_distribution"]) == products

    # the GX plot counts the stored raw validation: one run, every expectation of it
    outcomes = {r["outcome"]: r["expectations"] for r in data["gx_results"]}
    assert len(data["gx_results"]) == 3 and sum(outcomes.values()) == len(gx_summary.outcomes)
    assert outcomes["failed (warning)"] == len(gx_summary.warnings)
    assert outcomes["failed (critical)"] == len(gx_summary.critical_failures) == 0


def test_report_opens_offline_and_draws_every_plot(report: Path, browser: Browser) -> None:
    context = browser.new_context()
    context.set_offline(True)
    requests, refused, errors = [], [], []

    def refuse_all_but_files(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", refuse_all_but_files)
    page = context.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(report.as_uri(), wait_until="load")
        page.wait_for_function("[...document.querySelectorAll('figure.plot')].every(f => f.dataset.rendered)")
        states = page.locator("figure.plot").evaluate_all(
            "fs => fs.map(f => [f.dataset.plot, f.dataset.rendered, f.querySelectorAll('.view svg').length,"
            " f.querySelector('figcaption').textContent.trim().length])"
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "uci.png"), full_page=True)
    finally:
        context.close()
    assert [s[0] for s in states] == [p.name for p in PLOTS]
    assert [s for s in states if s[1:3] != ["true", 1] or s[3] == 0] == [], states
    assert errors == [] and refused == []
    assert requests == [report.as_uri()], requests


def test_nightly_report_is_idempotent_and_logged_to_mlflow(report_settings: Settings, uci_warehouse: str) -> None:
    from mlflow import MlflowClient

    s = report_settings
    windows = [(datetime(2010, 12, 1, tzinfo=UTC), datetime(2010, 12, 13, tzinfo=UTC))]
    day = report_day(None, windows, uci_warehouse)
    assert day == date(2010, 12, 12)
    assert report_day(None, [], uci_warehouse) == MALFORMED_DAY  # the ledger's last loaded day
    assert report_day(datetime(2011, 1, 5, 23, tzinfo=UTC), windows, uci_warehouse) == date(2011, 1, 5)

    first = write_data_report(s, uci_warehouse, day)
    again = write_data_report(s, uci_warehouse, day)
    path = nightly_path(s, day)
    assert first["path"] == again["path"] == str(path) == str(s.state_dir / "reports" / "2010-12-12.html")
    assert sorted(p.name for p in path.parent.iterdir()) == ["2010-12-12.html"], "no temporary file is left"
    assert first["mlflow_run_id"] == again["mlflow_run_id"]
    assert len(first["plots_with_data"]) == len(PLOTS)

    client = MlflowClient(tracking_uri=s.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [first["mlflow_run_id"]]
    assert runs[0].data.tags[DAY_TAG] == "2010-12-12"
    artifacts = [a.path for a in client.list_artifacts(first["mlflow_run_id"], "data_report")]
    assert artifacts == ["data_report/2010-12-12.html"]
    local = Path(client.download_artifacts(first["mlflow_run_id"], "data_report/2010-12-12.html"))
    assert local.read_bytes() == path.read_bytes()
