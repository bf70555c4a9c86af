"""Choose the session re-ranking weight honestly: replay held-out days of the generated shop.

The hybrid is fitted on every day but the last two. For each user's first purchase on a held-out
day, the session is that user's events of the day before the purchase, folded by the session-feature
contract (``recomart.features.session``, what the stream worker pushes), and the list is re-ranked by
the API's own functions (``recomart.serving.rerank``). nDCG@10 of that purchase is measured for the
nightly list as is and re-ranked with each weight. The weight is chosen on the first held-out day
and reported on the second, next to nightly-only. The sessions are built from the day's events
directly, not through the stream (the same fold the worker's rows carry).

    .venv/bin/python -m benchmarks.serving_rerank [--users 5000 --items 1000 --days 60]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.results_file import run_metadata, write_result
from benchmarks.serving_data import fit_hybrid, generated_shop, history_of
from recomart.features.session import SessionEvent, fold_events
from recomart.serving.rerank import Neighbours, Session, rerank, session_boosts

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _cases(day_events: pd.DataFrame) -> list[tuple[str, str, pd.Timestamp, pd.DataFrame]]:
    """``(user, purchased item, time, the user's earlier events that day)`` per user's first purchase."""
    purchases = day_events[day_events["event_type"] == "purchase"].drop_duplicates("user_id")
    cases = []
    for user, item, at in purchases[["user_id", "item_id", "event_time"]].itertuples(index=False):
        before = day_events[(day_events["user_id"] == user) & (day_events["event_time"] < at)]
        cases.append((user, item, at, before))
    return cases


def _ndcg(ranked: list[str], relevant: str, k: int = 10) -> float:
    top = ranked[:k]
    return 1.0 / math.log2(top.index(relevant) + 2) if relevant in top else 0.0


def evaluate_day(recommender, neighbours: Neighbours, history: pd.DataFrame, users, day_events) -> dict[str, float]:
    """Mean nDCG@10 of each user's first purchase of the day: nightly-only and per weight."""
    cases = _cases(day_events)
    lists = recommender.rank(users, history, k=10)
    by_user = {u: (g["item_id"].tolist(), g["score"].tolist()) for u, g in lists.groupby("user_id", sort=False)}
    scores = {"nightly_only": [], **{f"w={w}": [] for w in WEIGHTS}}
    sessions_used = 0
    for user, item, at, before in cases:
        items, item_scores = by_user.get(user, ([], []))
        scores["nightly_only"].append(_ndcg(items, item))
        events = [
            SessionEvent(user, i, t, e.to_pydatetime())
            for i, t, e in before[["item_id", "event_type", "event_time"]].itertuples(index=False)
        ]
        state = fold_events(events).get(user)
        session = Session.from_features(state.features()) if state else Session()
        boosts = session_boosts(session, neighbours, at.to_pydatetime())
        sessions_used += bool(boosts)
        bought = {i for i, _ in session.bought} if not recommender.repeat_purchases else set()
        for w in WEIGHTS:
            ranked = rerank(items, item_scores, boosts, w, bought)
            scores[f"w={w}"].append(_ndcg([r.item_id for r in ranked], item))
    result = {name: round(float(np.mean(values)), 4) if values else None for name, values in scores.items()}
    return {**result, "purchases": len(cases), "with_session_signal": sessions_used}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="recomart-rerank-") as tmp:
        shop = generated_shop(Path(tmp), args.users, args.items, args.days, args.seed)
    last = shop.events["event_time"].max().normalize()
    validation_day, test_day = last - timedelta(days=1), last
    train = shop.events[shop.events["event_time"] < validation_day]
    recommender = fit_hybrid(history_of(train), shop)
    neighbours = Neighbours.from_recommender(recommender)
    days = {}
    for name, day in (("validation", validation_day), ("test", test_day)):
        seen = shop.events[shop.events["event_time"] < day]
        day_events = shop.events[
            (shop.events["event_time"] >= day) & (shop.events["event_time"] < day + timedelta(days=1))
        ]
        days[name] = evaluate_day(recommender, neighbours, history_of(seen), shop.users, day_events)
    chosen = max(WEIGHTS, key=lambda w: days["validation"][f"w={w}"])
    result = {
        "shop": {"users": args.users, "items": args.items, "days": args.days, "seed": args.seed},
        "model": "hybrid without SVD factors (item-to-item, content, popularity), fitted before the validation day",
        "chosen_weight": chosen,
        "test_ndcg_at_10": {"nightly_only": days["test"]["nightly_only"], "reranked": days["test"][f"w={chosen}"]},
        "days": days,
    }
    return write_result({**result, **run_metadata()}, args.out)


if __name__ == "__main__":
    main()
