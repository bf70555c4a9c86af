"""Vega-Lite specs of the dashboard's charts (drawn in the browser by the vendored Vega).

Each function takes rows as :mod:`recomart.dashboard.queries` returns them and returns a spec dict
with its data inline (``values``), so a page needs no further request to draw its charts.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

Spec = dict[str, Any]
WIDTH = "container"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _values(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: _plain(value) for key, value in row.items()} for row in rows]


def _spec(title: str, values: list[dict[str, Any]], **rest: Any) -> Spec:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",  # an identifier: never fetched
        "title": title,
        "width": WIDTH,
        "height": 180,
        "data": {"values": values},
        **rest,
    }


def loads_per_day(rows: list[dict[str, Any]]) -> Spec:
    """Records loaded per logical date, one colour per feed."""
    return _spec(
        "Records loaded per day",
        _values(rows),
        mark={"type": "bar"},
        encoding={
            "x": {"field": "logical_date", "type": "temporal", "timeUnit": "utcyearmonthdate", "title": "day"},
            "y": {"field": "records_loaded", "type": "quantitative", "aggregate": "sum", "title": "records"},
            "color": {"field": "feed", "type": "nominal"},
            "tooltip": [{"field": "feed"}, {"field": "logical_date"}, {"field": "records_loaded"}],
        },
    )


def quarantine_per_day(rows: list[dict[str, Any]]) -> Spec:
    """Quarantined records per day, stacked by reason."""
    return _spec(
        "Quarantined records per day, by reason",
        _values(rows),
        mark={"type": "bar"},
        encoding={
            "x": {"field": "day", "type": "temporal", "timeUnit": "utcyearmonthdate", "title": "day"},
            "y": {"field": "records", "type": "quantitative", "aggregate": "sum", "title": "records"},
            "color": {"field": "reason", "type": "nominal"},
            "tooltip": [{"field": "day"}, {"field": "reason"}, {"field": "records"}],
        },
    )


def stream_rate(rows: list[dict[str, Any]]) -> Spec:
    """Stream events loaded per minute over the last hour."""
    return _spec(
        "Stream events loaded per minute (last hour)",
        _values(rows),
        mark={"type": "bar"},
        encoding={
            "x": {"field": "minute", "type": "temporal", "title": "minute (UTC)", "scale": {"type": "utc"}},
            "y": {"field": "events", "type": "quantitative", "title": "events"},
        },
    )


def popularity(rows: list[dict[str, Any]]) -> Spec:
    """The item's interactions per day, one line per event type."""
    return _spec(
        "Popularity over time: interactions per day",
        _values(rows),
        mark={"type": "line", "point": True},
        encoding={
            "x": {"field": "day", "type": "temporal", "title": "day"},
            "y": {"field": "events", "type": "quantitative", "title": "interactions"},
            "color": {"field": "event_type", "type": "nominal"},
            "tooltip": [{"field": "day"}, {"field": "event_type"}, {"field": "events"}],
        },
    )


def metrics_over_versions(rows: list[dict[str, Any]]) -> Spec:
    """Held-out metrics per version, the model against popularity (rows: version, metric, series, value)."""
    return _spec(
        "Held-out test metrics per version",
        rows,
        mark={"type": "line", "point": True},
        encoding={
            "x": {"field": "version", "type": "ordinal", "sort": None, "title": "model version"},
            "y": {"field": "value", "type": "quantitative", "title": None},
            "color": {"field": "series", "type": "nominal"},
            "column": {"field": "metric", "type": "nominal", "title": None},
            "tooltip": [{"field": "version"}, {"field": "metric"}, {"field": "series"}, {"field": "value"}],
        },
        width=220,
        resolve={"scale": {"y": "independent"}},
    )


def blend_weights(rows: list[dict[str, Any]]) -> Spec:
    """The blend's weight per component, stacked per version (rows: version, component, weight)."""
    return _spec(
        "Blend weights per version",
        rows,
        mark={"type": "bar"},
        encoding={
            "x": {"field": "version", "type": "ordinal", "sort": None, "title": "model version"},
            "y": {"field": "weight", "type": "quantitative", "stack": "normalize", "title": "share of the blend"},
            "color": {"field": "component", "type": "nominal"},
            "tooltip": [{"field": "version"}, {"field": "component"}, {"field": "weight"}],
        },
    )


def at_k_curves(rows: list[dict[str, Any]]) -> Spec:
    """The champion's metrics at each cut-off K (rows: k, metric, series, value)."""
    return _spec(
        "Champion's metrics at K",
        rows,
        mark={"type": "line", "point": True},
        encoding={
            "x": {"field": "k", "type": "quantitative", "title": "K"},
            "y": {"field": "value", "type": "quantitative", "title": None},
            "color": {"field": "series", "type": "nominal"},
            "column": {"field": "metric", "type": "nominal", "title": None},
        },
        width=220,
        resolve={"scale": {"y": "independent"}},
    )


THRESHOLD_COLOURS = {"warn": "#d18f00", "alert": "#b3261e", "p95 alert": "#b3261e"}


def _threshold_rules(thresholds: dict[str, float | None]) -> list[Spec]:
    """Layers drawing each named threshold (``{"warn": 0.1, "alert": 0.2}``) as a dashed rule with its label."""
    layers = []
    for name, value in thresholds.items():
        if value is None:
            continue
        datum = {"y": {"datum": value, "type": "quantitative"}}
        colour = THRESHOLD_COLOURS.get(name, "#555")
        layers.append({"mark": {"type": "rule", "strokeDash": [6, 4], "color": colour}, "encoding": datum})
        layers.append(
            {
                "mark": {
                    "type": "text",
                    "align": "left",
                    "baseline": "bottom",
                    "x": 4,
                    "color": colour,
                    "fontSize": 10,
                },
                "encoding": {**datum, "text": {"value": f"{name} {value:g}"}},
            }
        )
    return layers


def psi_over_time(entity: str, rows: list[dict[str, Any]], thresholds: dict[str, float | None]) -> Spec:
    """PSI of each of ``entity``'s features per monitor run, with the warn and alert thresholds drawn."""
    line = {
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {
                "field": "measured_at",
                "type": "temporal",
                "title": "monitor run",
                "axis": {"format": "%b %d %H:%M"},
            },
            "y": {"field": "value", "type": "quantitative", "title": "PSI"},
            "color": {"field": "feature", "type": "nominal"},
            "tooltip": [{"field": "feature"}, {"field": "run_id"}, {"field": "value"}, {"field": "status"}],
        },
    }
    return _spec(
        f"PSI of the {entity} features per monitor run",
        _values(rows),
        layer=[line, *_threshold_rules(thresholds)],
    )


def health_per_generation(rows: list[dict[str, Any]]) -> Spec:
    """One small chart per recommendation-health metric, its value per generation (rows: generation_id,
    metric, value)."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Recommendation health per generation",
        "data": {"values": _values(rows)},
        "facet": {"field": "metric", "type": "nominal", "title": None},
        "columns": 3,
        "spec": {
            "width": 260,
            "height": 120,
            "mark": {"type": "line", "point": True},
            "encoding": {
                "x": {"field": "generation_id", "type": "ordinal", "title": "generation"},
                "y": {"field": "value", "type": "quantitative", "title": None, "scale": {"zero": False}},
                "tooltip": [{"field": "generation_id"}, {"field": "metric"}, {"field": "value"}],
            },
        },
        "resolve": {"scale": {"y": "independent"}},
    }


def latency_percentiles(rows: list[dict[str, Any]], p95_alert_ms: float) -> Spec:
    """The worst p50, p95 and p99 per minute (rows: minute, p50, p95, p99), with the p95 alert threshold."""
    line = {
        "transform": [{"fold": ["p50", "p95", "p99"], "as": ["percentile", "ms"]}],
        "mark": {"type": "line", "point": {"size": 12}},
        "encoding": {
            "x": {
                "field": "minute",
                "type": "temporal",
                "title": "minute (UTC)",
                "scale": {"type": "utc"},
                "axis": {"format": "%H:%M"},
            },
            "y": {"field": "ms", "type": "quantitative", "title": "latency (ms)"},
            "strokeDash": {"field": "percentile", "type": "nominal"},
            "tooltip": [{"field": "minute"}, {"field": "percentile"}, {"field": "ms"}],
        },
    }
    return _spec(
        "API latency per minute: worst route and worker",
        _values(rows),
        layer=[line, *_threshold_rules({"p95 alert": p95_alert_ms})],
    )


def conversion_per_variant(rows: list[dict[str, Any]]) -> Spec:
    """Each variant's conversion with its interval (rows: variant, estimate, lower, upper)."""
    encoding = {"y": {"field": "variant", "type": "nominal", "sort": None, "title": None}}
    return _spec(
        "Conversion per variant (Wilson interval)",
        rows,
        height={"step": 28},
        layer=[
            {
                "mark": {"type": "rule", "strokeWidth": 2},
                "encoding": {
                    **encoding,
                    "x": {"field": "lower", "type": "quantitative", "title": "conversion", "axis": {"format": "%"}},
                    "x2": {"field": "upper"},
                },
            },
            {
                "mark": {"type": "point", "filled": True, "size": 60},
                "encoding": {
                    **encoding,
                    "x": {"field": "estimate", "type": "quantitative"},
                    "tooltip": [{"field": "variant"}, {"field": "estimate"}, {"field": "lower"}, {"field": "upper"}],
                },
            },
        ],
    )


def estimate_over_days(rows: list[dict[str, Any]]) -> Spec:
    """The sequential estimate (variant - control conversion) at each daily look with its always-valid
    interval, per variant, and a rule at zero (rows: day, variant, estimate, lower, upper, significant)."""
    x = {"field": "day", "type": "temporal", "title": "look (first-exposure day)", "timeUnit": "utcyearmonthdate"}
    return _spec(
        "Estimated difference in conversion at each daily look (mSPRT, always valid)",
        _values(rows),
        layer=[
            {
                "mark": {"type": "area", "opacity": 0.2},
                "encoding": {
                    "x": x,
                    "y": {
                        "field": "lower",
                        "type": "quantitative",
                        "title": "variant - control",
                        "axis": {"format": "%"},
                    },
                    "y2": {"field": "upper"},
                    "color": {"field": "variant", "type": "nominal"},
                },
            },
            {
                "mark": {"type": "line", "point": True},
                "encoding": {
                    "x": x,
                    "y": {"field": "estimate", "type": "quantitative"},
                    "color": {"field": "variant", "type": "nominal"},
                    "tooltip": [
                        {"field": "day"},
                        {"field": "variant"},
                        {"field": "estimate"},
                        {"field": "lower"},
                        {"field": "upper"},
                        {"field": "significant"},
                    ],
                },
            },
            {"mark": {"type": "rule", "color": "#555"}, "encoding": {"y": {"datum": 0, "type": "quantitative"}}},
        ],
    )
