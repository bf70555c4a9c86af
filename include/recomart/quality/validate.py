"""Run the Great Expectations suites of :mod:`recomart.quality.expectations` against Postgres.

:func:`validate_raw` (after an ingest) and :func:`validate_marts` (after ``dbt build``) validate
each table through GX's SQL datasource: the expectations become SQL run inside Postgres, so no
table is pulled into pandas.  They return a :class:`ValidationSummary` (one
:class:`ExpectationOutcome` per expectation: name, severity, success, sample unexpected values)
and raise :class:`DataQualityError` when a ``critical`` expectation fails; failed warnings are
logged and returned.

With ``docs_dir`` the suites and results are kept under ``docs_dir/_gx`` and GX Data Docs are
built into ``docs_dir`` (``index.html``), rendering offline (:mod:`recomart.quality.docs_assets`);
the last :data:`KEEP_RESULTS` results of each suite are kept.  The GX context itself is ephemeral:
the warehouse DSN is never written to disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import great_expectations as gx
import psycopg
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

from recomart.errors import BadInputError
from recomart.quality import watermarks
from recomart.quality.docs_assets import localise_docs
from recomart.quality.expectations import (
    CRITICAL,
    SAMPLE_SIZE,
    WARNING,
    SuiteSpec,
    expectation_name,
    expectation_severity,
    mart_suites,
    raw_suites,
    raw_table_names,
)

log = logging.getLogger(__name__)

DATASOURCE = "recomart_warehouse"
DOCS_SITE = "recomart"
KEEP_RESULTS = 30  # validation results kept per suite in the Data Docs store


class DataQualityError(BadInputError, RuntimeError):
    """A critical expectation failed; ``summary`` holds every outcome of the run."""

    def __init__(self, summary: ValidationSummary):
        self.summary = summary
        super().__init__(summary.failure_message())


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation of one suite."""

    suite: str
    name: str
    severity: str
    success: bool
    expectation_type: str
    column: str | None = None
    observed_value: Any = None
    unexpected_count: int | None = None
    sample: list = field(default_factory=list)  # a few unexpected values / rows
    error: str | None = None

    def describe(self) -> str:
        parts = []
        if self.error:
            parts.append(f"error: {self.error}")
        if self.unexpected_count is not None:
            parts.append(f"{self.unexpected_count} unexpected")
        elif self.observed_value is not None:
            parts.append(f"observed {self.observed_value!r}")
        if self.sample:
            parts.append(f"sample {self.sample!r}")
        return f"{self.name} ({'; '.join(parts) or 'failed'})"


@dataclass
class ValidationSummary:
    """Every expectation outcome of one :func:`validate_raw` / :func:`validate_marts` run."""

    scope: str  # "raw" or "marts"
    dataset: str
    outcomes: list[ExpectationOutcome]
    logical_date: date | None = None
    docs_index: str | None = None
    seconds: float = 0.0
    suite_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == CRITICAL]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        """Failed warning-level expectations."""
        return [o for o in self.outcomes if not o.success and o.severity == WARNING]

    @property
    def success(self) -> bool:
        """True when no critical expectation failed (warnings allowed)."""
        return not self.critical_failures

    def outcome(self, suite: str, name: str) -> ExpectationOutcome:
        for o in self.outcomes:
            if o.suite == suite and o.name == name:
                return o
        raise KeyError(f"no expectation {name!r} in suite {suite!r}")

    def failed(self, severity: str | None = None) -> set[tuple[str, str]]:
        """``(suite, name)`` of the failed expectations (of ``severity`` if given)."""
        return {
            (o.suite, o.name) for o in self.outcomes if not o.success and (severity is None or o.severity == severity)
        }

    def failure_message(self) -> str:
        lines = [
            f"data quality: critical expectations failed ({self.scope}, data set {self.dataset}"
            + (f", logical date {self.logical_date}" if self.logical_date else "")
            + ")"
        ]
        for suite in dict.fromkeys(o.suite for o in self.critical_failures):
            failures = [o.describe() for o in self.critical_failures if o.suite == suite]
            lines.append(f"  suite {suite}: " + "; ".join(failures))
        if self.docs_index:
            lines.append(f"  Data Docs: {self.docs_index}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-safe digest (for XCom / asset-event ``extra``): counts and the failed expectations."""
        return {
            "scope": self.scope,
            "dataset": self.dataset,
            "logical_date": self.logical_date.isoformat() if self.logical_date else None,
            "success": self.success,
            "expectations": len(self.outcomes),
            "critical_failures": [asdict(o) for o in self.critical_failures],
            "warnings": [asdict(o) for o in self.warnings],
            "docs_index": self.docs_index,
            "seconds": round(self.seconds, 2),
        }


# --- public entry points --------------------------------------------------------------------
def validate_raw(
    dsn: str,
    dataset: str,
    *,
    docs_dir: Path | None = None,
    logical_date: date | None = None,
    tables: Sequence[str] | None = None,
) -> ValidationSummary:
    """Validate the raw tables of ``dataset`` (``generated``: events, users, products; ``uci``: uci_orders).

    ``logical_date`` restricts the daily-partitioned tables to that ``_logical_date`` (and its
    ledger entry); ``tables`` picks a subset, e.g. ``["products"]`` after the catalogue ingest.
    Raises :class:`DataQualityError` on a critical failure.
    """
    names = list(tables) if tables is not None else raw_table_names(dataset)
    existing = _existing_tables(dsn, [f"raw.{t}" for t in [*names, "products", "users"]])
    suites = raw_suites(dataset, logical_date=logical_date, tables=names, existing=existing)
    return _validate("raw", dataset, dsn, suites, docs_dir, logical_date, existing)


def validate_marts(
    dsn: str,
    dataset: str,
    *,
    docs_dir: Path | None = None,
    tables: Sequence[str] | None = None,
    every_row: bool = False,
) -> ValidationSummary:
    """Validate ``marts.user_item_ratings``, ``user_features``, ``item_features`` and ``dim_products``
    (or the subset ``tables``).  Raises :class:`DataQualityError` on a critical failure.

    The ratings are read from the pairs loaded after those of the last run that passed
    (:mod:`recomart.quality.watermarks`), unless ``every_row`` (after a full refresh) or there is no
    such run; a run that passes moves that mark to the table's latest load.
    """
    with psycopg.connect(dsn) as conn:
        loaded = watermarks.latest_load(conn, watermarks.RATINGS_TABLE)
        since = None if every_row or loaded is None else watermarks.validated_until(conn, watermarks.RATINGS_TABLE)
    suites = mart_suites(dataset, tables=tables, ratings_newer_than=since)
    existing = _existing_tables(dsn, [s.qualified_table for s in suites])
    summary = _validate("marts", dataset, dsn, suites, docs_dir, None, existing)
    if loaded is not None and any(s.qualified_table == watermarks.RATINGS_TABLE for s in suites):
        with psycopg.connect(dsn) as conn:
            watermarks.record_validated(conn, watermarks.RATINGS_TABLE, loaded)
    return summary


# --- running --------------------------------------------------------------------------------
def _validate(
    scope: str,
    dataset: str,
    dsn: str,
    suites: list[SuiteSpec],
    docs_dir: Path | None,
    logical_date: date | None,
    existing: set[str],
) -> ValidationSummary:
    started = time.monotonic()
    present = [s for s in suites if s.qualified_table in existing]
    outcomes = [_missing_table(s) for s in suites if s.qualified_table not in existing]
    suite_seconds: dict[str, float] = {}
    docs_index = None
    with _docs_lock(docs_dir):
        context = _context(docs_dir)
        if docs_dir is not None:
            _prune_results(context, Path(docs_dir), keep=KEEP_RESULTS - 1)
        run_id = RunIdentifier(run_name=f"{scope}-{dataset}", run_time=datetime.now(UTC))
        datasource = context.data_sources.add_postgres(DATASOURCE, connection_string=sqlalchemy_url(dsn))
        result_ids: list = []
        try:
            for spec in present:
                t0 = time.monotonic()
                result = _run_suite(context, datasource, spec, run_id)
                suite_seconds[spec.name] = round(time.monotonic() - t0, 3)
                outcomes.extend(_outcomes(spec.name, result))
                result_ids += [
                    ValidationResultIdentifier(
                        expectation_suite_identifier=ExpectationSuiteIdentifier(name=spec.name),
                        run_id=run_id,
                        batch_identifier=result.batch_id,
                    ),
                    ExpectationSuiteIdentifier(name=spec.name),
                ]
        finally:
            _dispose(datasource)
        if docs_dir is not None:
            docs_index = _build_docs(context, Path(docs_dir), result_ids)
    summary = ValidationSummary(
        scope, dataset, outcomes, logical_date, docs_index, time.monotonic() - started, suite_seconds
    )
    _log(summary)
    if not summary.success:
        raise DataQualityError(summary)
    return summary


def _run_suite(context, datasource, spec: SuiteSpec, run_id: RunIdentifier):
    asset_name = spec.name.replace(".", "_")
    if spec.whole_table:
        asset = datasource.add_table_asset(asset_name, table_name=spec.table, schema_name=spec.schema)
    else:
        # One logical date, served by the raw tables' _logical_date index, or the rows loaded since a
        # mark, by the ratings' loaded_at index.  (GX's column-value partitioner binds dates as varchar,
        # and its daily partitioner scans the whole table.)
        asset = datasource.add_query_asset(
            asset_name, query=f"select * from {spec.qualified_table} where {spec.partition_filter}"
        )
    batch_definition = asset.add_batch_definition_whole_table("batch")
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=spec.name, expectations=list(spec.expectations)))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=spec.name, data=batch_definition, suite=suite)
    )
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
    return definition.run(result_format=result_format, run_id=run_id)


def _outcomes(suite: str, result) -> list[ExpectationOutcome]:
    out = []
    for r in result.results:
        config = r.expectation_config
        details = r.result or {}
        error = _exception_message(r.exception_info)
        out.append(
            ExpectationOutcome(
                suite=suite,
                name=expectation_name(config),
                severity=expectation_severity(config),
                success=bool(r.success),
                expectation_type=config.type,
                column=config.kwargs.get("column"),
                observed_value=_jsonable(details.get("observed_value")),
                unexpected_count=details.get("unexpected_count"),
                sample=[] if r.success else _sample(details),
                error=error,
            )
        )
    return out


def _exception_message(info: dict | None) -> str | None:
    """The first exception message of a result's ``exception_info`` (flat, or keyed by metric)."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info or "exception_message" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and (entry.get("raised_exception") or entry.get("exception_message")):
            message = str(entry.get("exception_message") or "exception")
            return message.splitlines()[0][:500]
    return None


def _sample(details: dict) -> list:
    rows = (details.get("details") or {}).get("sample_unexpected_rows")
    if rows is None:
        rows = details.get("partial_unexpected_list") or []
    return [_jsonable(v) for v in list(rows)[:SAMPLE_SIZE]]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _missing_table(spec: SuiteSpec) -> ExpectationOutcome:
    return ExpectationOutcome(
        suite=spec.name,
        name="table_exists",
        severity=CRITICAL,
        success=False,
        expectation_type="table_exists",
        error=f"table {spec.qualified_table} does not exist",
    )


def _log(summary: ValidationSummary) -> None:
    for o in summary.warnings:
        log.warning("data quality warning: suite %s: %s", o.suite, o.describe())
    for o in summary.critical_failures:
        log.error("data quality CRITICAL: suite %s: %s", o.suite, o.describe())
    log.info(
        "data quality %s (%s%s): %d expectations, %d critical failures, %d warnings in %.1fs %s%s",
        summary.scope,
        summary.dataset,
        f" {summary.logical_date}" if summary.logical_date else "",
        len(summary.outcomes),
        len(summary.critical_failures),
        len(summary.warnings),
        summary.seconds,
        summary.suite_seconds,
        f"; Data Docs {summary.docs_index}" if summary.docs_index else "",
    )


# --- Postgres helpers -----------------------------------------------------------------------
def sqlalchemy_url(dsn: str) -> str:
    """The SQLAlchemy URL (psycopg 3 driver) of a libpq DSN (URL or ``key=value`` form)."""
    params = conninfo_to_dict(dsn)
    known = {k: params.pop(k, None) for k in ("user", "password", "host", "port", "dbname")}
    url = URL.create(
        "postgresql+psycopg",
        username=known["user"],
        password=known["password"],
        host=known["host"],
        port=int(known["port"]) if known["port"] else None,
        database=known["dbname"],
        query={k: str(v) for k, v in params.items()},
    )
    return url.render_as_string(hide_password=False)


def _existing_tables(dsn: str, names: Iterable[str]) -> set[str]:
    """The ``schema.table`` names of ``names`` that exist."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select n from unnest(%s::text[]) as n where to_regclass(n) is not null", (sorted(set(names)),)
        ).fetchall()
    return {r[0] for r in rows}


def _dispose(datasource) -> None:
    with contextlib.suppress(Exception):
        datasource.get_engine().dispose()


# --- GX context and Data Docs ---------------------------------------------------------------
def _context(docs_dir: Path | None):
    """An ephemeral GX context; with ``docs_dir``, suites and results on disk and a Data Docs site."""
    defaults = InMemoryStoreBackendDefaults()
    sites: dict = {}
    if docs_dir is not None:
        store_root = str(Path(docs_dir).resolve() / "_gx")
        for store, base in (("expectations_store", "expectations/"), ("validation_results_store", "validations/")):
            defaults.stores[store]["store_backend"] = {
                "class_name": "TupleFilesystemStoreBackend",
                "root_directory": store_root,
                "base_directory": base,
            }
        sites[DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(docs_dir).resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=defaults,
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


@contextlib.contextmanager
def _docs_lock(docs_dir: Path | None) -> Iterator[None]:
    """Serialise runs that share ``docs_dir`` (several Airflow tasks may validate at once)."""
    if docs_dir is None:
        yield
        return
    Path(docs_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(docs_dir) / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_docs(context, docs_dir: Path, resource_ids: list) -> str:
    """Build the Data Docs site and point its pages at local copies of their scripts and styles."""
    context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=resource_ids or None)
    localise_docs(docs_dir)
    return str(Path(docs_dir).resolve() / "index.html")


def _prune_results(context, docs_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` stored results (and their HTML pages) of each suite."""
    store = context.validation_results_store
    by_suite: dict[str, list] = {}
    for key in store.list_keys():
        by_suite.setdefault(key.expectation_suite_identifier.name, []).append(key)
    for keys in by_suite.values():
        keys.sort(key=lambda k: k.run_id.run_time or datetime.min.replace(tzinfo=UTC), reverse=True)
        for key in keys[keep:]:
            store.remove_key(key)
            parts = key.to_tuple()
            page = Path(docs_dir, "validations", *parts[:-1], f"{parts[-1]}.html")
            page.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                shutil.rmtree(page.parent) if not any(page.parent.iterdir()) else None
