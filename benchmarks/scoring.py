"""Scoring and write-back speed: ``.venv/bin/python -m benchmarks.scoring`` writes ``benchmarks/results/scoring.json``.

At 100k users × 20k items × 64 factors (float32, seeded random factors), every measurement runs in
its own child process with the same BLAS / numba thread counts and the same block size:

- ``gemm_s``: the bare ``np.matmul(P[block], Q.T, out=buf)`` over every user block, into one
  block-sized result buffer allocated per pass (as the scorer does);
- ``total_s``: the BiasedSVD scoring the nightly job runs, ``recommend_top_k``: the same GEMM per
  block into its buffer, then the numba selection adding ``bi``, masking each user's seen items and
  keeping the top k (``mu + bu`` added to the k selected scores);
  both are the best of ``--repeats`` passes, measured alternately in the same process;
- ``peak_rss_mb``: ``ru_maxrss`` of a child that only builds the arrays and runs ``total`` once;
- ``speedup_vs_surprise_predict``: a real ``surprise.SVD`` (fitted on a tiny set, then given these
  factors and a trainset knowing every id) ranks a sample of users with per-pair ``algo.predict``
  over their unseen items and ``heapq.nlargest``; the per-user time is scaled to all users;
- ``hybrid_total_s``: ``HybridRecommender.rank`` of the full hybrid (SVD, item-item, content,
  popularity) for every user against the history of synthetic marts of the same shape, the very call
  the nightly job and the pyfunc make (fitting the components, ``hybrid_fit_s``, reported separately);
- write-back: the top-10 rows (``users × 10``) published by ``writer.publish`` (COPY into staging,
  indexes, ANALYZE, atomic rename swap) against ``psql \\copy`` of the same rows from a CSV file into
  an unindexed table, on a scratch database created and dropped here; a reader on another
  connection polls the row count throughout a second swap and must only see the old or new count.

Keys that other benchmarks merge into the file (``historical_10k*``, :mod:`benchmarks.feast_lookup`;
``ranker_*`` and ``nightly_ranker_s``, :mod:`benchmarks.ranker_speed`) are kept from the file it replaces.

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are inherited unchanged by every child; the BLAS build and
kernel in use (threadpoolctl) are recorded in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recomart.environment import THREAD_POOL_ENV

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scoring.json"
COMMAND = ".venv/bin/python -m benchmarks.scoring"
#: Prefixes of the keys other benchmarks merge into scoring.json, kept when this one rewrites it.
MERGED_BY_OTHERS = ("historical_10k", "ranker_", "nightly_ranker_s")


def merged_by_others(previous: dict[str, Any]) -> dict[str, Any]:
    """The keys of the file being replaced that other benchmarks merged into it (:data:`MERGED_BY_OTHERS`)."""
    return {key: value for key, value in previous.items() if key.startswith(MERGED_BY_OTHERS)}


# --- shared data --------------------------------------------------------------------------------
def make_model(users: int, items: int, factors: int, seed: int):
    """A FactorModel with seeded random float32 factors and biases."""
    from recomart.ranking.factors import FactorModel

    rng = np.random.default_rng(seed)
    return FactorModel(
        user_ids=np.char.add("u", np.arange(users).astype(str)).astype(object),
        item_ids=np.char.add("i", np.arange(items).astype(str)).astype(object),
        global_mean=3.5,
        user_bias=rng.normal(0, 0.2, users).astype(np.float32),
        item_bias=rng.normal(0, 0.2, items).astype(np.float32),
        user_factors=rng.normal(0, 0.1, (users, factors)).astype(np.float32),
        item_factors=rng.normal(0, 0.1, (items, factors)).astype(np.float32),
    )


def make_seen(users: int, items: int, per_user: int, seed: int):
    """CSR users × items with ``per_user`` random seen items per user (sorted indices)."""
    from scipy import sparse

    rng = np.random.default_rng(seed + 1)
    rows = np.repeat(np.arange(users), per_user)
    cols = rng.integers(0, items, users * per_user)
    seen = sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(users, items))
    seen.sum_duplicates()
    seen.data[:] = 1
    seen.sort_indices()
    return seen


def blas_info() -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_info

    return threadpool_info()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- children -----------------------------------------------------------------------------------
def _gemm_pass(model, block: int) -> float:
    """The bare ``P[block] @ Q.T`` of every user block into one result buffer allocated per pass."""
    p, q_t = model.user_factors, model.item_factors.T
    t = time.perf_counter()
    out = np.empty((min(block, model.n_users), model.n_items), dtype=np.float32)
    for start in range(0, model.n_users, block):
        stop = min(start + block, model.n_users)
        np.matmul(p[start:stop], q_t, out=out[: stop - start])
    return time.perf_counter() - t


def _total_pass(model, seen, block: int, k: int) -> float:
    """``recommend_top_k`` of every user (biases, seen items masked, top-k) with the same block size."""
    from recomart.ranking.scoring import recommend_top_k

    rows = np.arange(model.n_users)
    t = time.perf_counter()
    recommend_top_k(model, rows, k, seen, block_size=block)
    return time.perf_counter() - t


def child_svd(a: argparse.Namespace) -> dict[str, Any]:
    import numba

    from recomart.ranking.scoring import recommend_top_k

    model = make_model(a.users, a.items, a.factors, a.seed)
    seen = make_seen(a.users, a.items, a.seen, a.seed)
    recommend_top_k(model, np.arange(8), a.k, seen)  # JIT warm-up (cached)
    _gemm_pass(make_model(a.block_size, a.items, a.factors, a.seed), a.block_size)  # BLAS warm-up
    gemm, total = [], []
    for _ in range(a.repeats):
        gemm.append(_gemm_pass(model, a.block_size))
        total.append(_total_pass(model, seen, a.block_size, a.k))
    return {
        "gemm_s": min(gemm),
        "total_s": min(total),
        "gemm_runs_s": gemm,
        "total_runs_s": total,
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": numba.threading_layer(),
        "blas": blas_info(),
        "child_peak_rss_mb": peak_rss_mb(),
    }


def child_rss(a: argparse.Namespace) -> dict[str, Any]:
    model = make_model(a.users, a.items, a.factors, a.seed)
    seen = make_seen(a.users, a.items, a.seen, a.seed)
    before = peak_rss_mb()
    took = _total_pass(model, seen, a.block_size, a.k)
    return {"peak_rss_mb": peak_rss_mb(), "rss_before_scoring_mb": before, "total_s": took}


def child_surprise(a: argparse.Namespace) -> dict[str, Any]:
    """Per-pair ``algo.predict`` of a real surprise SVD carrying the benchmark's factors."""
    import heapq

    from surprise import SVD, Dataset, Reader, Trainset

    model = make_model(a.users, a.items, a.factors, a.seed)
    seen = make_seen(a.users, a.items, a.seen, a.seed)
    tiny = pd.DataFrame({"u": ["a", "a", "b"], "i": ["x", "y", "x"], "r": [4.0, 3.0, 5.0]})
    algo = SVD(n_factors=a.factors, n_epochs=1, random_state=0)
    algo.fit(Dataset.load_from_df(tiny, Reader(rating_scale=(0, 5))).build_full_trainset())
    uids, iids = [str(u) for u in model.user_ids], [str(i) for i in model.item_ids]
    trainset = Trainset(
        {u: [] for u in range(a.users)},
        {i: [] for i in range(a.items)},
        a.users,
        a.items,
        0,
        (0, 5),
        {raw: n for n, raw in enumerate(uids)},
        {raw: n for n, raw in enumerate(iids)},
    )
    trainset._global_mean = model.global_mean
    algo.trainset = trainset
    algo.pu = model.user_factors.astype(np.float64)
    algo.qi = model.item_factors.astype(np.float64)
    algo.bu = model.user_bias.astype(np.float64)
    algo.bi = model.item_bias.astype(np.float64)
    sample = np.random.default_rng(a.seed + 2).choice(a.users, size=a.surprise_users, replace=False)
    check = None
    t = time.perf_counter()
    for u in sample:
        masked = set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist())
        preds = [algo.predict(uids[u], iids[i], clip=False) for i in range(a.items) if i not in masked]
        best = heapq.nlargest(a.k, preds, key=lambda p: p.est)
        check = check or (u, [p.iid for p in best])
    took = time.perf_counter() - t
    # the same user's top-k from the vectorised scorer must agree with surprise's
    from recomart.ranking.scoring import recommend_top_k

    u, want = check
    idx, _ = recommend_top_k(model, np.array([u]), a.k, seen)
    agree = [iids[i] for i in idx[0]] == want
    return {
        "surprise_users_timed": int(a.surprise_users),
        "surprise_pairs_timed": int(a.surprise_users * a.items),
        "surprise_s_per_user": took / a.surprise_users,
        "surprise_scaled_total_s": took / a.surprise_users * a.users,
        "surprise_top_k_agrees": bool(agree),
    }


def synthetic_marts(users: int, items: int, per_user: int, seed: int):
    """Ratings (Zipf-ish item popularity), users with segments and a text catalogue of that shape."""
    rng = np.random.default_rng(seed + 3)
    user_ids = np.char.add("u", np.arange(users).astype(str)).astype(object)
    item_ids = np.char.add("i", np.arange(items).astype(str)).astype(object)
    weights = 1.0 / np.arange(1, items + 1) ** 0.8
    n = users * per_user
    ratings = pd.DataFrame(
        {
            "user_id": np.repeat(user_ids, per_user),
            "item_id": item_ids[rng.choice(items, n, p=weights / weights.sum())],
        }
    ).drop_duplicates()
    m = len(ratings)
    ratings["rating"] = rng.uniform(1, 5, m)
    ratings["purchases"] = (rng.random(m) < 0.3).astype(int)
    ratings["last_interaction_at"] = pd.Timestamp("2026-01-31", tz="UTC") - pd.to_timedelta(
        rng.integers(0, 180 * 86400, m), unit="s"
    )
    words = np.array([f"w{j}" for j in range(3000)])
    cats = np.array([f"category {j}" for j in range(60)])
    products = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": [" ".join(t) for t in words[rng.integers(0, len(words), (items, 4))]],
            "description": [" ".join(t) for t in words[rng.integers(0, len(words), (items, 8))]],
            "category": cats[rng.integers(0, len(cats), items)],
            "brand": np.char.add("brand", rng.integers(0, 300, items).astype(str)),
            "price": np.round(rng.uniform(1, 300, items), 2),
        }
    )
    users_frame = pd.DataFrame({"user_id": user_ids, "segment": np.array(["new", "regular", "vip"])[user_ids.size % 3]})
    users_frame["segment"] = np.array(["new", "regular", "vip"])[rng.integers(0, 3, users)]
    return ratings, users_frame, products


def child_hybrid(a: argparse.Namespace) -> dict[str, Any]:
    from recomart.ranking.base import TrainingSet
    from recomart.ranking.blend import BlendWeights
    from recomart.ranking.hybrid import HybridRecommender
    from recomart.ranking.svd import BiasedSVD

    ratings, users, products = synthetic_marts(a.users, a.items, a.seen, a.seed)
    model = make_model(a.users, a.items, a.factors, a.seed)
    weights = BlendWeights(cf=0.3, content=0.15, popularity=0.2, item_item=0.35)
    t = time.perf_counter()
    recommender = HybridRecommender(weights=weights, svd=BiasedSVD.from_factors(model))
    recommender.fit(TrainingSet.build(ratings, products, users))
    fitted = time.perf_counter() - t
    t = time.perf_counter()
    recs = recommender.rank(users, ratings, k=a.k, block_size=a.hybrid_block_size)
    took = time.perf_counter() - t
    if a.rows_out:
        recs = recs.assign(model_version="bench")
        recs.insert(0, "generation_id", 1)
        recs.to_parquet(a.rows_out, index=False)
    return {
        "hybrid_total_s": took,
        "hybrid_fit_s": fitted,
        "hybrid_block_size": a.hybrid_block_size,
        "hybrid_rows": len(recs),
        "hybrid_ratings": len(ratings),
        "hybrid_similar_pairs": int(recommender.item_item.similarity.nnz),
        "hybrid_strategies": {str(k): int(v) for k, v in recs["strategy"].value_counts().items()},
        "hybrid_peak_rss_mb": peak_rss_mb(),
    }


CHILDREN = {"svd": child_svd, "rss": child_rss, "surprise": child_surprise, "hybrid": child_hybrid}


def run_child(name: str, a: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter with the parent's environment plus the thread-pool
    settings every RecoMart process gets (:data:`recomart.environment.THREAD_POOL_ENV`); parse its JSON line."""
    args = [sys.executable, "-m", "benchmarks.scoring", "--child", name, *_forward(a)]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    t = time.perf_counter()
    env = {**os.environ, **THREAD_POOL_ENV}  # what the Airflow task processes get (service_env)
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[{name}] {time.perf_counter() - t:.1f}s {json.dumps({k: v for k, v in out.items() if k != 'blas'})}")
    return out


def _forward(a: argparse.Namespace) -> list[str]:
    keys = ("users", "items", "factors", "block_size", "hybrid_block_size", "k", "seen", "repeats", "seed")
    out = []
    for key in keys:
        out += [f"--{key.replace('_', '-')}", str(getattr(a, key))]
    return out + ["--surprise-users", str(a.surprise_users)]


# --- write-back ---------------------------------------------------------------------------------
def _scratch_dsn(server_url: str, name: str) -> tuple[str, str]:
    from psycopg.conninfo import make_conninfo

    admin = make_conninfo(server_url)
    return admin, make_conninfo(admin, dbname=name)


def _psql_env(dsn: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGHOST=str(p.get("host", "127.0.0.1")),
        PGPORT=str(p.get("port", 5432)),
        PGUSER=str(p.get("user", "postgres")),
        PGDATABASE=str(p["dbname"]),
    )
    if p.get("password"):
        env["PGPASSWORD"] = str(p["password"])
    return env


def writeback(server_url: str, rows: pd.DataFrame, a: argparse.Namespace) -> dict[str, Any]:
    """Time ``publish`` of ``rows`` against ``psql \\copy`` of the same rows; poll a reader during a swap."""
    import psycopg
    from psycopg import sql

    from recomart.recommend.tables import USER_RECOMMENDATIONS
    from recomart.recommend.writer import publish

    name = f"recomart_bench_scoring_{os.getpid()}"
    admin, dsn = _scratch_dsn(server_url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        spec = USER_RECOMMENDATIONS
        rows = rows[spec.columns]
        quiet = lambda _msg: None  # noqa: E731
        # warm-up (catalog caches, role) on a small publish, then the timed ones
        publish(dsn, [(spec, rows.head(1000))], log=quiet)
        write_runs = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            publish(dsn, [(spec, rows)], log=quiet)
            write_runs.append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rows.csv"
            rows.to_csv(path, header=False, index=False, na_rep="")
            cols = ", ".join(spec.columns)
            ddl = ", ".join(f"{c} {t}" for c, t in spec.columns_ddl)
            copy_runs = []
            for n in range(a.repeats):
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"DROP TABLE IF EXISTS reco.copy_probe_{n}")
                    conn.execute(f"CREATE TABLE reco.copy_probe_{n} ({ddl})")
                cmd = [
                    "psql",
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    f"\\copy reco.copy_probe_{n} ({cols}) FROM '{path}' WITH (FORMAT csv)",
                ]
                t = time.perf_counter()
                subprocess.run(cmd, env=_psql_env(dsn), check=True, capture_output=True)
                copy_runs.append(time.perf_counter() - t)
        with psycopg.connect(dsn) as conn:
            copied = conn.execute("SELECT count(*) FROM reco.copy_probe_0").fetchone()[0]
            live = conn.execute("SELECT count(*) FROM reco.user_recommendations").fetchone()[0]
        assert copied == live == len(rows), (copied, live, len(rows))
        reader = swap_under_reader(dsn, spec, rows, publish, quiet)
        write_s, copy_s = min(write_runs), min(copy_runs)
        return {
            "write_rows": len(rows),
            "write_s": write_s,
            "write_runs_s": write_runs,
            "copy_s": copy_s,
            "copy_runs_s": copy_runs,
            "write_rows_per_s": len(rows) / write_s,
            "copy_rows_per_s": len(rows) / copy_s,
            "write_ratio": copy_s / write_s,
            "swap_reader": reader,
            "postgres_version": _server_version(dsn),
        }
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _server_version(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def swap_under_reader(dsn: str, spec, rows: pd.DataFrame, publish, log) -> dict[str, Any]:
    """Publish ``rows`` minus its last user while another connection polls the count; only the old or
    the new count may ever be seen."""
    import psycopg

    old = len(rows)
    last_user = rows["user_id"].iloc[-1]
    new_rows = rows[rows["user_id"] != last_user]
    new = len(new_rows)
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def poll() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                while not stop.is_set():
                    seen.append(conn.execute(f"SELECT count(*) FROM {spec.schema}.{spec.name}").fetchone()[0])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    time.sleep(0.3)
    t = time.perf_counter()
    publish(dsn, [(spec, new_rows)], log=log)
    took = time.perf_counter() - t
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=60)
    counts = sorted(set(seen))
    flips = sum(1 for x, y in zip(seen, seen[1:], strict=False) if x != y)
    ok = not errors and set(seen) <= {old, new} and seen[0] == old and seen[-1] == new and flips == 1
    result = {
        "old_rows": old,
        "new_rows": new,
        "polls": len(seen),
        "counts_seen": counts,
        "flips": flips,
        "publish_s": took,
        "only_old_or_new": ok,
        "errors": [repr(e) for e in errors],
    }
    if not ok:
        raise AssertionError(f"reader saw something other than the old or new generation: {result}")
    return result


# --- main ---------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "openblas_env": {
            k: os.environ.get(k)
            for k in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OPENBLAS_NUM_THREADS",
                "OMP_NUM_THREADS",
                "NUMBA_NUM_THREADS",
            )
        },
        "child_thread_pool_env": THREAD_POOL_ENV,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--block-size", type=int, default=1024)
    p.add_argument("--hybrid-block-size", type=int, default=1024)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seen", type=int, default=20, help="seen (masked) items per user")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--surprise-users", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--pg-url", default=None, help="server URL (default: the project's settings)")
    p.add_argument("--skip-db", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--rows-out", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    a = parse_args(argv)
    if a.child:
        print(json.dumps(CHILDREN[a.child](a), default=str))
        return None
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    result: dict[str, Any] = {
        "users": a.users,
        "items": a.items,
        "factors": a.factors,
        "dtype": "float32",
        "block_size": a.block_size,
        "k": a.k,
        "seen_per_user": a.seen,
    }
    svd = run_child("svd", a)
    result.update(
        total_s=svd["total_s"],
        gemm_s=svd["gemm_s"],
        ratio_total_to_gemm=svd["total_s"] / svd["gemm_s"],
        total_runs_s=svd["total_runs_s"],
        gemm_runs_s=svd["gemm_runs_s"],
        numba_threads=svd["numba_threads"],
        numba_threading_layer=svd["numba_threading_layer"],
        blas=svd["blas"],
    )
    rss = run_child("rss", a)
    result.update(peak_rss_mb=rss["peak_rss_mb"], rss_before_scoring_mb=rss["rss_before_scoring_mb"])
    sur = run_child("surprise", a)
    result.update(sur, speedup_vs_surprise_predict=sur["surprise_scaled_total_s"] / svd["total_s"])
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = Path(tmp) / "rows.parquet"
        hyb = run_child("hybrid", a, rows_out=rows_path)
        result.update(hyb)
        if not a.skip_db:
            from recomart.config import settings

            server = a.pg_url or settings().pg_server_url
            result.update(writeback(server, pd.read_parquet(rows_path), a))
            print(f"[writeback] {json.dumps({k: v for k, v in result.items() if 'write' in k or 'copy' in k})}")
    result["targets"] = {
        "ratio_total_to_gemm<=2": result["ratio_total_to_gemm"] <= 2.0,
        "speedup_vs_surprise_predict>=100": result["speedup_vs_surprise_predict"] >= 100.0,
        "peak_rss_mb<2048": result["peak_rss_mb"] < 2048.0,
        **({"write_ratio>=0.8": result["write_ratio"] >= 0.8} if "write_ratio" in result else {}),
    }
    result.update(
        machine={**machine_info(), "loadavg_1_5_15_at_start": load_at_start, "loadavg_1_5_15_at_end": os.getloadavg()},
        command=COMMAND + (" " + " ".join(argv) if argv else ""),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        benchmark_seconds=round(time.perf_counter() - started, 1),
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(a.out.read_text()) if a.out.exists() else {}
    a.out.write_text(json.dumps({**result, **merged_by_others(previous)}, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("blas", "machine")}, indent=2, default=str))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
