"""The dashboard in headless Chromium over a real uvicorn (the serving tests' deployment and API, 2 workers)
with the stream worker running: login required, each page renders its charts from files served by the
API itself (no request to another host), figures equal the same figures in SQL, and the "what if" box
moves the customer's list through the speed layer within 2 s. The Monitoring and Experiments pages read
rows written by the monitor's and the experiments' own code (``record_checks``, ``create_experiment``)
into this deployment, and a stand-in of the experiment mart; the search box asks the API's index.
Screenshots: .state/test-artifacts/dashboard/."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import psycopg
import pytest

# the serving tests' private Postgres/Redis with a published generation, and their uvicorn
from integration.test_serving import api, deployment, register_version  # noqa: F401

from recomart.config import Settings
from recomart.dashboard.auth import USER, password
from recomart.experiments.definitions import Experiment, Variant
from recomart.experiments.store import create_experiment
from recomart.model.promotion_log import record_promotion
from recomart.model.registry import set_champion
from recomart.monitoring.checks import at_least, info
from recomart.monitoring.evaluate import RECO_KEYS, drift_keys
from recomart.monitoring.reads import DRIFT_FEATURES
from recomart.monitoring.store import record_checks
from recomart.stream.worker import worker_args
from recomart.tools import tool_env

if TYPE_CHECKING:
    from conftest import OfflinePage  # tests/browser/conftest.py

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER_ID, ITEM_ID = "u001", "i003"
PAGES = {
    "overview": "/ui/overview",
    "customer": f"/ui/customer?user_id={USER_ID}",
    "product": f"/ui/product?item_id={ITEM_ID}",
    "models": "/ui/models",
    "monitoring": "/ui/monitoring",
    "experiments": "/ui/experiments",
    "search": f"/ui/search?q={ITEM_ID}",
}
EXPERIMENT = "dash_home_page"
ROUTE = "/v1/users/{user_id}/recommendations"
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".state" / "test-artifacts" / "dashboard"


@pytest.fixture(scope="module")
def live_api(api: httpx.Client, deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:  # noqa: F811
    """The API with a registered ``@champion`` loaded (session re-ranking needs its neighbours) and the
    stream worker consuming the events the dashboard posts."""
    s, overrides = deployment
    version = register_version(s, 1, tmp_path_factory.mktemp("dashboard-model"))
    set_champion(s.mlflow_tracking_uri, s.model_name, version)
    # the gate's log as the train task writes it: an earlier rejected version, then the champion
    for logged, decision in (("0", "rejected"), (version, "promoted")):
        record_promotion(s.warehouse_url, _decision(s, logged, decision))
    log = (s.state_dir / "dashboard-worker.log").open("w")
    worker = subprocess.Popen(worker_args(), env={**tool_env(s), **overrides}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while api.get("/readyz").json()["model_version"] is None and time.monotonic() < deadline:
            time.sleep(0.2)
        yield api
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
        print((s.state_dir / "dashboard-worker.log").read_text()[-3000:], file=sys.stderr)


def _decision(s: Settings, version: str, decision: str) -> dict:
    at_k = {f"{metric}_at_{k}": 0.1 * k / (k + 1) for metric in ("ndcg", "recall") for k in (1, 5, 10, 20)}
    return {
        "model_name": s.model_name,
        "model_version": version,
        "decision": decision,
        "reason": f"{decision} by the test",
        "metrics": {"model": at_k, "popularity": {name: value / 2 for name, value in at_k.items()}},
        "blend": {"weights": {"cf": 0.5, "item_item": 0.3, "popularity": 0.2}},
    }


def _monitor_runs(dsn: str) -> None:
    """Two monitor runs a day apart, written by the monitor's own store: PSI of every drift feature (one
    above the alert threshold in the second run, which opens an alert) and the health of generations 1, 2."""
    for run, (gen, age) in enumerate(((1, 1), (2, 0)), 1):
        checks = [
            at_least(drift_keys(entity)[0], name, 0.02 * (n + 1) * run, 0.1, 0.2, f"{name} drifted", scope=name)
            for entity, kinds in DRIFT_FEATURES.items()
            for n, name in enumerate(kinds["numeric"] + kinds["categorical"])
        ]
        health = {"coverage": 0.3 + 0.1 * gen, "exposure_gini": 0.6, "avg_rec_popularity": 0.05, "users": 60.0}
        health |= {"personalization": 0.7, "novelty": 5.5 + gen, "intra_list_diversity": 0.55, "cold_start_share": 0.1}
        checks += [info(f"reco.{name}", str(gen), value, name) for name, value in health.items()]
        keys = [*drift_keys("user"), *drift_keys("item"), *RECO_KEYS]
        record_checks(dsn, f"test-run-{run}", checks, keys)
        with psycopg.connect(dsn) as conn:
            conn.execute(
                "update ops.monitoring_metrics set measured_at = now() - make_interval(days => %s) where run_id = %s",
                (age, f"test-run-{run}"),
            )


def _serving_minutes(dsn: str) -> None:
    """Ten minutes of one worker's figures on the recommendations route, as ``serving.stats`` writes them."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = [(now - timedelta(minutes=20 - m), ROUTE, "test-worker", 50 + m, m % 2, 4.0 + m, 9.0 + m, 20.0 + m, 0.0)
            for m in range(10)]  # fmt: skip
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany("insert into ops.serving_stats values (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)


def _experiment(dsn: str) -> None:
    """An experiment that ended yesterday (so the API applies none) and its per-user outcomes in a table
    standing in for the dbt mart ``marts.fct_experiment_users`` (its columns that the analysis reads)."""
    now = datetime.now(UTC)
    variants = (Variant("hybrid", "hybrid", 0.5), Variant("popularity", "popularity", 0.5))
    experiment = Experiment(
        EXPERIMENT, "salt", variants, "hybrid", "conversion", now - timedelta(days=9), now - timedelta(days=1)
    )
    rng = np.random.default_rng(17)
    users = 600
    variant = np.where(np.arange(users) % 5 < 3, "hybrid", "popularity")  # 60/40 against 50/50: an SRM alarm
    converted = rng.random(users) < np.where(variant == "hybrid", 0.12, 0.08)
    days = [(now - timedelta(days=9 - int(d))).date() for d in rng.integers(0, 7, users)]
    with psycopg.connect(dsn) as conn:
        create_experiment(conn, experiment)
        conn.execute(
            "create table marts.fct_experiment_users (experiment text, user_id text, variant text, converted boolean,"
            " revenue numeric, pre_purchases bigint, pre_revenue numeric, first_exposure_day date, exposures bigint)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "insert into marts.fct_experiment_users values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (EXPERIMENT, f"x{n:04d}", str(variant[n]), bool(converted[n]), float(20.0 * converted[n]),
                     int(rng.poisson(1.0)), None, days[n], int(rng.integers(1, 6)))
                    for n in range(users)
                ],
            )  # fmt: skip


@pytest.fixture(scope="module")
def monitored(live_api: httpx.Client, deployment) -> httpx.Client:  # noqa: F811
    """The deployment with monitor runs, alerts, serving figures and an analysed experiment; the API's
    search index built."""
    s, _ = deployment
    _monitor_runs(s.warehouse_url)
    _serving_minutes(s.warehouse_url)
    _experiment(s.warehouse_url)
    deadline = time.monotonic() + 60
    while live_api.get("/v1/search", params={"q": ITEM_ID}).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    return live_api


def _login(offline_page: OfflinePage, base: str, s: Settings) -> None:
    page = offline_page.page
    page.goto(f"{base}/ui/overview")
    assert page.url.startswith(f"{base}/ui/login"), page.url
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", password(s.state_dir))
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ui/overview")


def _assert_stayed_local(page: OfflinePage) -> None:
    assert page.external == [], f"requests to hosts other than 127.0.0.1: {page.external}"
    assert page.failures == [], f"failed loads: {page.failures}"
    assert page.errors == [], f"script errors: {page.errors}"


def _charts_drawn(page: OfflinePage) -> int:
    """Wait until every chart of the page is drawn; returns how many there are."""
    charts = page.page.locator(".chart")
    page.page.wait_for_function("[...document.querySelectorAll('.chart')].every(c => c.dataset.rendered)")
    states = charts.evaluate_all("cs => cs.map(c => c.dataset.rendered + ':' + c.querySelectorAll('svg').length)")
    assert all(state.startswith("true:") and not state.endswith(":0") for state in states), states
    return len(states)


def test_pages_need_the_login(live_api: httpx.Client) -> None:
    for path in [*PAGES.values(), "/ui/monitoring"]:
        response = live_api.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/ui/login"), path
    wrong = live_api.post("/ui/login", data={"user": USER, "password": "not-it"})
    assert wrong.status_code == 401


def test_every_page_renders_its_charts_offline(monitored: httpx.Client, deployment, offline_page: OfflinePage) -> None:  # noqa: F811
    s, _ = deployment
    base = str(monitored.base_url).rstrip("/")
    _login(offline_page, base, s)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for name, path in PAGES.items():
        offline_page.page.goto(f"{base}{path}", wait_until="networkidle")
        drawn[name] = _charts_drawn(offline_page)
        offline_page.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    assert drawn["overview"] == 3 and drawn["product"] == 1 and drawn["models"] == 3, drawn
    assert drawn["monitoring"] == 4 and drawn["experiments"] == 2, drawn  # PSI x 2, health, latency; conversion, looks
    _assert_stayed_local(offline_page)
    assert all(url.startswith(base) or url.startswith("data:") for url in offline_page.requests)


def test_figures_equal_sql(live_api: httpx.Client, deployment, offline_page: OfflinePage) -> None:  # noqa: F811
    s, _ = deployment
    base = str(live_api.base_url).rstrip("/")
    _login(offline_page, base, s)
    page = offline_page.page
    with psycopg.connect(s.warehouse_url) as conn:
        rows, users = conn.execute("select row_count, user_count from reco.generations where is_live").fetchone()
        holders = conn.execute(
            "select count(*) from reco.user_recommendations where item_id = %s", (ITEM_ID,)
        ).fetchone()[0]
        versions = conn.execute(
            "select count(*) from ops.model_promotions where model_name = %s", (s.model_name,)
        ).fetchone()[0]
        listed = [
            r[0]
            for r in conn.execute(
                "select item_id from reco.user_recommendations where user_id = %s order by rank", (USER_ID,)
            )
        ]
    page.goto(f"{base}/ui/overview")
    assert page.inner_text("[data-field=row_count]") == str(rows)
    assert page.inner_text("[data-field=user_count]") == str(users)
    page.goto(f"{base}/ui/product?item_id={ITEM_ID}")
    assert page.inner_text("#recommended-users") == str(holders)
    page.goto(f"{base}/ui/models")
    assert page.locator("#versions tbody tr").count() == versions
    page.goto(f"{base}/ui/customer?user_id={USER_ID}")
    shown = page.locator("#recommendations tbody tr").evaluate_all("rows => rows.map(r => r.dataset.item)")
    assert shown == listed[: len(shown)] and shown
    assert page.locator("#recommendations .bar").count() >= len(shown)  # every item has its reasons


def test_what_if_moves_the_list(live_api: httpx.Client, deployment, offline_page: OfflinePage) -> None:  # noqa: F811
    s, _ = deployment
    base = str(live_api.base_url).rstrip("/")
    _login(offline_page, base, s)
    page = offline_page.page
    page.goto(f"{base}/ui/customer?user_id={USER_ID}")
    before = page.locator("#recommendations tbody tr").evaluate_all("rows => rows.map(r => r.dataset.item)")
    page.fill("#what-if input[name=item_id]", ITEM_ID)
    page.click("#what-if button[type=submit]")
    page.wait_for_load_state("networkidle")
    result = page.locator("#what-if-result")
    assert "changed" in (result.get_attribute("class") or ""), result.inner_text()
    after = page.locator("#recommendations tbody tr").evaluate_all("rows => rows.map(r => r.dataset.item)")
    assert page.locator("#recommendations tr.moved").count() > 0
    assert int(page.inner_text("#fresh-events")) >= 1
    seconds = float(result.inner_text().split(" after ")[1].split(" s")[0])
    assert seconds < 2.0, result.inner_text()
    assert after != before or page.locator("#recommendations .fill.session_boost").count() > 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "what_if.png"), full_page=True)
    _assert_stayed_local(offline_page)


def test_monitoring_figures_equal_sql(monitored: httpx.Client, deployment, offline_page: OfflinePage) -> None:  # noqa: F811
    s, _ = deployment
    base = str(monitored.base_url).rstrip("/")
    _login(offline_page, base, s)
    page = offline_page.page
    route_sql = "select sum(requests) from ops.serving_stats where route = %s and minute > now() - interval '24 hours'"
    with psycopg.connect(s.warehouse_url) as conn:
        alerts = conn.execute("select count(*) from ops.alerts where state in ('open', 'acknowledged')").fetchone()[0]
        psi = conn.execute(
            "select value from ops.monitoring_metrics where metric_key = 'drift.item.psi' and subject = 'brand'"
            " order by measured_at desc limit 1"
        ).fetchone()[0]
        coverage = conn.execute(
            "select value from ops.monitoring_metrics where metric_key = 'reco.coverage' and subject = '2'"
        ).fetchone()[0]
        requests_before = conn.execute(route_sql, (ROUTE,)).fetchone()[0]
    page.goto(f"{base}/ui/monitoring")
    with psycopg.connect(s.warehouse_url) as conn:  # the API's workers may flush their own minute meanwhile
        requests_after = conn.execute(route_sql, (ROUTE,)).fetchone()[0]
    assert alerts >= 1  # the second run's PSI above 0.2 opened them
    assert page.inner_text("[data-field=open_alerts]") == str(alerts)
    assert page.locator("#alerts tbody tr").count() == alerts
    assert page.inner_text("#psi tr[data-feature='item.brand'] .psi") == f"{psi:.4f}"
    assert page.inner_text("#health tr[data-generation='2'] td[data-metric=coverage]") == f"{coverage:.4f}"
    shown = int(page.inner_text(f"#routes tr[data-route='{ROUTE}'] .requests"))
    assert requests_before <= shown <= requests_after, (requests_before, shown, requests_after)
    page.goto(f"{base}/ui/overview")
    assert page.inner_text("#open-alerts [data-field=open_alerts]") == str(alerts)
    _assert_stayed_local(offline_page)


def test_experiment_figures_equal_sql(monitored: httpx.Client, deployment, offline_page: OfflinePage) -> None:  # noqa: F811
    s, _ = deployment
    base = str(monitored.base_url).rstrip("/")
    _login(offline_page, base, s)
    page = offline_page.page
    with psycopg.connect(s.warehouse_url) as conn:
        per_variant = conn.execute(
            "select variant, count(*), sum(converted::int) from marts.fct_experiment_users"
            " where experiment = %s group by variant",
            (EXPERIMENT,),
        ).fetchall()
    page.goto(f"{base}/ui/experiments?name={EXPERIMENT}")
    assert page.inner_text("#experiment-name") == EXPERIMENT
    for variant, users, conversions in per_variant:
        row = page.locator(f"#variants tr[data-variant='{variant}']")
        assert row.locator(".users").inner_text() == str(users)
        assert row.locator(".conversions").inner_text() == str(conversions)
    assert page.inner_text("[data-field=srm_verdict]").startswith("ALARM")  # 360 / 240 users against 50 / 50
    assert page.inner_text("#comparisons tr[data-variant=popularity] .decision").startswith("invalid")
    page.goto(f"{base}/ui/experiments?name=no-such-experiment")
    assert "no experiment named" in page.inner_text("#experiment-problem")
    _assert_stayed_local(offline_page)


def test_search_box_finds_products_and_names_its_index(
    monitored: httpx.Client,
    deployment,  # noqa: F811
    offline_page: OfflinePage,
) -> None:
    s, _ = deployment
    base = str(monitored.base_url).rstrip("/")
    _login(offline_page, base, s)
    page = offline_page.page
    page.fill("#search-box input[name=q]", ITEM_ID)
    page.click("#search-box button[type=submit]")
    page.wait_for_url(f"{base}/ui/search?q={ITEM_ID}")
    index = monitored.get("/v1/search", params={"q": ITEM_ID}).json()["index"]
    assert page.inner_text("#search-index [data-field=index]") == index
    hits = page.locator("#results tbody tr").evaluate_all("rows => rows.map(r => r.dataset.item)")
    assert hits and hits[0] == ITEM_ID, hits
    with psycopg.connect(s.warehouse_url) as conn:
        titles = dict(conn.execute("select item_id, title from marts.dim_products where item_id = any(%s)", (hits,)))
    shown = page.locator("#results tbody tr td:nth-child(2) a").all_inner_texts()
    assert shown == [titles[item] for item in hits]
    page.click(f"#results tr[data-item={ITEM_ID}] a")
    page.wait_for_url(f"{base}/ui/product?item_id={ITEM_ID}")
    assert page.inner_text("#item-id") == ITEM_ID
    _assert_stayed_local(offline_page)
