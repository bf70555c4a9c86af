"""Great Expectations' Data Docs render offline: built from real validations on Postgres, served over
HTTP on 127.0.0.1, opened in headless Chromium that may reach no other host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# the quality tests' `warehouse` fixture (their valid raw tables and marts, in this module's databases),
# registered here as `quality_warehouse`
from integration.test_quality import warehouse as quality_warehouse  # noqa: F401

from recomart.quality import validate_marts, validate_raw

if TYPE_CHECKING:
    from conftest import OfflinePage  # tests/browser/conftest.py

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SUITES = [
    "raw.events",
    "raw.users",
    "raw.products",
    "marts.user_item_ratings",
    "marts.user_features",
    "marts.item_features",
    "marts.dim_products",
]
VALIDATION_ROWS = "table.ge-index-page-validation-results-table tbody tr"


@pytest.fixture(scope="module")
def data_docs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Data Docs folder with one validation of each raw and mart suite."""
    dsn = request.getfixturevalue("quality_warehouse")
    docs = tmp_path_factory.mktemp("gx_docs")
    validate_raw(dsn, "generated", docs_dir=docs)
    validate_marts(dsn, "generated", docs_dir=docs)
    return docs


def _assert_stayed_local(page: OfflinePage) -> None:
    assert page.external == [], f"requests to hosts other than 127.0.0.1: {page.external}"
    assert page.failures == [], f"failed loads: {page.failures}"
    assert page.errors == [], f"script errors: {page.errors}"


def test_index_lists_every_validation_offline(
    data_docs: Path, serve_directory: Callable[[Path], str], offline_page: OfflinePage
) -> None:
    page = offline_page.page
    page.goto(f"{serve_directory(data_docs)}/index.html", wait_until="networkidle")
    rows = page.locator(VALIDATION_ROWS)
    rows.first.wait_for()
    texts = rows.all_inner_texts()
    assert len(texts) == len(SUITES)
    assert sorted(next(s for s in SUITES if s in text) for text in texts) == sorted(SUITES)
    assert page.locator(f"{VALIDATION_ROWS} i.fa-check-circle").count() == len(SUITES)
    assert any(url.endswith("/webfonts/fa-solid-900.woff2") for url in offline_page.requests), "icon font not loaded"
    _assert_stayed_local(offline_page)

    # a row opens its validation result (bootstrap-table's click handler, i.e. jQuery works)
    rows.filter(has_text="raw.events").first.click()
    page.wait_for_url("**/validations/raw/events/**")
    page.wait_for_load_state("networkidle")
    assert "raw.events" in page.inner_text("body")
    _assert_stayed_local(offline_page)


def test_every_page_loads_only_from_127_0_0_1(
    data_docs: Path, serve_directory: Callable[[Path], str], offline_page: OfflinePage
) -> None:
    base = serve_directory(data_docs)
    pages = sorted(p.relative_to(data_docs).as_posix() for p in data_docs.rglob("*.html") if "_gx" not in p.parts)
    assert len(pages) == 1 + 2 * len(SUITES)  # the index, one suite page and one result page per suite
    for path in pages:
        offline_page.page.goto(f"{base}/{path}", wait_until="networkidle")
        assert offline_page.page.locator("nav.navbar img").first.evaluate("img => img.naturalWidth") > 0, path
    _assert_stayed_local(offline_page)
    assert all(url.startswith(base) or url.startswith("data:") for url in offline_page.requests)
