"""Measured values -> :class:`~recomart.monitoring.checks.Check` rows, against the thresholds of
:class:`recomart.config.MonitoringSettings`. Pure: the task bodies read and write around it."""

from __future__ import annotations

import math
from typing import Any

from recomart.config import MonitoringSettings
from recomart.monitoring.checks import Check, at_least, below, info
from recomart.monitoring.drift import feature_psi
from recomart.monitoring.reads import DRIFT_FEATURES, FeatureWindows

RECO_METRICS = (
    "users",
    "coverage",
    "exposure_gini",
    "avg_rec_popularity",
    "personalization",
    "novelty",
    "intra_list_diversity",
    "cold_start_share",
)
SERVING_METRICS = ("requests", "p95_ms", "error_rate", "fallback_share")


def drift_keys(entity: str) -> list[str]:
    return [f"drift.{entity}.psi"]


def drift_checks(windows: FeatureWindows, t: MonitoringSettings) -> list[Check]:
    """PSI of each key feature of ``windows.entity``: latest window against the reference (no rows when
    either window is empty: a history mart with one as-of day has no reference yet)."""
    if windows.reference.empty or windows.current.empty:
        return []
    key = drift_keys(windows.entity)[0]
    span = {
        "reference": [windows.reference_start, windows.current_start],
        "current": [windows.current_start, windows.current_end],
        "reference_rows": len(windows.reference),
        "current_rows": len(windows.current),
    }
    checks = []
    for kind, names in DRIFT_FEATURES[windows.entity].items():
        for name in names:
            psi = feature_psi(windows.reference[name], windows.current[name])
            what = (
                f"{windows.entity} feature {name} ({kind}) drifted: PSI {psi:.3f} of the latest window vs the reference"
            )
            checks.append(at_least(key, name, psi, t.psi_warn, t.psi_alert, what, scope=name, details=span))
    return checks


def _relative(value: float, previous: float | None) -> float | None:
    if previous is None or previous == 0 or math.isnan(previous) or math.isnan(value):
        return None
    return value / previous


def reco_checks(
    generation_id: int, health: dict[str, float], previous: tuple[int | None, dict[str, float]], t: MonitoringSettings
) -> list[Check]:
    """The generation's health metrics (``reco.<name>``, each with the previous measured generation's
    value) and the alerting ones: a coverage collapse against the previous generation, personalization
    below its floor, a jump of the cold-start share."""
    prev_id, prev = previous
    subject = str(generation_id)
    checks = []
    for name in RECO_METRICS:
        value = health.get(name, float("nan"))
        what = f"generation {generation_id}: {name} {value:.4g} (generation {prev_id}: {prev.get(name)})"
        details = {"previous_generation": prev_id, "previous": prev.get(name)}
        checks.append(info(f"reco.{name}", subject, value, what, details=details))
    value = health.get("personalization", float("nan"))
    what = f"generation {generation_id}: lists too alike, personalization {value:.3f} (1 - mean top-10 overlap)"
    checks.append(below("reco.personalization_floor", subject, value, t.personalization_min, what))
    ratio = _relative(health.get("coverage", float("nan")), prev.get("coverage"))
    if ratio is not None:
        what = f"generation {generation_id}: catalogue coverage fell to {ratio:.0%} of generation {prev_id}'s"
        checks.append(below("reco.coverage_ratio", subject, ratio, 1 - t.coverage_drop, what))
    if prev.get("cold_start_share") is not None:
        rise = health.get("cold_start_share", 0.0) - prev["cold_start_share"]
        what = f"generation {generation_id}: cold-start share rose by {rise:+.3f} against generation {prev_id}"
        checks.append(at_least("reco.cold_start_rise", subject, rise, None, t.cold_start_rise, what))
    return checks


RECO_KEYS = [f"reco.{n}" for n in RECO_METRICS] + [
    "reco.coverage_ratio",
    "reco.personalization_floor",
    "reco.cold_start_rise",
]


def model_checks(promotions: list[dict[str, Any]], gate_metric: str, t: MonitoringSettings) -> list[Check]:
    """The held-out metrics of every version (``model.<metric>``, subject the version: the history) and
    the last promoted version's lift over popularity on the gate metric (alert below the minimum)."""
    checks = []
    for row in promotions:
        for metric, value in (row["metrics"].get("model") or {}).items():
            if isinstance(value, int | float):
                what = f"model v{row['version']} ({row['decision']}): held-out {metric} {value:.4g}"
                checks.append(
                    info(
                        f"model.{metric}",
                        str(row["version"]),
                        float(value),
                        what,
                        details={"decision": row["decision"]},
                    )
                )
    promoted = [row for row in promotions if row["decision"] == "promoted"]
    if promoted:
        last = promoted[-1]
        model = float((last["metrics"].get("model") or {}).get(gate_metric, float("nan")))
        popularity = float((last["metrics"].get("popularity") or {}).get(gate_metric, float("nan")))
        lift = model / popularity if popularity and not math.isnan(popularity) else float("nan")
        what = (
            f"champion v{last['version']}: held-out {gate_metric} {model:.4g}"
            f" is {lift:.3g}x popularity's {popularity:.4g}"
        )
        checks.append(below("model.lift_over_popularity", str(last["version"]), lift, t.model_min_lift, what))
    return checks


def serving_checks(window: dict[str, float] | None, t: MonitoringSettings) -> list[Check]:
    """The API's last ``serving_window_minutes`` (``ops.serving_stats``): p95, error rate, fallback share."""
    if window is None:
        return []
    minutes = t.serving_window_minutes
    return [
        info(
            "serving.requests", "", window["requests"], f"{window['requests']:.0f} requests in the last {minutes} min"
        ),
        at_least(
            "serving.p95_ms",
            "",
            window["p95_ms"],
            None,
            t.serving_p95_ms,
            f"API p95 latency {window['p95_ms']:.1f} ms (worst minute of the last {minutes} min)",
        ),
        at_least(
            "serving.error_rate",
            "",
            window["error_rate"],
            None,
            t.serving_error_rate,
            f"API error rate {window['error_rate']:.2%} over the last {minutes} min",
        ),
        at_least(
            "serving.fallback_share",
            "",
            window["fallback_share"],
            None,
            t.serving_fallback_share,
            f"{window['fallback_share']:.0%} of list reads came from the Postgres fallback (Redis failing or lagging)",
        ),
    ]


SERVING_KEYS = [f"serving.{n}" for n in SERVING_METRICS]


EXPERIMENT_KEYS = [
    "experiment.srm_p",
    "experiment.conversion",
    "experiment.relative_lift",
    "experiment.cuped_variance_reduction",
]


def experiment_checks(name: str, result: dict[str, Any]) -> list[Check]:
    """Rows of one experiment's analysis (``ExperimentResult.as_dict()``): the SRM check, which alerts
    below p = 0.001, and per variant its conversion and its relative lift over control (with the CUPED
    difference and the sequential decision in ``details``), kept as history."""
    srm = result["srm"]
    checks = [
        below(
            "experiment.srm_p", name, srm["p_value"], srm["threshold"],
            f"experiment {name}: sample-ratio mismatch p = {srm['p_value']:.3g} (users per variant vs planned shares)",
            scope=name,
        ),
        info(
            "experiment.cuped_variance_reduction", name, result["cuped"]["variance_reduction"],
            f"experiment {name}: CUPED variance reduction",
        ),
    ]  # fmt: skip
    for variant in result["variants"]:
        conversion = variant["conversion"]
        checks.append(
            info(
                "experiment.conversion", f"{name}:{variant['variant']}", conversion["estimate"],
                f"experiment {name}, {variant['variant']}: conversion of {variant['users']} users",
                details={"users": variant["users"], "lower": conversion["lower"], "upper": conversion["upper"]},
            )
        )  # fmt: skip
    for comparison in result["comparisons"]:
        lift = comparison["relative_difference"]
        checks.append(
            info(
                "experiment.relative_lift", f"{name}:{comparison['variant']}", lift["estimate"],
                f"experiment {name}, {comparison['variant']} vs {result['control']}: {comparison['decision']}",
                details={
                    "lower": lift["lower"], "upper": lift["upper"], "cuped": comparison["cuped_difference"],
                    "sequential": comparison["sequential"], "decision": comparison["decision"],
                },
            )
        )  # fmt: skip
    return checks
