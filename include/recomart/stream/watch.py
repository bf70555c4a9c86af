"""One user's recommendations before and after some simulated traffic (``./recomart simulate --watch``,
``./recomart demo --live``): the speed layer made visible.

The simulator sends the generated shop's next days in a fixed order (:func:`shop_events`), so the user
to watch by default is the one with the most views and carts among the events the run will send.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from recomart.config import Settings
from recomart.stream.simulate import SimulationSummary, shop_events, simulate

WATCH_K = 10
SETTLE_S = 5.0
"""How long to wait after the run for the user's list to show the session (the worker's last batch)."""


@dataclass(frozen=True)
class Watched:
    """The watched user's list before and after the run, and what the run sent."""

    user_id: str
    before: dict[str, Any]
    after: dict[str, Any]
    summary: SimulationSummary


def busiest_user(s: Settings, events: int) -> str | None:
    """The user with the most views and carts among the simulator's first ``events`` events (None if none)."""
    counts: Counter[str] = Counter()
    for sent, event in enumerate(shop_events(s, "watch")):
        if sent >= events:
            break
        if event["event_type"] != "purchase":
            counts[event["user_id"]] += 1
    return counts.most_common(1)[0][0] if counts else None


def _recommendations(client: httpx.Client, user_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/users/{user_id}/recommendations", params={"k": WATCH_K})
    response.raise_for_status()
    return response.json()


def watch(s: Settings, user_id: str, rate: float, seconds: float, url: str | None = None) -> Watched:
    """Read ``user_id``'s list, run the simulator for ``seconds`` at ``rate`` events/s, read it again
    (polling up to :data:`SETTLE_S` for the session to show: ``fresh_events_used`` grows)."""
    with httpx.Client(base_url=url or s.api_url, timeout=10) as client:
        before = _recommendations(client, user_id)
        summary = simulate(s, rate, seconds, url=url)
        deadline = time.monotonic() + SETTLE_S
        after = _recommendations(client, user_id)
        while after["fresh_events_used"] <= before["fresh_events_used"] and time.monotonic() < deadline:
            time.sleep(0.25)
            after = _recommendations(client, user_id)
    return Watched(user_id, before, after, summary)


def _lines(body: dict[str, Any]) -> list[str]:
    lines = []
    for item in body["items"]:
        boost = item["reasons"].get("session_boost")
        moved = f"  session +{boost:.2f}" if boost else ""
        title = (item["title"] or "")[:38]
        lines.append(f"{item['rank']:>3}  {item['item_id']:<10} {title:<38} {item['score']:>7.3f}{moved}")
    return lines


def print_watched(watched: Watched) -> None:
    """Both lists, the session boost of each item that the fresh events moved, and the run's summary."""
    summary = watched.summary
    print(
        f"simulated {summary.accepted} events in {summary.seconds:.0f} s ({summary.achieved_rate} events/s,"
        f" {summary.refused} refused)"
    )
    for label, body in (("before", watched.before), ("after", watched.after)):
        print(
            f"\n{watched.user_id}, {label}: strategy {body['strategy']}, generation {body['generation_id']},"
            f" {body['fresh_events_used']} fresh session events used, re-ranked: {body['reranked']}"
        )
        print("\n".join(_lines(body)))
    kept = {i["item_id"] for i in watched.before["items"]} & {i["item_id"] for i in watched.after["items"]}
    print(f"\n{WATCH_K - len(kept)} of the top {WATCH_K} changed after the session's events.", flush=True)
