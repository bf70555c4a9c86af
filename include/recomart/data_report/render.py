"""Collect the report's aggregates and write them as one self-contained HTML file.

The file carries everything it draws with: each plot's Vega-Lite spec with its data inline, and the
Vega and Vega-Lite scripts themselves (the npm builds ``./recomart setup`` installs into
``web_assets/node_modules``, the same files the dashboard and the GX Data Docs serve).  Its
Content-Security-Policy forbids every request, so it opens offline, from disk or as an e-mail
attachment, and a plot's figures can be read back from its spec (``<script class="spec">``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from recomart.config import PROJECT_ROOT, Settings
from recomart.data_report import gx_results, queries
from recomart.data_report.charts import PLOTS, plain

#: The npm builds the page inlines (``recomart.quality.docs_assets.NODE_MODULES``, without importing GX).
NODE_MODULES = PROJECT_ROOT / "web_assets" / "node_modules"
SCRIPTS = {
    "vega_js": Path("vega", "build", "vega.min.js"),
    "vega_lite_js": Path("vega-lite", "build", "vega-lite.min.js"),
}
TEMPLATE = "report.html.j2"
#: ``marts.data_quality_exclusions`` rules that are UCI's documented dirt (highlighted in the table)
KNOWN_DIRT = ("missing_customer", "cancellation", "exact_duplicate", "non_product_code")
STATEMENT_TIMEOUT_MS = 120_000


class MissingScriptsError(FileNotFoundError):
    """The vendored Vega builds are not installed (``./recomart setup`` runs ``npm ci``)."""


@dataclass
class ReportData:
    """Everything the report shows: per plot name its rows, the headline totals, the GX runs."""

    dataset: str
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    gx_runs: list[gx_results.GxRun] = field(default_factory=list)


def collect(dsn: str, dataset: str, gx_docs_dir: Path) -> ReportData:
    """Run every aggregate of :mod:`recomart.data_report.queries` in one read-only transaction."""
    data = ReportData(dataset)
    options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c default_transaction_read_only=on"
    with psycopg.connect(dsn, row_factory=dict_row, options=options) as conn:
        data.rows = {
            "volumes": queries.volumes_per_day(conn),
            "long_tail": queries.long_tail(conn),
            "weekday_hour": queries.weekday_hour(conn),
            "basket_sizes": queries.basket_sizes(conn),
            "repeat_purchases": queries.repeat_purchases(conn),
            "price_distribution": queries.price_distribution(conn),
            "category_mix": queries.category_mix(conn),
            "quarantine_reasons": queries.quarantine_reasons(conn),
            "dbt_exclusions": queries.dbt_exclusions(conn, dataset),
        }
        data.totals = queries.totals(conn, data.rows["long_tail"])
    data.gx_runs = gx_results.last_runs(gx_docs_dir)
    data.rows["gx_results"] = gx_results.outcome_rows(data.gx_runs)
    return data


EMPTY = {
    "dbt_exclusions": "marts.data_quality_exclusions is built for the UCI data set only (no cleaning rules here).",
    "gx_results": "no stored Great Expectations results (validations run with a docs folder keep them).",
    "quarantine_reasons": "nothing was quarantined.",
}


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` as unicode escapes."""
    text = json.dumps(value, separators=(",", ":"), default=plain)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _inline_script(path: Path) -> str:
    """A vendored build as the body of an inline ``<script>`` (no ``</script`` can end it early)."""
    if not path.is_file():
        raise MissingScriptsError(
            f"{path} not found: the report inlines the vendored Vega builds; run ./recomart setup (npm ci"
            " of web_assets/package-lock.json)"
        )
    return path.read_text(encoding="utf-8").replace("</script", "<\\/script")


def _masked(dsn: str) -> str:
    """``dbname@host:port`` of the warehouse (no user, no password)."""
    params = conninfo_to_dict(dsn)
    return f"{params.get('dbname', '?')}@{params.get('host', 'localhost')}:{params.get('port', 5432)}"


def render_html(data: ReportData, *, warehouse: str, node_modules: Path = NODE_MODULES) -> str:
    """The report page of ``data``; raises :class:`MissingScriptsError` without the Vega builds."""
    plots = []
    for plot in PLOTS:
        rows = data.rows.get(plot.name) or []
        plots.append(
            {
                "name": plot.name,
                "title": plot.title,
                "caption": plot.caption,
                "spec": _script_json(plot.build(rows)) if rows else None,
                "empty": EMPTY.get(plot.name, "the warehouse has no rows for it yet (run the pipeline first)."),
            }
        )
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return environment.get_template(TEMPLATE).render(
        dataset=data.dataset,
        warehouse=warehouse,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        totals={name: _figure(value) for name, value in data.totals.items()},
        plots=plots,
        exclusions=data.rows.get("dbt_exclusions") or [],
        known_dirt=KNOWN_DIRT,
        gx_failures=[(run.label, failure) for run in data.gx_runs for failure in run.failures],
        **{name: _inline_script(node_modules / path) for name, path in SCRIPTS.items()},
    )


def _figure(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(plain(value))


def write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so a reader
    sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_report(s: Settings, path: Path, dsn: str | None = None) -> ReportData:
    """Collect the report of ``s``'s warehouse (or ``dsn``) and write it to ``path``; returns its data."""
    dsn = dsn or s.warehouse_url
    data = collect(dsn, s.dataset, s.gx_docs_dir)
    write_atomically(path, render_html(data, warehouse=_masked(dsn)))
    return data
