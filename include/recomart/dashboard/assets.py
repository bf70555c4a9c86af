"""The scripts and styles the dashboard's pages load, served from the npm packages ``./recomart`` installs.

``web_assets/package-lock.json`` pins Vega, Vega-Lite and Vega-Embed (also used by the Data Docs); the
dashboard serves exactly these files under ``/ui/static/vendor/<name>`` and nothing else from
``node_modules``, plus its own stylesheet and script from this package's ``static/`` folder.
"""

from __future__ import annotations

from pathlib import Path

from recomart.quality.docs_assets import NODE_MODULES

OWN_STATIC = Path(__file__).resolve().parent / "static"

VENDORED = {
    "vega.min.js": NODE_MODULES / "vega" / "build" / "vega.min.js",
    "vega-lite.min.js": NODE_MODULES / "vega-lite" / "build" / "vega-lite.min.js",
    "vega-embed.min.js": NODE_MODULES / "vega-embed" / "build" / "vega-embed.min.js",
}
OWN = {name: OWN_STATIC / name for name in ("dashboard.css", "dashboard.js")}


def asset_path(name: str) -> Path | None:
    """The file served as ``/ui/static/vendor/<name>`` or ``/ui/static/<name>``; None if not one of them."""
    return VENDORED.get(name) or OWN.get(name)


def missing_assets() -> list[Path]:
    """Vendored files that are not installed (``./recomart setup`` runs ``npm ci``)."""
    return [path for path in VENDORED.values() if not path.is_file()]
