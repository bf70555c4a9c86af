"""The dashboard in headless Chromium over a real uvicorn (the serving tests' deployment and API, 2 workers)
with the stream worker running: login required, each page renders its charts from files served by the
API itself (no request to another host), figures equal the same figures in SQL, and the "what if" box
moves the customer's list through the speed layer within 2 s. Screenshots: .state/test-artifacts/dashboard/."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest

# the serving tests' private Postgres/Redis with a published generation, and their uvicorn
from integration.test_serving import api, deployment, register_version  # noqa: F401

from recomart.config import Settings
from recomart.dashboard.auth import USER, password
from recomart.model.promotion_log import record_promotion
from recomart.model.registry import set_champion
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
}
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


def test_every_page_renders_its_charts_offline(live_api: httpx.Client, deployment, offline_page: OfflinePage) -> None:  # noqa: F811
    s, _ = deployment
    base = str(live_api.base_url).rstrip("/")
    _login(offline_page, base, s)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for name, path in PAGES.items():
        offline_page.page.goto(f"{base}{path}", wait_until="networkidle")
        drawn[name] = _charts_drawn(offline_page)
        offline_page.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    assert drawn["overview"] == 3 and drawn["product"] == 1 and drawn["models"] == 3, drawn
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
