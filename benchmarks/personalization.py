"""Are the generated shop's lists personal enough? (issue 16, point 6)

Runs the five DAGs on a generated shop in private databases on ``RECOMART_PG_URL`` / ``RECOMART_REDIS_URL``
(dropped at the end), then measures with the monitor's own metric
(:func:`recomart.monitoring.health.personalization`: 1 - mean pairwise top-10 overlap of up to 1,000
seeded users):

- ``served``: the live generation, and the pairwise overlap distribution over every pair of users;
- ``sample_users``: the demo report's three sample users and what their lists share;
- ``reranked``: the champion re-ranked with other blend weights (without popularity; each component alone);
- ``held_out_ndcg_at_10``: the champion's and popularity's test figures (``ops.model_promotions``);
- ``planted_taste``: lists ranked by the generator's planted affinity (a user's taste for an item's cluster
  x the item's popularity within it), rebuilt from the generator's own seeded catalogue and users: the
  personalization the shop's structure itself allows.

    .venv/bin/python -m benchmarks.personalization --out benchmarks/results/personalization.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import scipy.sparse as sp

from benchmarks.private_deployment import private_deployment
from benchmarks.results_file import run_metadata, write_result
from recomart import processes
from recomart.config import Settings
from recomart.datasets import generator
from recomart.demo import run_chain
from recomart.marts import read_ranking_inputs
from recomart.model.registry import load_champion
from recomart.monitoring.health import personalization
from recomart.monitoring.reads import read_promotions
from recomart.ranking.blend import COMPONENTS, BlendWeights
from recomart.report import sample_recommendations
from recomart.stack import start_catalog_api
from recomart.tools import airflow_migrate

LIST_COLUMNS = ["user_id", "rank", "item_id", "strategy"]


def _served(dsn: str) -> pd.DataFrame:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {', '.join(LIST_COLUMNS)} FROM reco.user_recommendations").fetchall()
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def pair_overlaps(lists: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """Items shared by every pair of users' top ``k``: mean and share of pairs sharing half or more."""
    top = lists[lists["rank"] <= k]
    rows, cols = pd.factorize(top["user_id"])[0], pd.factorize(top["item_id"])[0]
    matrix = sp.csr_matrix((np.ones(len(top)), (rows, cols)))
    shared = (matrix @ matrix.T).toarray()[np.triu_indices(rows.max() + 1, 1)]
    return {
        "mean_shared": round(float(shared.mean()), 3),
        "share_of_pairs_sharing_half": round(float((shared >= k / 2).mean()), 4),
    }


def reranked(s: Settings) -> dict[str, object]:
    """Personalization of the champion's lists under its fitted weights and under other weights."""
    champion = load_champion(s.mlflow_tracking_uri, s.model_name)
    recommender, fitted = champion.recommender, champion.recommender.weights
    inputs = read_ranking_inputs(s.warehouse_url)
    variants = {"as_fitted": fitted, "without_popularity": dataclasses.replace(fitted, popularity=0.0)}
    variants |= {
        f"only_{c}": BlendWeights(**{n: float(n == c) for n in COMPONENTS}) for c in COMPONENTS if c != "buy_again"
    }
    out: dict[str, object] = {"version": champion.version, "weights": dataclasses.asdict(fitted.normalised())}
    for name, weights in variants.items():
        recommender.weights = weights
        out[name] = round(personalization(recommender.rank(inputs.users, inputs.history, k=10), seed=1), 4)
    recommender.weights = fitted
    return out


def planted_taste_lists(users: int, items: int, days: int, seed: int) -> pd.DataFrame:
    """Each user's top 10 by the generator's planted affinity, rebuilt from its seeded internals."""
    end = generator.last_complete_day()
    start = end - timedelta(days=days - 1)
    catalogue, products = generator._make_catalogue(items, seed, 0.8, start, end)
    people, user_columns = generator._make_users(users, days, seed, start, catalogue)
    clusters = catalogue.cluster_share.size
    cdf = people.taste_cdf.reshape(users, clusters) - np.arange(users)[:, None]
    taste = np.diff(np.concatenate([np.zeros((users, 1)), cdf], axis=1), axis=1)
    sorted_cluster = catalogue.cluster[catalogue.order]
    first = np.r_[True, sorted_cluster[1:] != sorted_cluster[:-1]]
    within = np.where(first, catalogue.cdf - sorted_cluster, np.diff(catalogue.cdf, prepend=0.0))
    item_share = np.empty(items)
    item_share[catalogue.order] = within
    top = np.argsort(-(taste[:, catalogue.cluster] * item_share[None, :]), axis=1)[:, :10]
    return pd.DataFrame(
        {
            "user_id": np.repeat(np.asarray(user_columns["user_id"]), 10),
            "rank": np.tile(np.arange(1, 11), users),
            "item_id": np.asarray(products["item_id"])[top].ravel(),
            "strategy": "planted_taste",
        }
    )


def measure(s: Settings, args: argparse.Namespace) -> dict[str, object]:
    """Every figure of the module docstring, on the chain's output in ``s``'s warehouse."""
    served = _served(s.warehouse_url)
    active = set(served.loc[served["strategy"] != "popular_cold_start", "user_id"])
    samples = sample_recommendations(s.warehouse_url)
    oracle = planted_taste_lists(args.users, args.items, args.days, args.seed)
    return {
        "served": {"personalization": round(personalization(served, seed=1), 4), **pair_overlaps(served)},
        "sample_users": {
            "users": list(samples),
            "shared_of_10": [
                len({r[1] for r in a} & {r[1] for r in b}) for a, b in itertools.combinations(samples.values(), 2)
            ],
        },
        "reranked": reranked(s),
        "held_out_ndcg_at_10": [
            {
                "version": row["version"],
                "decision": row["decision"],
                **{name: row["metrics"].get(name, {}).get("ndcg_at_10") for name in ("model", "popularity")},
            }
            for row in read_promotions(s.warehouse_url, s.model_name)
        ],
        "planted_taste": {"personalization": round(personalization(oracle[oracle["user_id"].isin(active)], seed=1), 4)},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=42, help="the generator's seed (the demo's default: 42)")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)
    with private_deployment("pers_bench") as s:
        generator.generate(
            s.landing_dir / "generated", users=args.users, items=args.items, days=args.days, seed=args.seed
        )
        airflow_migrate(s)
        start_catalog_api(s)
        try:
            run_chain(s)
        finally:
            processes.stop(s, "catalog-api")
        figures = measure(s, args)
    shop = {"users": args.users, "items": args.items, "days": args.days, "seed": args.seed}
    return write_result({**run_metadata(), "shop": shop, **figures}, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
