"""Search quality and speed: ``.venv/bin/python -m benchmarks.search`` writes ``benchmarks/results/search.json``.

Needs the search extra (``./recomart setup --with search``), ``../shared/data`` and a Postgres server
(``RECOMART_PG_URL``, else the embedded one).  See docs/search.md for the evaluation sets:

- **quality**: queries built from the data (UCI titles with words swapped for synonyms from
  ``benchmarks/search_synonyms.json`` and words dropped; MovieLens movies asked for by their users'
  tags and a genre), split into development and test queries by a seeded shuffle.  The fusion's
  ``k`` and embeddings weight are chosen on the development queries only; recall@10 and MRR of BM25,
  embeddings and the fusion (and of the TF-IDF / LSA fallback) are reported on the test queries;
- **speed**: the generated shop at 20k items is put into ``marts.dim_products`` of a scratch database
  (created and dropped here), embedded from scratch (``rebuild_full_s``), then 1 % of descriptions
  change and the refresh runs again (``rebuild_incremental_s``); ``Searcher.from_warehouse`` is built
  and timed, and distinct queries are timed in-process.  The API latency (``latency_p99_ms`` of the
  issue, through HTTP at 50 queries/s) needs the serving API (issue 15) and is not measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from recomart.config import settings
from recomart.search.fusion import FusionParams, reciprocal_rank_fusion
from recomart.search.minilm import MiniLMEncoder
from recomart.search.searcher import Searcher
from recomart.search.store import StoredVectors
from recomart.search.text import product_texts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "search.json"
SYNONYMS = ROOT / "benchmarks" / "search_synonyms.json"
COMMAND = ".venv/bin/python -m benchmarks.search"
DEPTH = 100  # candidates per retriever, and the rank cut-off of MRR
FUSION_GRID = {"k": [5, 10, 20, 40, 60, 100], "embeddings_weight": [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0]}
Query = tuple[str, frozenset[str]]  # (query text, relevant item ids)


# --- evaluation sets ----------------------------------------------------------------------------
def uci_catalogue(shared: Path) -> pd.DataFrame:
    """The UCI catalogue as the project derives it (title = most frequent description per StockCode)."""
    from recomart.datasets.uci import derive_uci_products

    files = sorted((shared / "uci-online-retail" / "by-day").glob("*.csv"))
    return derive_uci_products(files)[["item_id", "title", "description", "category", "brand"]]


def uci_queries(products: pd.DataFrame, synonyms: dict[str, list[str]], n: int, seed: int) -> list[Query]:
    """Per sampled product: its title lower-cased, each word with a synonym swapped with probability
    0.7, other words dropped with probability 0.3 (two words kept at least); at least one swap, and
    the query differs from every title.  Relevant: the products with that exact title."""
    rng = np.random.default_rng(seed)
    titles = products["title"].str.strip().str.lower()
    by_title = products.groupby(titles)["item_id"].agg(frozenset)
    known = set(titles)
    queries: dict[str, frozenset[str]] = {}
    for row in rng.permutation(len(products)):
        words = titles.iloc[row].split()
        if len(words) < 3 or not any(w in synonyms for w in words):
            continue
        swap = [w in synonyms and rng.random() < 0.7 for w in words]
        if not any(swap):
            continue
        keep = [s or rng.random() >= 0.3 for s in swap]
        if sum(keep) < 2:
            continue
        chosen = [str(rng.choice(synonyms[w])) if s else w for w, s, k in zip(words, swap, keep, strict=True) if k]
        query = " ".join(chosen)
        if query not in known and query not in queries:
            queries[query] = by_title[titles.iloc[row]]
        if len(queries) == n:
            break
    return list(queries.items())


def movielens_catalogue(shared: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Movies as products (title; genres as the category) and their users' tags."""
    folder = shared / "movielens-latest-small"
    movies = pd.read_csv(folder / "movies.csv", dtype=str)
    products = pd.DataFrame(
        {
            "item_id": movies["movieId"],
            "title": movies["title"],
            "description": None,
            "category": movies["genres"].str.replace("|", ", ", regex=False).replace("(no genres listed)", None),
            "brand": None,
        }
    )
    return products, pd.read_csv(folder / "tags.csv", dtype=str)


def movielens_queries(products: pd.DataFrame, tags: pd.DataFrame, n: int, seed: int) -> list[Query]:
    """Per sampled movie with two or more specific tags (used on at most 20 movies, not words of its
    title): two of its tags, plus one of its genres half of the time.  Relevant: every movie carrying
    both tags (and that genre), usually just the sampled one."""
    rng = np.random.default_rng(seed)
    tags = tags.assign(tag=tags["tag"].str.strip().str.lower()).drop_duplicates(["movieId", "tag"])
    spread = tags.groupby("tag")["movieId"].transform("nunique")
    tags = tags.loc[(spread <= 20) & tags["tag"].str.len().ge(3)]
    titles = products.set_index("item_id")["title"].str.lower()
    genres = products.set_index("item_id")["category"].fillna("").str.lower()
    per_movie = tags.groupby("movieId")["tag"].agg(sorted)
    movies_of = tags.groupby("tag")["movieId"].agg(frozenset)
    queries: dict[str, frozenset[str]] = {}
    for movie in rng.permutation(per_movie.index.to_numpy()):
        own = [t for t in per_movie[movie] if t not in titles.get(movie, "")]
        if len(own) < 2:
            continue
        words = [str(t) for t in rng.choice(own, size=2, replace=False)]
        relevant = movies_of[words[0]] & movies_of[words[1]]
        movie_genres = [g for g in genres.get(movie, "").split(", ") if g]
        if movie_genres and rng.random() < 0.5:
            genre = str(rng.choice(movie_genres))
            words.append(genre)
            relevant = frozenset(m for m in relevant if genre in genres.get(m, "").split(", "))
        query = " ".join(words)
        if query not in queries:
            queries[query] = relevant
        if len(queries) == n:
            break
    return list(queries.items())


# --- retrieval quality --------------------------------------------------------------------------
def ranked_lists(searcher: Searcher, queries: list[Query]) -> list[dict[str, list[str]]]:
    """Per query, each retriever's top ``DEPTH`` item ids, best first."""
    out = []
    for query, _ in queries:
        out.append({r.name: searcher.item_ids[r.top(query, DEPTH)[0]].tolist() for r in searcher.retrievers})
    return out


def scores(ranked: list[list[str]], queries: list[Query]) -> dict[str, float]:
    """Mean recall@10 and MRR (reciprocal rank of the first relevant item within ``DEPTH``, else 0)."""
    recall, rr = [], []
    for items, (_, relevant) in zip(ranked, queries, strict=True):
        recall.append(len(relevant.intersection(items[:10])) / len(relevant))
        rank = next((i for i, item in enumerate(items[:DEPTH], 1) if item in relevant), None)
        rr.append(1.0 / rank if rank else 0.0)
    return {"recall_at_10": float(np.mean(recall)), "mrr": float(np.mean(rr))}


def fuse(lists: list[dict[str, list[str]]], params: FusionParams) -> list[list[str]]:
    """Reciprocal rank fusion of each query's lists, with the searcher's own fusion code."""
    out = []
    for per_retriever in lists:
        ids = sorted({i for items in per_retriever.values() for i in items})
        code = {item: n for n, item in enumerate(ids)}
        rows = {name: np.array([code[i] for i in items], dtype=np.int64) for name, items in per_retriever.items()}
        fused = reciprocal_rank_fusion(rows, params, DEPTH)
        out.append([ids[r] for r in fused.rows])
    return out


def tune_fusion(lists: list[dict[str, list[str]]], queries: list[Query], dense: str) -> tuple[FusionParams, list]:
    """The grid point with the best MRR on these (development) queries; ties: the first in grid order."""
    trials = []
    for k in FUSION_GRID["k"]:
        for weight in FUSION_GRID["embeddings_weight"]:
            params = FusionParams(k=float(k), weights={dense: weight}, depth=DEPTH)
            trials.append({"k": k, "weight": weight, **scores(fuse(lists, params), queries)})
    best = max(trials, key=lambda t: t["mrr"])
    return FusionParams(k=float(best["k"]), weights={dense: best["weight"]}, depth=DEPTH), trials


def evaluate(lists: dict[str, list], sets: dict[str, list[Query]], params: FusionParams) -> dict[str, dict]:
    """Per data set and pooled: each retriever and the fusion with ``params`` (``lists[name]``: the
    ranked lists of ``sets[name]``'s queries)."""
    report = {name: _method_scores(lists[name], sets[name], params) for name in sets}
    pooled_lists = [q for name in sets for q in lists[name]]
    pooled_queries = [q for name in sets for q in sets[name]]
    report["all"] = _method_scores(pooled_lists, pooled_queries, params)
    return report


def _method_scores(lists: list[dict[str, list[str]]], queries: list[Query], params: FusionParams) -> dict[str, Any]:
    out: dict[str, Any] = {name: scores([q[name] for q in lists], queries) for name in lists[0]}
    out["fusion"] = scores(fuse(lists, params), queries)
    out["queries"] = len(queries)
    return out


def _synonyms() -> dict[str, list[str]]:
    return {k: v for k, v in json.loads(SYNONYMS.read_text()).items() if not k.startswith("_")}


def _searchers(products: pd.DataFrame, encoder: MiniLMEncoder) -> tuple[Searcher, Searcher, dict[str, Any]]:
    """The hybrid searcher over freshly embedded vectors, the fallback searcher, and embedding figures."""
    texts = product_texts(products).tolist()
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    seconds = time.perf_counter() - started
    ids = products["item_id"].to_numpy(dtype=object)
    stored = StoredVectors(encoder.name, ids, np.full(len(ids), "", dtype=object), vectors)
    tokens = [len(t) for t in encoder.token_ids(texts)]
    figures = {"items": len(texts), "embed_s": round(seconds, 2), "items_per_s": round(len(texts) / seconds, 1)}
    figures["mean_tokens"] = round(float(np.mean(tokens)), 1)
    return Searcher.from_frames(products, stored, encoder), Searcher.from_frames(products, None, None), figures


def quality(shared: Path, encoder: MiniLMEncoder, n_uci: int, n_movielens: int, seed: int) -> dict[str, Any]:
    """Build both evaluation sets, tune each index's fusion on the development thirds, score the tests."""
    uci = uci_catalogue(shared)
    movies, tags = movielens_catalogue(shared)
    sets = {
        "uci": (uci, uci_queries(uci, _synonyms(), n_uci, seed)),
        "movielens": (movies, movielens_queries(movies, tags, n_movielens, seed)),
    }
    dev, test, figures = {}, {}, {}
    lists: dict[str, dict[str, dict[str, list]]] = {"hybrid": {}, "fallback": {}}
    for name, (products, queries) in sets.items():
        cut = len(queries) // 3
        dev[name], test[name] = queries[:cut], queries[cut:]
        hybrid, fallback, figures[name] = _searchers(products, encoder)
        for index, searcher in (("hybrid", hybrid), ("fallback", fallback)):
            lists[index][name] = {"dev": ranked_lists(searcher, dev[name]), "test": ranked_lists(searcher, test[name])}
    report: dict[str, Any] = {"embedding": figures, "examples": {n: [q for q, _ in test[n][:5]] for n in sets}}
    for index, dense in (("hybrid", "embeddings"), ("fallback", "lsa")):
        dev_lists = [q for name in sets for q in lists[index][name]["dev"]]
        params, trials = tune_fusion(dev_lists, [q for name in sets for q in dev[name]], dense)
        test_lists = {name: lists[index][name]["test"] for name in sets}
        report[index] = {
            "fusion_params": {"k": params.k, "weights": dict(params.weights), "depth": params.depth},
            "dev_best": max(trials, key=lambda t: t["mrr"]),
            "dev_default_k60_w1": next(t for t in trials if t["k"] == 60 and t["weight"] == 1.0),
            "test": evaluate(test_lists, test, params),
        }
    report["queries"] = {"dev": {n: len(q) for n, q in dev.items()}, "test": {n: len(q) for n, q in test.items()}}
    return report


# --- speed --------------------------------------------------------------------------------------
def _scratch_database(server_url: str, name: str, *, drop: bool) -> str:
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_url, dbname=name)


def _load_generated_shop(dsn: str, items: int, seed: int) -> pd.DataFrame:
    """The generated shop's catalogue (``items`` products) as ``marts.dim_products``, by COPY."""
    from recomart.datasets.generator import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), users=50, items=items, days=1, seed=seed)
        products = pd.read_csv(Path(tmp) / "products.csv", dtype=str, keep_default_na=False)
    columns = ["item_id", "title", "description", "category", "brand", "price"]
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE SCHEMA marts; CREATE TABLE marts.dim_products "
            "(item_id text PRIMARY KEY, title text, description text, category text, brand text, price numeric)"
        )
        with conn.cursor() as cur, cur.copy(f"COPY marts.dim_products ({', '.join(columns)}) FROM STDIN") as copy:
            for row in products[columns].itertuples(index=False):
                copy.write_row(row)
    return products


def _distinct_queries(products: pd.DataFrame, n: int, seed: int) -> list[str]:
    """``n`` distinct queries of 2-4 words drawn from the catalogue's titles and descriptions."""
    rng = np.random.default_rng(seed)
    vocabulary = np.array(sorted(set(" ".join(product_texts(products)).lower().replace(".", " ").split())))
    queries: set[str] = set()
    while len(queries) < n:
        queries.add(" ".join(rng.choice(vocabulary, size=int(rng.integers(2, 5)), replace=False)))
    return sorted(queries)


def speed(server_url: str, items: int, seed: int, n_queries: int) -> dict[str, Any]:
    """Full and 1 % incremental refresh of ``reco.item_embeddings``, searcher build, in-process latency."""
    from recomart.search.embed import embed_products

    name = f"recomart_bench_search_{os.getpid()}"
    dsn = _scratch_database(server_url, name, drop=False)
    try:
        products = _load_generated_shop(dsn, items, seed)
        full = embed_products(dsn)
        changed = products["item_id"].sample(frac=0.01, random_state=seed).tolist()
        with psycopg.connect(dsn) as conn:
            conn.execute(
                "UPDATE marts.dim_products SET description = description || ' Now also sold in a gift box.'"
                " WHERE item_id = ANY(%s)",
                (changed,),
            )
        incremental = embed_products(dsn)
        started = time.perf_counter()
        searcher = Searcher.from_warehouse(dsn)
        build_s = time.perf_counter() - started
        latency = _latency(searcher, _distinct_queries(products, n_queries, seed))
    finally:
        _scratch_database(server_url, name, drop=True)
    return {
        "full": full,
        "incremental": incremental,
        "changed_items": len(changed),
        "searcher_build_s": build_s,
        "searcher": searcher.describe(),
        "search_in_process_ms": latency,
    }


def _latency(searcher: Searcher, queries: list[str]) -> dict[str, Any]:
    for query in queries[:5]:  # warm-up (numba kernels, BLAS threads), not counted
        searcher.search(query, 10)
    times = []
    for query in queries:
        started = time.perf_counter()
        searcher.search(query, 10)
        times.append((time.perf_counter() - started) * 1000)
    ms = np.array(times)
    return {
        "queries": len(ms),
        "k": 10,
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p99": round(float(np.percentile(ms, 99)), 2),
        "max": round(float(ms.max()), 2),
        "qps_one_thread": round(1000 / float(ms.mean()), 1),
    }


# --- main ---------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    from threadpoolctl import threadpool_info

    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), ""),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")},
        "blas": [
            {k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ],
    }


def git_commit() -> str:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    return head + ("-dirty" if dirty.strip() else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--uci-queries", type=int, default=450)
    p.add_argument("--movielens-queries", type=int, default=300)
    p.add_argument("--items", type=int, default=20_000, help="generated shop size for the rebuild timings")
    p.add_argument("--latency-queries", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()
    encoder = MiniLMEncoder()
    report = quality(args.shared, encoder, args.uci_queries, args.movielens_queries, args.seed)
    rebuild = speed(settings().pg_server_url, args.items, args.seed, args.latency_queries)
    hybrid_all = report["hybrid"]["test"]["all"]
    result = {
        "recall_at_10": {m: hybrid_all[m]["recall_at_10"] for m in ("bm25", "embeddings", "fusion")},
        "mrr": {m: hybrid_all[m]["mrr"] for m in ("bm25", "embeddings", "fusion")},
        "queries": {"test_total": hybrid_all["queries"], **report.pop("queries")},
        "fusion_beats_bm25": hybrid_all["fusion"]["mrr"] > hybrid_all["bm25"]["mrr"]
        and hybrid_all["fusion"]["recall_at_10"] > hybrid_all["bm25"]["recall_at_10"],
        "embed_items_per_s": rebuild["full"]["items_per_s"],
        "rebuild_full_s": rebuild["full"]["seconds"],
        "rebuild_incremental_s": rebuild["incremental"]["seconds"],
        "latency_p99_ms_note": "not measured: needs the serving API of issue 15 (HTTP at 50 queries/s); "
        "search_in_process_ms is Searcher.search in one process, no HTTP",
        "search_in_process_ms": rebuild.pop("search_in_process_ms"),
        "index": "exact inner product over float32 unit vectors (numpy BLAS), no ANN library; BM25: bm25s",
        "model": encoder.name,
        "inference": encoder.inference,
        "quality": report,
        "rebuild": rebuild,
        "machine": {**machine_info(), "loadavg_1_5_15_at_start": load_start, "loadavg_1_5_15_at_end": os.getloadavg()},
        "git_commit": git_commit(),
        "command": COMMAND,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "recall_at_10",
                    "mrr",
                    "queries",
                    "embed_items_per_s",
                    "rebuild_full_s",
                    "rebuild_incremental_s",
                    "search_in_process_ms",
                )
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
