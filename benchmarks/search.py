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
  and timed, and distinct queries are timed in-process;
- **through the API**: ``recomart serve``'s uvicorn on that database, ``GET /v1/search`` at a fixed
  50 queries/s for 60 s, every query distinct, sent open-loop (``latency_p99_ms``); Debian's ``hey``
  at the same rate as a cross-check (it repeats one URL per process); ``wrk`` over distinct queries
  for the maximum queries/s.  The machine is shared: the load averages are recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pandas as pd
import psycopg
import redis
from threadpoolctl import threadpool_limits

from recomart import services
from recomart.config import Settings, load_settings
from recomart.features import apply
from recomart.marts import StoredVectors
from recomart.search.fusion import FusionParams, reciprocal_rank_fusion
from recomart.search.minilm import MiniLMEncoder
from recomart.search.searcher import EMBEDDINGS_INDEX, Searcher
from recomart.search.text import product_texts
from recomart.tools import tool_env

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
def _deployment(name: str) -> Settings:
    """The settings of a scratch deployment ``name`` on the configured servers (its databases, Feast
    project, Redis keys and model name), as an API process would see them."""
    overrides = {"RECOMART_DB_PREFIX": name, "RECOMART_FEAST_PROJECT": name, "RECOMART_MODEL_NAME": name}
    return load_settings({**os.environ, **overrides})


def _drop_deployment(s: Settings) -> None:
    services.drop_databases(s)
    client = redis.Redis.from_url(s.redis_url)
    for key in client.scan_iter(match=f"*{s.feast_project}*", count=1000):
        client.delete(key)
    client.close()


def _load_generated_shop(dsn: str, items: int, seed: int) -> pd.DataFrame:
    """The generated shop's catalogue (``items`` products) as ``marts.dim_products``, by COPY."""
    from recomart.datasets.generator import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), users=50, items=items, days=1, seed=seed)
        products = pd.read_csv(Path(tmp) / "products.csv", dtype=str, keep_default_na=False)
    columns = ["item_id", "title", "description", "category", "brand", "price"]
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE SCHEMA IF NOT EXISTS marts; CREATE TABLE marts.dim_products "
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


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Full and 1 % incremental refresh of ``reco.item_embeddings``, searcher build, in-process latency,
    and the latency and maximum requests/s of ``GET /v1/search`` through the API, in a scratch
    deployment (its databases, with the warehouse migrated and Feast's registry applied, as the API
    expects; dropped at the end)."""
    from recomart.search.embed import embed_products

    s = _deployment(f"recomart_bench_search_{os.getpid()}")
    try:
        services.ensure_services(s)
        apply(s.feature_repo_dir, tool_env(s))
        dsn = s.warehouse_url
        items, seed = args.items, args.seed
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
        queries = _distinct_queries(products, args.latency_queries + args.rate * args.http_duration + 20_000, seed)
        latency = _latency(searcher, queries[: args.latency_queries])
        about = searcher.describe()
        del searcher  # the API processes build their own
        api = http_speed(s, queries[args.latency_queries :], args)
    finally:
        _drop_deployment(s)
    return {
        "full": full,
        "incremental": incremental,
        "changed_items": len(changed),
        "searcher_build_s": build_s,
        "searcher": about,
        "search_in_process_ms": latency,
        "api": api,
    }


def _latency(searcher: Searcher, queries: list[str]) -> dict[str, Any]:
    with threadpool_limits(limits=1, user_api="blas"):  # as the API runs queries (one_blas_thread)
        return _timed_queries(searcher, queries)


def _timed_queries(searcher: Searcher, queries: list[str]) -> dict[str, Any]:
    for query in queries[:5]:  # warm-up (numba kernels, BLAS threads), not counted
        searcher.search(query, 10)
    times, cpu_started = [], time.process_time()
    for query in queries:
        started = time.perf_counter()
        searcher.search(query, 10)
        times.append((time.perf_counter() - started) * 1000)
    cpu_ms = (time.process_time() - cpu_started) * 1000 / len(queries)
    ms = np.array(times)
    return {
        "queries": len(ms),
        "k": 10,
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p99": round(float(np.percentile(ms, 99)), 2),
        "max": round(float(ms.max()), 2),
        "qps_one_thread": round(1000 / float(ms.mean()), 1),
        "cpu_ms_per_query": round(cpu_ms, 2),
    }


# --- through the API ----------------------------------------------------------------------------
@contextlib.contextmanager
def search_api(s: Settings, port: int, workers: int) -> Iterator[tuple[str, int]]:
    """``recomart serve``'s uvicorn (``workers`` processes) for deployment ``s``; yields its base URL and
    process id once every worker answers ``/v1/search`` from the embeddings index."""
    from recomart.serving.server import server_env, uvicorn_args

    env = server_env(s, port)  # the tools' settings of deployment s
    process = subprocess.Popen(uvicorn_args(s, "127.0.0.1", port, workers), env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                bodies = [
                    httpx.get(f"{base}/v1/search", params={"q": "warm up"}, timeout=10) for _ in range(4 * workers)
                ]
                if all(b.status_code == 200 and b.json()["index"] == EMBEDDINGS_INDEX for b in bodies):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise RuntimeError(f"{base}/v1/search not serving the embeddings index within 300 s")
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _open_loop(base: str, paths: list[str], rate: float) -> list[tuple[float, int]]:
    """Send ``paths`` at a fixed ``rate`` (request i at i / rate seconds, whether or not earlier ones
    answered), each once; per request (ms from its scheduled start to the end of its response, status)."""
    results: list[tuple[float, int]] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one(path: str, due: float) -> None:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                status = (await client.get(path)).status_code
            except httpx.HTTPError:
                status = 0
            results.append(((time.perf_counter() - due) * 1000, status))

        start = time.perf_counter() + 0.5
        await asyncio.gather(*(one(path, start + i / rate) for i, path in enumerate(paths)))
    return results


def fixed_load(base: str, queries: list[str], rate: int, duration_s: int) -> dict[str, Any]:
    """Every query distinct, ``rate`` per second for ``duration_s``: latency percentiles (open loop, so a
    slow answer delays no later request: no coordinated omission)."""
    paths = [f"/v1/search?{urlencode({'q': q, 'k': 10})}" for q in queries[: rate * duration_s]]
    results = asyncio.run(_open_loop(base, paths, rate))
    ms = np.array([t for t, status in results if status == 200])
    return {
        "client": "open-loop asyncio + httpx (keep-alive), latency from each request's scheduled send time",
        "offered_rps": rate,
        "duration_s": duration_s,
        "requests": len(results),
        "distinct_queries": len(set(paths)),
        "answered_share": round(len(ms) / len(results), 4),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its children (uvicorn's workers)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0.0
    for each in [str(pid), *children]:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def http_speed(s: Settings, queries: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The search route through a real uvicorn: the fixed load (distinct queries), hey at the same rate
    (hey repeats one URL per process), wrk's maximum requests/s over distinct queries."""
    from benchmarks.serving import ensure_tools, hey_fixed_load, wrk_max

    ensure_tools()
    paths = [f"/v1/search?{urlencode({'q': q, 'k': 10})}" for q in queries]
    fixed_n = args.rate * args.http_duration
    with search_api(s, args.port, args.workers) as (base, pid), tempfile.TemporaryDirectory() as tmp:
        loadavg_start = [round(x, 2) for x in os.getloadavg()]
        cpu_before = _tree_cpu_s(pid)
        fixed = fixed_load(base, queries, args.rate, args.http_duration)
        fixed["server_cpu_ms_per_request"] = round((_tree_cpu_s(pid) - cpu_before) * 1000 / fixed["requests"], 2)
        hey = hey_fixed_load(base, paths[fixed_n:], args.rate, args.hey_processes, args.http_duration)
        hey["note"] = f"{args.hey_processes} hey processes of one connection, each repeating one distinct query"
        maximum = wrk_max(
            base, paths[fixed_n + args.hey_processes :], args.wrk_connections, args.wrk_duration, Path(tmp)
        )
        maximum.update(connections=args.wrk_connections, duration_s=args.wrk_duration, tool="wrk (closed loop)")
        body = httpx.get(base + paths[0]).json()
    return {
        "route": "GET /v1/search?q=...&k=10",
        "workers": args.workers,
        "items": body["index_items"],
        "index": body["index"],
        "query_cache": "none (the API has no search cache)",
        "fixed_load": fixed,
        "hey_fixed_load": hey,
        "max": maximum,
        "loadavg_1_5_15_start": loadavg_start,
        "loadavg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
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
    p.add_argument("--rate", type=int, default=50, help="offered queries/s of the fixed load through the API")
    p.add_argument("--http-duration", type=int, default=60, help="seconds of the fixed load (and of hey's)")
    p.add_argument("--hey-processes", type=int, default=10)
    p.add_argument("--wrk-connections", type=int, default=8)
    p.add_argument("--wrk-duration", type=int, default=30)
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers of the API")
    p.add_argument("--port", type=int, default=18760)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    commit = git_commit()  # of the code this run loads (later commits during the run do not count)
    load_start = os.getloadavg()
    encoder = MiniLMEncoder()
    report = quality(args.shared, encoder, args.uci_queries, args.movielens_queries, args.seed)
    rebuild = speed(args)
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
        "rebuild_targets_met": {
            "full_under_300_s": rebuild["full"]["seconds"] < 300,
            "incremental_under_10_s": rebuild["incremental"]["seconds"] < 10,
        },
        "rebuild_full_embed_cpu_s": rebuild["full"]["embed_cpu_s"],
        "latency_p99_ms": rebuild["api"]["fixed_load"]["p99_ms"],
        "latency_p99_target_met": rebuild["api"]["fixed_load"]["p99_ms"] <= 20,
        "max_queries_per_s": rebuild["api"]["max"]["max_rps"],
        "latency_note": f"GET /v1/search through uvicorn ({args.workers} workers) at {args.rate} distinct queries/s "
        "(rebuild.api); the machine is shared with other sessions (load averages in rebuild.api and machine)",
        "search_in_process_ms": rebuild.pop("search_in_process_ms"),
        "index": "in-process, no ANN library: int8 codes pick candidates, exact float32 inner products order "
        "them (numpy BLAS + numba); BM25: bm25s",
        "model": encoder.name,
        "inference": encoder.inference,
        "quality": report,
        "rebuild": rebuild,
        "machine": {**machine_info(), "loadavg_1_5_15_at_start": load_start, "loadavg_1_5_15_at_end": os.getloadavg()},
        "git_commit": commit,
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
                    "latency_p99_ms",
                    "max_queries_per_s",
                    "search_in_process_ms",
                )
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
