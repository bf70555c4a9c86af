"""Make Great Expectations' Data Docs render offline.

GX's page templates load jQuery, Bootstrap, bootstrap-table, Vega, Font Awesome and more from CDNs
(and its logo from S3), so without internet the pages stay blank: the validation list is drawn by
bootstrap-table.  :func:`localise_docs` copies the same files, at the versions the pages name, from
npm packages installed by ``./recomart`` (``npm ci`` of ``web_assets/package-lock.json`` into
``web_assets/node_modules``) into ``<docs>/static/vendor/``, and rewrites each page's CDN URLs to
relative links.  The logo comes from the images GX itself copies to ``<docs>/static/images/``.

The copies are byte-identical to the CDN files, so the pages' subresource-integrity hashes (popper.js,
bootstrap.js) still check them.  Anchors (``<a href="https://greatexpectations.io">``) are left alone:
they load nothing.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from recomart.config import PROJECT_ROOT

log = logging.getLogger(__name__)

NODE_MODULES = PROJECT_ROOT / "web_assets" / "node_modules"
VENDOR_DIR = Path("static", "vendor")  # inside the docs folder
GX_LOGO = Path("static", "images", "logo-long.png")  # shipped by GX and copied by its site builder


@dataclass(frozen=True)
class Asset:
    """One file a Data Docs page loads: its CDN URL as GX writes it, and the npm file it maps to."""

    url: str
    package: str
    path: str  # inside the package

    @property
    def local(self) -> Path:
        """Where the copy lives, relative to the docs folder."""
        return VENDOR_DIR / self.package / self.path


# Every CDN URL of GX 1.24's page templates (js_script_imports.j2, index_page.j2, page.j2,
# page_minimal.j2) -> "npm package:file"; tests/unit/test_docs_assets.py fails when a GX upgrade adds one.
_JSDELIVR, _UNPKG, _CDNJS = (
    "https://cdn.jsdelivr.net/npm/",
    "https://unpkg.com/",
    "https://cdnjs.cloudflare.com/ajax/libs/",
)
_BOOTSTRAP_CDN = "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/"
_TABLE_FILTER = "dist/extensions/filter-control/bootstrap-table-filter-control"
_CDN_TO_NPM = {
    _JSDELIVR + "vega@5": "vega:build/vega.min.js",
    _JSDELIVR + "vega-lite@5": "vega-lite:build/vega-lite.min.js",
    _JSDELIVR + "vega-embed@6": "vega-embed:build/vega-embed.min.js",
    _CDNJS + "font-awesome/6.6.0/css/all.min.css": "@fortawesome/fontawesome-free:css/all.min.css",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery:dist/jquery.min.js",
    _CDNJS + "popper.js/1.12.9/umd/popper.min.js": "popper.js:dist/umd/popper.min.js",
    _BOOTSTRAP_CDN + "js/bootstrap.min.js": "bootstrap:dist/js/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap:dist/css/bootstrap.min.css",
    _UNPKG + "bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table:dist/bootstrap-table.min.js",
    _UNPKG + "bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table:dist/bootstrap-table.min.css",
    f"{_UNPKG}bootstrap-table@1.19.1/{_TABLE_FILTER}.min.js": f"bootstrap-table:{_TABLE_FILTER}.min.js",
    # GX links the filter-control styles of 1.19.0; those of 1.19.1 (the version of its scripts) serve
    f"{_UNPKG}bootstrap-table@1.19.0/{_TABLE_FILTER}.min.css": f"bootstrap-table:{_TABLE_FILTER}.min.css",
    f"{_UNPKG}bootstrap-table@1.19.0/{_TABLE_FILTER}.css": f"bootstrap-table:{_TABLE_FILTER}.css",
    _CDNJS + "bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker:dist/js/bootstrap-datepicker.min.js"
    ),
    _CDNJS + "bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker:dist/css/bootstrap-datepicker.min.css"
    ),
    _JSDELIVR + "@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "@forevolve/bootstrap-dark:dist/css/bootstrap-prefers-dark.css"
    ),
}
CDN_ASSETS = tuple(Asset(url, *npm_file.split(":")) for url, npm_file in _CDN_TO_NPM.items())
_CDN_HOSTS = {urlsplit(a.url).netloc for a in CDN_ASSETS} | {"great-expectations-web-assets.s3."}

# GX's logo from S3: in <img src> (with a cache-busting query) and in a dark-mode CSS background.
# GX ships the light logo only; dark mode shows that one rather than an empty navbar.
GX_IMAGE_URL = re.compile(
    r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/[\w.-]+\.png[^\"')\s]*"
)
# GX's own relative links to its images; on validation pages its favicon link is one "../" short.
_GX_IMAGES_LINK = re.compile(r"(?<=[\"'])(?:\./|(?:\.\./)+)?static/images/")

# A URL the browser fetches by itself: the src/href of <script>, <link> and <img>, or a CSS url().
_RESOURCE_URL = re.compile(
    r"<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*[\"'](https?://[^\"']+)[\"']"
    r"|url\(\s*[\"']?(https?://[^\"')\s]+)",
    re.IGNORECASE,
)
_CSS_RELATIVE_URL = re.compile(r"url\(\s*[\"']?(?!data:|https?:|#)([^\"')?#]+)")


def external_resources(html: str) -> list[str]:
    """The absolute http(s) URLs that ``html`` makes a browser load (scripts, styles, images, CSS urls)."""
    return [a or b for a, b in _RESOURCE_URL.findall(html)]


def localise_docs(docs_dir: Path, node_modules: Path = NODE_MODULES) -> list[str]:
    """Copy the vendored assets into ``docs_dir`` and point every page of the site at them.

    Returns the external URLs still loaded by some page (empty when the docs render offline); logs a
    warning naming them, or naming the missing ``node_modules`` (then the pages keep their CDN links).
    """
    docs_dir = Path(docs_dir)
    missing = [a for a in CDN_ASSETS if not (node_modules / a.package / a.path).is_file()]
    if missing:
        log.warning(
            "Data Docs keep their CDN links (they need internet): %s not found under %s; "
            "run ./recomart once, which installs web_assets/package-lock.json with npm ci",
            missing[0].path,
            node_modules,
        )
        return sorted({a.url for a in CDN_ASSETS})
    for asset in CDN_ASSETS:
        _copy_with_css_references(node_modules / asset.package / asset.path, docs_dir / asset.local)
    remaining = set()
    for page in _pages(docs_dir):
        remaining.update(_rewrite_page(page, docs_dir))
    if remaining:
        log.warning("Data Docs still load from the internet (unknown to docs_assets.py): %s", sorted(remaining))
    return sorted(remaining)


def _pages(docs_dir: Path) -> Iterable[Path]:
    for page in docs_dir.rglob("*.html"):
        if page.relative_to(docs_dir).parts[0] not in ("static", "_gx"):
            yield page


def _rewrite_page(page: Path, docs_dir: Path) -> list[str]:
    """Rewrite one page's CDN and S3 URLs to relative links and mend its links to GX's images;
    return the external URLs it still loads.  A page already rewritten (no CDN host) is skipped."""
    html = page.read_text(encoding="utf-8")
    if not any(host in html for host in _CDN_HOSTS):
        return []
    root = Path(os.path.relpath(docs_dir, page.parent)).as_posix()
    new = html
    for asset in CDN_ASSETS:
        new = new.replace(f'"{asset.url}"', f'"{root}/{asset.local.as_posix()}"')
    new = GX_IMAGE_URL.sub(f"{root}/{GX_LOGO.as_posix()}", new)
    new = _GX_IMAGES_LINK.sub(f"{root}/static/images/", new)
    if new != html:
        page.write_text(new, encoding="utf-8")
    return external_resources(new)


def _copy_with_css_references(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` (when changed); for a stylesheet also the files its relative
    ``url()``s name (Font Awesome's ``../webfonts/*``)."""
    _copy_if_changed(source, target)
    if source.suffix == ".css":
        for ref in set(_CSS_RELATIVE_URL.findall(source.read_text(encoding="utf-8"))):
            _copy_if_changed(source.parent / ref, target.parent / ref)


def _copy_if_changed(source: Path, target: Path) -> None:
    """Copy with its modification time, unless ``target`` already has ``source``'s size and time."""
    stat = source.stat()
    if target.is_file() and (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
