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
