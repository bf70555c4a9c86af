"""The report's plots: name, title, the one-line caption of what to look for, and a Vega-Lite spec
builder over the rows of :mod:`recomart.data_report.queries` (data inline, never a URL).

Own small builders rather than :mod:`recomart.dashboard.charts`: the dashboard sits above this
package's layer, and the report's plots (log-log, heat map, facets) are not the dashboard's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

Spec = dict[str, Any]
Rows = list[dict[str, Any]]
WIDTH = 720
HEIGHT = 200


def plain(value: Any) -> Any:
    """A JSON value: dates and times as ISO strings, decimals as floats."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def plain_rows(rows: Rows) -> Rows:
    return [{key: plain(value) for key, value in row.items()} for row in rows]


def _spec(rows: Rows, *, width: int = WIDTH, height: int = HEIGHT, **rest: Any) -> Spec:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",  # an identifier: never fetched
        "width": width,
        "height": height,
        "data": {"values": plain_rows(rows)},
        **rest,
    }


def _day(field: str = "day") -> dict[str, Any]:
    return {"field": field, "type": "temporal", "timeUnit": "utcyearmonthdate", "title": "day (UTC)"}


def volumes(rows: Rows) -> Spec:
    """One panel per feed (own y scale: users and events differ by orders of magnitude)."""
    panel = {
        "width": WIDTH,
        "height": 70,
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": _day(),
            "y": {"field": "records", "type": "quantitative", "title": "records"},
            "tooltip": [{"field": "feed"}, {"field": "day", "type": "temporal"}, {"field": "records"}],
        },
    }
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": plain_rows(rows)},
        "facet": {"row": {"field": "feed", "type": "nominal", "title": None}},
        "spec": panel,
        "resolve": {"scale": {"y": "independent"}},
    }


def long_tail(rows: Rows) -> Spec:
    log = {"type": "log"}
    return _spec(
        rows,
        mark={"type": "point", "filled": True, "opacity": 0.7},
        encoding={
            "x": {"field": "interactions", "type": "quantitative", "scale": log, "title": "interactions"},
            "y": {"field": "entities", "type": "quantitative", "scale": log, "title": "users or items"},
            "color": {"field": "entity", "type": "nominal", "title": None},
            "tooltip": [{"field": "entity"}, {"field": "interactions"}, {"field": "entities"}],
        },
    )


WEEKDAYS = ["", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def weekday_hour(rows: Rows) -> Spec:
    named = [{**row, "day": WEEKDAYS[int(row["weekday"])]} for row in rows]
    return _spec(
        named,
        height=160,
        mark={"type": "rect"},
        encoding={
            "x": {"field": "hour", "type": "ordinal", "title": "hour (UTC)"},
            "y": {"field": "day", "type": "ordinal", "sort": WEEKDAYS[1:], "title": None},
            "color": {"field": "interactions", "type": "quantitative", "scale": {"scheme": "blues"}},
            "tooltip": [{"field": "day"}, {"field": "hour"}, {"field": "interactions"}],
        },
    )


def basket_sizes(rows: Rows) -> Spec:
    return _spec(
        rows,
        mark={"type": "bar"},
        encoding={
            "x": {
                "field": "items",
                "bin": {"step": 1},
                "type": "quantitative",
                "axis": {"format": "d", "tickMinStep": 1},
                "title": "distinct products in the basket (bars from N to N + 1)",
            },
            "y": {
                "field": "baskets",
                "aggregate": "sum",
                "type": "quantitative",
                "scale": {"type": "symlog"},
                "title": "baskets",
            },
            "tooltip": [{"field": "items", "bin": {"step": 1}}, {"field": "baskets", "aggregate": "sum"}],
        },
    )


def repeat_purchases(rows: Rows) -> Spec:
    return _spec(
        rows,
        mark={"type": "line", "point": True},
        encoding={
            "x": {
                "field": "week",
                "type": "temporal",
                "timeUnit": "utcyearmonthdate",
                "title": "week (from Monday)",
                "axis": {"tickCount": {"interval": "week"}, "format": "%d %b %Y"},
            },
            "y": {"field": "repeat_share", "type": "quantitative", "axis": {"format": "%"}, "title": "repeat share"},
            "tooltip": [{"field": "week"}, {"field": "purchases"}, {"field": "repeats"}, {"field": "repeat_share"}],
        },
    )


def price_distribution(rows: Rows) -> Spec:
    return _spec(
        rows,
        mark={"type": "rect", "stroke": "white"},
        encoding={
            "x": {"field": "price_from", "type": "quantitative", "scale": {"type": "log"}, "title": "price"},
            "x2": {"field": "price_to"},
            "y": {"field": "products", "type": "quantitative", "title": "products"},
            "y2": {"datum": 0},
            "tooltip": [{"field": "price_from"}, {"field": "price_to"}, {"field": "products"}],
        },
    )


def category_mix(rows: Rows) -> Spec:
    """One 100 % bar per measure (products, interactions, purchases), split by category."""
    return _spec(
        rows,
        height=110,
        transform=[{"fold": ["products", "interactions", "purchases"], "as": ["measure", "count"]}],
        mark={"type": "bar"},
        encoding={
            "y": {"field": "measure", "type": "nominal", "sort": ["products", "interactions"], "title": None},
            "x": {"field": "count", "type": "quantitative", "stack": "normalize", "title": "share"},
            "color": {"field": "category", "type": "nominal"},
            "tooltip": [{"field": "category"}, {"field": "measure"}, {"field": "count", "type": "quantitative"}],
        },
    )


def quarantine_reasons(rows: Rows) -> Spec:
    return _spec(
        rows,
        mark={"type": "bar"},
        encoding={
            "x": _day(),
            "y": {"field": "records", "type": "quantitative", "aggregate": "sum", "title": "records"},
            "color": {"field": "reason", "type": "nominal", "legend": {"orient": "bottom", "columns": 1}},
            "tooltip": [{"field": "day", "type": "temporal"}, {"field": "feed"}, {"field": "reason"},
                        {"field": "records"}],
        },
    )  # fmt: skip


def dbt_exclusions(rows: Rows) -> Spec:
    """The excluding rules only (the kept lines are in the table below the plot)."""
    rules = [row for row in rows if row["rule_name"] != "kept"]
    return _spec(
        rules,
        height=24 * max(len(rules), 1),
        mark={"type": "bar"},
        encoding={
            "y": {"field": "rule_name", "type": "nominal", "sort": {"field": "rule_order"}, "title": None},
            "x": {"field": "row_count", "type": "quantitative", "title": "order lines excluded"},
            "tooltip": [{"field": "rule_name"}, {"field": "row_count"}, {"field": "pct_of_source_rows"},
                        {"field": "description"}],
        },
    )  # fmt: skip


OUTCOME_COLOURS = {"passed": "#4c9a2a", "failed (warning)": "#e0a100", "failed (critical)": "#c0392b"}


def gx_results(rows: Rows) -> Spec:
    """Stacked bars per validation run: expectations passed, failed warnings, failed criticals."""
    return _spec(
        rows,
        mark={"type": "bar"},
        encoding={
            "x": {
                "field": "run",
                "type": "nominal",
                "sort": None,
                "title": None,
                "axis": {"labelAngle": -20, "labelLimit": 320},
            },
            "y": {"field": "expectations", "type": "quantitative", "title": "expectations"},
            "color": {
                "field": "outcome",
                "type": "nominal",
                "scale": {"domain": list(OUTCOME_COLOURS), "range": list(OUTCOME_COLOURS.values())},
            },
            "tooltip": [{"field": "run"}, {"field": "outcome"}, {"field": "expectations"}],
        },
    )


@dataclass(frozen=True)
class Plot:
    """One plot of the report: ``name`` is its element id (``plot-<name>``) and its data key."""

    name: str
    title: str
    caption: str
    build: Callable[[Rows], Spec]


PLOTS: tuple[Plot, ...] = (
    Plot(
        "volumes",
        "Records loaded per day, per feed",
        "Look for gaps (a day without a file) and steps (a feed that suddenly doubles or halves).",
        volumes,
    ),
    Plot(
        "long_tail",
        "Interactions per user and per item (log-log)",
        "A straight falling line is the usual long tail; a lone point far right is a bot, a reseller or a "
        "placeholder id.",
        long_tail,
    ),
    Plot(
        "weekday_hour",
        "Interactions by weekday and hour (UTC)",
        "Look for the shop's daily rhythm; an empty row or a shifted band is a missing day or a time-zone change.",
        weekday_hour,
    ),
    Plot(
        "basket_sizes",
        "Basket sizes",
        "Most baskets should hold a few products; a long right tail is wholesale buying that co-purchase "
        "counts overweight.",
        basket_sizes,
    ),
    Plot(
        "repeat_purchases",
        "Repeat-purchase share per week",
        "The share of purchases re-buying a product bought before: what buy-again can win; a sudden jump is "
        "duplicated orders.",
        repeat_purchases,
    ),
    Plot(
        "price_distribution",
        "Catalogue prices (quarter-octave bins)",
        "Look for one smooth hump; spikes at tiny or round prices are placeholders or fees posing as products.",
        price_distribution,
    ),
    Plot(
        "category_mix",
        "Category mix: products, interactions, purchases",
        "A category whose share of interactions is far from its share of products is what popularity over- or"
        " under-serves.",
        category_mix,
    ),
    Plot(
        "quarantine_reasons",
        "Quarantined records per day, by reason",
        "Every bar is input set aside before the warehouse: a new reason or a tall bar means the upstream "
        "files changed.",
        quarantine_reasons,
    ),
    Plot(
        "dbt_exclusions",
        "Rows each dbt cleaning rule excluded (marts.data_quality_exclusions)",
        "On UCI, its known dirt: missing customers, cancellations, duplicates, non-product codes; a rule that"
        " jumps means the source changed.",
        dbt_exclusions,
    ),
    Plot(
        "gx_results",
        "Great Expectations: expectations per validation run",
        "Any red or amber is a failed expectation: critical ones stop the pipeline, warnings are only logged.",
        gx_results,
    ),
)
