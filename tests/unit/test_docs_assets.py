"""The Data Docs' offline assets: every CDN file GX's templates load is mapped to an installed npm
file (byte-identical where the templates pin a hash), and pages are rewritten to relative links."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path

import great_expectations
import pytest

from recomart.quality import docs_assets
from recomart.quality.docs_assets import CDN_ASSETS, GX_IMAGE_URL, NODE_MODULES, external_resources, localise_docs

GX_VIEW = Path(great_expectations.__file__).parent / "render" / "view"
GX_TEMPLATES = sorted([*GX_VIEW.glob("templates/*.j2"), *GX_VIEW.glob("static/styles/*.css")])
MAPPED = {a.url: a for a in CDN_ASSETS}


def _template_resources() -> set[str]:
    return {url for path in GX_TEMPLATES for url in external_resources(path.read_text(encoding="utf-8"))}


def test_every_resource_gx_templates_load_is_vendored() -> None:
    resources = _template_resources()
    unknown = {url for url in resources if url not in MAPPED and not GX_IMAGE_URL.fullmatch(url)}
    assert unknown == set(), f"GX loads files docs_assets.py does not vendor (a GX upgrade?): {sorted(unknown)}"
    assert set(MAPPED) <= resources, f"mapped but no longer used by GX: {sorted(set(MAPPED) - resources)}"


def test_vendored_files_are_installed() -> None:
    missing = [f"{a.package}/{a.path}" for a in CDN_ASSETS if not (NODE_MODULES / a.package / a.path).is_file()]
    assert missing == [], f"not under {NODE_MODULES} (./recomart runs npm ci in web_assets/): {missing}"


def test_pinned_integrity_hashes_match_the_vendored_files() -> None:
    """GX pins sha384 hashes for popper.js and bootstrap.js: the npm files are byte-identical."""
    text = (GX_VIEW / "templates" / "js_script_imports.j2").read_text(encoding="utf-8")
    pinned = re.findall(r'src="([^"]+)" integrity="sha384-([^"]+)"', text)
    assert len(pinned) == 2
    for url, digest in pinned:
        asset = MAPPED[url]
        data = (NODE_MODULES / asset.package / asset.path).read_bytes()
        assert base64.b64encode(hashlib.sha384(data).digest()).decode() == digest, url


S3 = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com"
PAGE = f"""<html><head>
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<style>.navbar-brand a {{ background: url('{S3}/full_logo_dark.png') }}</style>
<link rel="shortcut icon" href="../../static/images/favicon.ico" type="image/x-icon"/>
</head><body>
<img src="{S3}/logo-long.png?d=1&dataContextId=x"/>
<a href="https://greatexpectations.io">GX</a>
</body></html>"""


def test_localise_docs_points_pages_at_local_copies(tmp_path: Path) -> None:
    page = tmp_path / "validations" / "raw" / "events" / "run" / "time" / "result.html"
    page.parent.mkdir(parents=True)
    page.write_text(PAGE)
    assert localise_docs(tmp_path) == []
    html = page.read_text()
    assert external_resources(html) == []
    links = re.findall(r'(?:src|href)="(\.[^"]+)"|url\(\'(\.[^\']+)\'\)', html)
    targets = {(page.parent / (a or b)).resolve() for a, b in links}
    assert tmp_path / "static/vendor/jquery/dist/jquery.min.js" in targets
    assert tmp_path / "static/images/favicon.ico" in targets  # GX's link is one "../" short
    assert tmp_path / "static/images/logo-long.png" in targets
    vendored = [t for t in targets if "vendor" in t.parts]
    assert vendored and all(t.is_file() for t in vendored)
    assert list((tmp_path / "static/vendor/@fortawesome/fontawesome-free/webfonts").glob("*.woff2"))
    assert '<a href="https://greatexpectations.io">' in html  # a link loads nothing: kept

    before = page.stat().st_mtime_ns
    assert localise_docs(tmp_path) == []
    assert page.stat().st_mtime_ns == before and page.read_text() == html  # idempotent


def test_without_installed_assets_pages_keep_cdn_links_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "index.html").write_text(PAGE)
    with caplog.at_level(logging.WARNING, logger=docs_assets.__name__):
        remaining = localise_docs(tmp_path, node_modules=tmp_path / "missing")
    assert "https://code.jquery.com/jquery-3.7.1.min.js" in remaining
    assert (tmp_path / "index.html").read_text() == PAGE
    assert "./recomart" in caplog.text and "CDN" in caplog.text
