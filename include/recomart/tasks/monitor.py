"""Task bodies of the ``monitor`` DAG: data drift, recommendation, model and serving health, the running
experiment, alerts.

Each ``check_*`` measures, writes its rows of ``ops.monitoring_metrics`` for run ``run_id`` and opens,
refreshes or resolves its ``ops.alerts`` (``recomart.monitoring.store.record_checks``); each returns a
small summary for the task log and XCom. ``report_alerts`` posts the run's changes to the webhook and
raises :class:`OpenAlerts` (its message: one line per alert) while unacknowledged alerts are open.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import psycopg

from recomart.config import Settings
from recomart.experiments.analysis import analyse, format_report
from recomart.experiments.frame import MartMissing, users_frame
from recomart.experiments.store import running_experiment
from recomart.monitoring import evaluate, reads, store
from recomart.monitoring.checks import Check
from recomart.monitoring.health import recommendation_health
from recomart.monitoring.webhook import post_alerts

log = logging.getLogger(__name__)


class OpenAlerts(RuntimeError):
    """Unacknowledged monitoring alerts are open; the message lists them, one per line."""


def _summary(name: str, checks: list[Check], outcome: store.RunOutcome, **extra: Any) -> dict[str, Any]:
    """The task's summary (XCom and log): statuses counted, the alert ids opened, breached again, resolved;
    each warn or alert is logged on its own line."""
    statuses = dict(Counter(check.status for check in checks))
    for check in checks:
        if check.status in ("warn", "alert"):
            log.warning("%s %s: %s", check.status.upper(), check.metric_key, check.what)
    return {
        "check": name,
        "metrics": len(checks),
        "statuses": statuses,
        "opened": [a["alert_id"] for a in outcome.opened],
        "breached": [a["alert_id"] for a in outcome.breached],
        "resolved": [a["alert_id"] for a in outcome.resolved],
        **extra,
    }


def check_data_drift(s: Settings, dsn: str, run_id: str) -> dict[str, Any]:
    """PSI of every key user and item feature: the latest window of the history marts vs the reference."""
    t, checks, keys, windows = s.monitoring, [], [], {}
    for entity in reads.DRIFT_FEATURES:
        found = reads.read_feature_windows(dsn, entity, t.drift_window_days, t.drift_reference_days)
        windows[entity] = {"reference_rows": len(found.reference), "current_rows": len(found.current)}
        if found.reference.empty:
            log.info("drift of %s features not measured: the history has no reference window yet", entity)
        checks += evaluate.drift_checks(found, t)
        keys += evaluate.drift_keys(entity)
    outcome = store.record_checks(dsn, run_id, checks, keys)
    return _summary("data_drift", checks, outcome, windows=windows)


def check_recommendation_health(s: Settings, dsn: str, run_id: str) -> dict[str, Any]:
    """Coverage, Gini, popularity bias, personalization, novelty, diversity and cold-start share of the
    live generation, against the previous measured generation."""
    generation_id, recs = reads.live_generation_rows(dsn)
    if generation_id is None:
        log.info("no live generation: recommendation health not measured")
        return {"check": "recommendation_health", "metrics": 0, "generation_id": None}
    catalogue, category = reads.read_catalogue(dsn)
    health = recommendation_health(
        recs, catalogue, reads.read_popularity(dsn), category, sample=s.monitoring.health_sample_users, seed=s.seed
    )
    checks = evaluate.reco_checks(generation_id, health, reads.read_previous_health(dsn, generation_id), s.monitoring)
    outcome = store.record_checks(dsn, run_id, checks, evaluate.RECO_KEYS)
    log.info("generation %s health: %s", generation_id, {k: round(v, 4) for k, v in health.items()})
    return _summary("recommendation_health", checks, outcome, generation_id=generation_id, health=health)


def check_model_health(s: Settings, dsn: str, run_id: str) -> dict[str, Any]:
    """The held-out metrics of every version in ``ops.model_promotions`` and the champion's lift over popularity."""
    checks = evaluate.model_checks(reads.read_promotions(dsn, s.model_name), s.gate_metric, s.monitoring)
    outcome = store.record_checks(dsn, run_id, checks, ["model.lift_over_popularity"])
    return _summary("model_health", checks, outcome)


def check_serving_health(s: Settings, dsn: str, run_id: str) -> dict[str, Any]:
    """Latency, error rate and fallback share of the API's last minutes (``ops.serving_stats``)."""
    window = reads.read_serving_window(dsn, s.monitoring.serving_window_minutes)
    if window is None:
        log.info(
            "no API traffic in the last %s minutes: serving health not measured", s.monitoring.serving_window_minutes
        )
    checks = evaluate.serving_checks(window, s.monitoring)
    outcome = store.record_checks(dsn, run_id, checks, evaluate.SERVING_KEYS)
    return _summary("serving_health", checks, outcome, window=window)


def check_experiments(s: Settings, dsn: str, run_id: str) -> dict[str, Any]:
    """The running experiment's analysis, as ``./recomart experiment report`` computes it (per variant
    conversion, lift over control with CUPED and the sequential decision); alerts on a sample-ratio mismatch."""
    with psycopg.connect(dsn) as conn:
        experiment = running_experiment(conn, datetime.now(UTC))
        if experiment is None:
            log.info("no running experiment: nothing to analyse")
            return {"check": "experiments", "metrics": 0, "experiment": None}
        try:
            frame = users_frame(conn, experiment)
        except MartMissing as missing:
            log.info("experiment %s not analysed: %s", experiment.name, missing)
            return {"check": "experiments", "metrics": 0, "experiment": experiment.name}
    if frame.empty:
        log.info("experiment %s has no exposed users in marts.fct_experiment_users yet", experiment.name)
        return {"check": "experiments", "metrics": 0, "experiment": experiment.name}
    result = analyse(frame, control=experiment.control, shares=experiment.shares)
    log.info("experiment %s:\n%s", experiment.name, format_report(result))
    checks = evaluate.experiment_checks(experiment.name, result.as_dict())
    outcome = store.record_checks(dsn, run_id, checks, evaluate.EXPERIMENT_KEYS)
    return _summary("experiments", checks, outcome, experiment=experiment.name)


def report_alerts(s: Settings, dsn: str, run_id: str) -> dict[str, Any]:
    """Post the alerts this run opened or resolved to ``RECOMART_ALERT_WEBHOOK`` (when set), then raise
    :class:`OpenAlerts` if unacknowledged alerts are open (the DAG's failure callback logs the list)."""
    outcome = store.run_changes(dsn, run_id)
    problem = post_alerts(s.alert_webhook, run_id, outcome) if s.alert_webhook else None
    if problem:
        log.warning(problem)
    still_open = store.list_alerts(dsn, ("open",))
    summary = {
        "opened": len(outcome.opened),
        "resolved": len(outcome.resolved),
        "open": len(still_open),
        "webhook": "not set" if not s.alert_webhook else problem or "posted",
    }
    if still_open:
        lines = "\n".join(store.summary_line(a) for a in still_open)
        raise OpenAlerts(
            f"{len(still_open)} monitoring alerts open (./recomart alerts ack ID to acknowledge):\n{lines}"
        )
    return summary
