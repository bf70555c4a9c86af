"""How long the learned ranker takes at the generated shop's scale (issue 19, speed).

    .venv/bin/python -m benchmarks.ranker_speed --users 100000 --items 20000

Generates the shop (:func:`recomart.datasets.generator.generate`, seed 42, 60 days, a fixed last day)
into a temporary folder, turns every event into user-item pairs (:func:`recomart.model.split.pairs_from_events`)
and cuts them with the train DAG's default split (``time``: the last 20 % of pairs test, the 10 % before
validation).  Then, with the ranker's generators (SVD with the configuration's base parameters, EASE
λ=200 capped at its item limit, RP3β α=0.75 β=0.5, item-to-item, content, popularity, recent popularity)
and ``N`` = :data:`recomart.model.ranker_fit.RANKER_CANDIDATES`:

- ``ranker_features_s``: candidates and features of every validation user (generators already fitted
  on the train part), :meth:`LearnedRanker.rows_at` at the validation cutoff;
- ``ranker_train_s``: :meth:`LearnedRanker.fit_ranker` from scratch: the generators fitted on the train
  part, the same candidates and features, and LambdaRank learned on the validation labels;
- ``nightly_ranker_s``: the generators refitted on train + validation (``generators_refit_s``, the
  train DAG's work) and then every user ranked, top 10, by
  :meth:`~recomart.ranking.base.Recommender.recommend_aligned`: per block of users, one dense score
  block per generator and one vectorised ``Booster.predict`` over the block's candidate rows.

Point-in-time Feast features are not part of these figures (the shop is not loaded into a warehouse at
this size); ``historical_10k_*`` in ``scoring.json`` is that retrieval's own figure.  The results are
merged into ``--out`` (default ``benchmarks/results/scoring.json``) under ``ranker_*`` keys and
``ranker_speed``; every other key is left as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv

from benchmarks.results_file import run_metadata
from recomart.datasets import generator
from recomart.model.catalogue import Catalogue
from recomart.model.config import SPLIT_OPTIONS, TrainingConfig
from recomart.model.ranker_fit import RANKER_CANDIDATES, RANKER_THREADS, ranker_generators
from recomart.model.split import make_split, pairs_from_events
from recomart.ranking.ease import EASE
from recomart.ranking.history import UserHistory
from recomart.ranking.ranker import LearnedRanker
from recomart.ranking.rp3beta import RP3Beta

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scoring.json"
END_DATE = date(2026, 11, 30)
TARGET_USERS, TARGET_ITEMS = 100_000, 20_000
NIGHTLY_TARGET_S = 480.0
TRAIN_TARGET_S = 720.0


def shop_pairs(folder: Path, users: int, items: int, days: int) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(user-item pairs of every event, products, events) of a generated shop written to ``folder``."""
    generator.generate(folder, users=users, items=items, days=days, seed=42, end_date=END_DATE)
    tables = [pacsv.read_csv(path) for path in sorted((folder / "events").glob("*.csv"))]
    events = pd.concat([t.select(["user_id", "item_id", "event_type", "event_time"]).to_pandas() for t in tables])
    events["event_timestamp"] = pd.to_datetime(events.pop("event_time"), utc=True)
    products = pd.read_csv(folder / "products.csv", dtype={"item_id": str})
    return pairs_from_events(events), products, len(events)


def _generators(catalogue: Catalogue, config: TrainingConfig) -> dict[str, Any]:
    chosen = {"ease": EASE(l2=200.0), "rp3beta": RP3Beta(alpha=0.75, beta=0.5)}
    return ranker_generators(catalogue, config.svd_settings(None), chosen)


def measure(pairs: pd.DataFrame, products: pd.DataFrame) -> dict[str, Any]:
    """The three timings of the module docstring (and their sizes) on ``pairs``."""
    config = TrainingConfig()
    catalogue = Catalogue(products, None, False, None)
    split = make_split(pairs, "time", **SPLIT_OPTIONS["time"])
    training = catalogue.evaluation_set(split.train)
    labels = split.valid[["user_id", "item_id"]]
    ranker = LearnedRanker(_generators(catalogue, config), n_candidates=RANKER_CANDIDATES, num_threads=RANKER_THREADS)
    started = time.perf_counter()
    ranker.fit_ranker(training, labels)
    train_s = time.perf_counter() - started
    users = pd.unique(labels["user_id"].astype(str).to_numpy())
    users = users[pd.Index(training.entries.user_ids).get_indexer(pd.Index(users)) >= 0]
    started = time.perf_counter()
    _, rows = ranker.rows_at(training.history, users)
    features_s = time.perf_counter() - started
    n_rows, n_features = rows.x.shape
    del rows
    started = time.perf_counter()
    everything = catalogue.evaluation_set(split.train_valid)
    ranker.fit(everything)
    refit_s = time.perf_counter() - started
    all_users = everything.entries.user_ids
    started = time.perf_counter()
    ranked = ranker.recommend_aligned(
        UserHistory.align(everything.history, all_users, everything.item_ids), 10, "interacted"
    )
    nightly_s = time.perf_counter() - started
    return {
        "ranker_train_s": round(train_s, 1),
        "ranker_features_s": round(features_s, 1),
        "nightly_ranker_s": round(nightly_s, 1),
        "generators_refit_s": round(refit_s, 1),
        "n_train_pairs": len(split.train),
        "n_label_users": len(users),
        "n_feature_rows": int(n_rows),
        "n_features": int(n_features),
        "n_ranked_users": len(all_users),
        "n_ranked_filled": int(np.sum(np.all(ranked.item_ids != None, axis=1))),  # noqa: E711 - object array
        "n_items": int(len(everything.item_ids)),
        "generators": list(ranker.generators),
        "n_candidates": RANKER_CANDIDATES,
        "evidence": ranker.evidence,
    }


def _targets(figures: dict[str, Any], users: int, items: int) -> dict[str, Any]:
    """The issue's targets, judged only at their size (100k users x 20k items); ``None`` below it."""
    at_size = users >= TARGET_USERS and items >= TARGET_ITEMS
    return {
        "nightly_ranker_s<=480": figures["nightly_ranker_s"] <= NIGHTLY_TARGET_S if at_size else None,
        "ranker_train_s<=720 (features included)": figures["ranker_train_s"] <= TRAIN_TARGET_S if at_size else None,
        "judged_at": f"{TARGET_USERS} users x {TARGET_ITEMS} items" if at_size else "not at the target size",
    }


def merge_into(out: Path, figures: dict[str, Any]) -> None:
    """Write the three ``ranker_*`` / ``nightly_ranker_s`` keys and ``ranker_speed`` into ``out``."""
    result = json.loads(out.read_text()) if out.is_file() else {}
    for key in ("ranker_train_s", "ranker_features_s", "nightly_ranker_s"):
        result[key] = figures[key]
    result["ranker_speed"] = figures
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_start = [round(x, 2) for x in os.getloadavg()]
    folder = Path(tempfile.mkdtemp(prefix="ranker_speed_"))
    try:
        started = time.perf_counter()
        pairs, products, n_events = shop_pairs(folder, args.users, args.items, args.days)
        shop_s = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    figures = measure(pairs, products)
    figures.update(
        {
            **run_metadata(),
            "shop": {"users": args.users, "items": args.items, "days": args.days, "seed": 42, "events": n_events},
            "shop_s": round(shop_s, 1),
            "targets": _targets(figures, args.users, args.items),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "loadavg_1_5_15_at_start": load_start,
            "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        }
    )
    merge_into(args.out, figures)
    print(json.dumps(figures, indent=2, default=str))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
