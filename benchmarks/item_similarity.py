"""The item-to-item fit's cost over its floor, the co-occurrence products it cannot avoid.

Run: ``.venv/bin/python -m benchmarks.item_similarity`` (writes ``benchmarks/results/item_similarity.json``).

A seeded incidence shaped like the 10M-event generated shop (``--users`` × ``--items`` with ``--pairs``
distinct user-item pairs, items drawn with a Zipf-like popularity) is fitted by
:func:`recomart.ranking.item_item.item_similarity` (Jaccard, top 50 neighbours per item, blocks of 2,048
items).  The floor is the same blocks' sparse co-occurrence products ``Xᵀ[block] @ X`` alone, timed in
the same run: ``ratio = fit / floor`` says what the similarity and the top-n selection add on top of the
products.  Median of ``--repeats`` runs each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import sparse

from benchmarks.results_file import ROOT, run_metadata, write_result
from recomart.ranking.item_item import incidence, item_similarity

RESULTS = ROOT / "benchmarks" / "results" / "item_similarity.json"
BLOCK_ITEMS = 2048


def shop_incidence(users: int, items: int, pairs: int, seed: int = 42) -> sparse.csr_matrix:
    """A binary users × items CSR with about ``pairs`` distinct pairs, item popularity ∝ 1 / rank^0.9."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, items + 1) ** 0.9
    cols = rng.choice(items, size=pairs, p=weights / weights.sum())
    rows = rng.integers(0, users, size=pairs)
    return incidence(rows, cols, users, items)


def cooccurrence_floor(x: sparse.csr_matrix) -> None:
    """The fit's sparse products alone: ``Xᵀ[block] @ X`` for every block of :data:`BLOCK_ITEMS` items."""
    xc, xt = x.tocsc(), x.T.tocsr()
    for start in range(0, x.shape[1], BLOCK_ITEMS):
        xt[start : start + BLOCK_ITEMS] @ xc


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """The median wall seconds of ``repeats`` calls of ``run``."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="users of the incidence (rows)")
    parser.add_argument("--items", type=int, default=20_000, help="items of the incidence (columns)")
    parser.add_argument("--pairs", type=int, default=5_000_000, help="user-item pairs drawn (duplicates collapse)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the fit and of the floor (median)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="result JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    x = shop_incidence(args.users, args.items, args.pairs)
    item_similarity(x[:, :BLOCK_ITEMS], top_n=50)  # compiles the top-n kernel outside the timings
    floor_s = median_seconds(lambda: cooccurrence_floor(x), args.repeats)
    fit_s = median_seconds(lambda: item_similarity(x, top_n=50, block_items=BLOCK_ITEMS), args.repeats)
    result = {
        "incidence": {"users": args.users, "items": args.items, "pairs": int(x.nnz)},
        "fit_s": fit_s,
        "floor_cooccurrence_s": floor_s,
        "fit_over_floor": round(fit_s / floor_s, 2),
        "repeats": args.repeats,
        **run_metadata(),
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
