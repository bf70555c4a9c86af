"""The data report: one self-contained HTML file of plots about the warehouse's data.

``./recomart report --html PATH`` writes it; the ``transform`` DAG writes it nightly to
``.state/reports/<logical date>.html`` and logs it to MLflow.  Volumes per feed, the long tail,
activity by weekday and hour, baskets and repeat purchases, prices, the category mix, quarantine
reasons, the rows each dbt cleaning rule excluded and the last Great Expectations runs; every figure
is a set-based aggregate in Postgres (:mod:`recomart.data_report.queries`).  Not the main job's
closing report in the terminal (:mod:`recomart.report`).
"""

from recomart.data_report.render import MissingScriptsError, ReportData, write_report

__all__ = ["MissingScriptsError", "ReportData", "write_report"]
