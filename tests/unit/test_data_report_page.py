"""The data report's page, GX result reading, atomic write and nightly day, without services (the
figures against SQL and the page in Chromium: tests/browser/test_data_report.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from recomart.data_report import gx_results
from recomart.data_report.charts import PLOTS
from recomart.data_report.render import SCRIPTS, MissingScriptsError, ReportData, render_html, write_atomically
from recomart.tasks.transform import report_day

HOSTILE = "</script><script>alert(1)</script>"


@pytest.fixture
def stub_scripts(tmp_path: Path) -> Path:
    """A node_modules folder whose Vega builds are stubs (one holds a ``</script`` to neutralise)."""
    for name, path in SCRIPTS.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(f"/* {name} */ var s = '</script>';")
    return tmp_path


def _data() -> ReportData:
    data = ReportData("uci")
    data.rows = {plot.name: [] for plot in PLOTS}
    data.rows["quarantine_reasons"] = [
        {"day": date(2010, 12, 13), "feed": "uci_orders", "reason": HOSTILE, "records": 3}
    ]
    data.rows["dbt_exclusions"] = [
        {
            "rule_order": 1,
            "rule_name": "missing_customer",
            "description": "x",
            "row_count": 5,
            "pct_of_source_rows": 50.0,
        },
        {"rule_order": 2, "rule_name": "kept", "description": "y", "row_count": 5, "pct_of_source_rows": 50.0},
    ]
    data.totals = {"interactions": 1234567}
    return data


def test_page_has_every_plot_in_order_with_data_inline_and_nothing_to_fetch(stub_scripts: Path) -> None:
    html = render_html(_data(), warehouse="db@host:5432", node_modules=stub_scripts)
    assert re.findall(r'<figure class="plot" id="plot-(\w+)"', html) == [p.name for p in PLOTS]
    specs = dict(re.findall(r'<script type="application/json" class="spec" data-plot="(\w+)">(.*?)</script>', html))
    assert set(specs) == {"quarantine_reasons", "dbt_exclusions"}
    assert json.loads(specs["quarantine_reasons"])["data"]["values"][0] == {
        "day": "2010-12-13",
        "feed": "uci_orders",
        "reason": HOSTILE,
        "records": 3,
    }
    assert HOSTILE not in html and "var s = '<\\/script>'" in html  # no data or script ends a <script> early
    assert html.count('<p class="empty">') == len(PLOTS) - 2
    assert "default-src 'none'" in html and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert 'data-figure="interactions">1,234,567<' in html
    assert 'class="dirt" data-rule="missing_customer"' in html and 'data-rule="kept"' in html


def test_every_plot_has_a_one_line_caption() -> None:
    assert len({p.name for p in PLOTS}) == len(PLOTS)
    for plot in PLOTS:
        assert plot.caption and "\n" not in plot.caption and len(plot.caption) <= 160, plot.name


def test_missing_vega_builds_say_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(MissingScriptsError, match="run ./recomart setup"):
        render_html(_data(), warehouse="db", node_modules=tmp_path)


def _result(folder: Path, suite: str, run_name: str, run_time: str, outcomes: list[tuple[bool, str]]) -> None:
    results = [
        {"success": ok, "expectation_config": {"type": "expect_x", "meta": {"name": f"e{i}", "severity": severity}}}
        for i, (ok, severity) in enumerate(outcomes)
    ]
    path = folder / "_gx" / "validations" / Path(*suite.split(".")) / run_name / run_time / "batch.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"suite_name": suite, "meta": {"run_id": {"run_name": run_name, "run_time": run_time}}, "results": results}
    path.write_text(json.dumps(result))


def test_gx_runs_group_suites_by_run_and_count_failures_by_severity(tmp_path: Path) -> None:
    early, late = "2026-12-01T06:00:00+00:00", "2026-12-02T06:00:00+00:00"
    _result(tmp_path, "raw.events", "raw-generated", early, [(True, "critical"), (False, "warning")])
    _result(tmp_path, "raw.users", "raw-generated", early, [(False, "critical")])
    _result(tmp_path, "marts.dim_products", "marts-generated", late, [(True, "critical"), (True, "warning")])
    (tmp_path / "_gx" / "validations" / "broken.json").write_text("{")
    runs = gx_results.last_runs(tmp_path)
    assert [(r.run_name, r.passed, r.failed_warning, r.failed_critical) for r in runs] == [
        ("raw-generated", 1, 1, 1),
        ("marts-generated", 2, 0, 0),
    ]
    assert runs[0].failures == [
        {"suite": "raw.events", "expectation": "e1", "severity": "warning"},
        {"suite": "raw.users", "expectation": "e0", "severity": "critical"},
    ]
    assert [r.run_name for r in gx_results.last_runs(tmp_path, limit=1)] == ["marts-generated"]
    rows = gx_results.outcome_rows(runs)
    assert len(rows) == 6 and sum(r["expectations"] for r in rows) == 5
    assert gx_results.last_runs(tmp_path / "nowhere") == []


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "2026-12-01.html"
    write_atomically(target, "old")
    write_atomically(target, "new")
    assert target.read_text() == "new" and [p.name for p in target.parent.iterdir()] == [target.name]


def test_report_day_is_the_logical_date_else_the_last_day_of_the_windows() -> None:
    windows = [
        (datetime(2026, 11, 28, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
        (datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    ]
    assert report_day(None, windows, dsn="unused") == date(2026, 11, 30)
    assert report_day(datetime(2026, 12, 1, 23, 30, tzinfo=UTC), windows, dsn="unused") == date(2026, 12, 1)
