"""Terminal tables of the CLI (rich): a user's recommendations and ``./recomart status``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from recomart.recommend.cache import OVERALL_SEGMENT
from recomart.status import Status


def stdout_console() -> Console:
    """rich on stdout: the terminal's width, or 200 columns when redirected (so ids never wrap in a log)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    shown = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*("" if value is None else str(value) for value in row))
    return shown


def _reasons(reasons: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in reasons.items()) or "-"


def _segment(name: str | None) -> str:
    return "all users" if name in (None, OVERALL_SEGMENT) else str(name)


def print_recommendations(body: dict[str, Any], console: Console | None = None) -> None:
    """The body of :func:`recomart.serving.lookup.user_recommendations` as a headline and a table."""
    console = console or stdout_console()
    cold = body["strategy"] == "popular_cold_start"
    if cold:
        headline = (
            f"user {body['user_id']} is not in generation {body['generation_id']}: cold-start list "
            f"(popular_cold_start, segment: {_segment(body['cold_start_segment'])})"
        )
    else:
        headline = f"user {body['user_id']}: generation {body['generation_id']}, strategy {body['strategy']}"
    console.print(f"{headline}; model version {body['model_version'] or 'none'}", soft_wrap=True)
    rows = [
        (
            item["rank"],
            item["item_id"],
            item["title"],
            item["category"],
            "-" if item["price"] is None else f"{item['price']:.2f}",
            f"{item['score']:.4f}",
            item["source"],
            _reasons(item["reasons"])
            if item["reasons"] or not cold
            else f"popularity {item['score']:.3f} (cold start)",
        )
        for item in body["items"]
    ]
    columns = ("rank", "item", "title", "category", "price", "score", "source", "reasons")
    console.print(table(None, columns, rows))


def print_status(status: Status, console: Console | None = None) -> None:
    console = console or stdout_console()
    console.print(table("Processes (./recomart up)", ("process", "state", "port", "port answers"), status.processes))
    console.print(table("Services", ("service", "state"), status.services))
    if status.dag_runs_note:
        console.print(f"Last run per DAG: {status.dag_runs_note}", soft_wrap=True)
    else:
        columns = ("dag", "dag state", "last run", "run state", "started", "ended")
        console.print(table("Last run per DAG (Airflow REST API)", columns, status.dag_runs))
    console.print(table("Serving", ("what", "value"), status.serving))
