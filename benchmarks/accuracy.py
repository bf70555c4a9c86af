"""Accuracy on real data: ``.venv/bin/python -m benchmarks.accuracy`` writes ``benchmarks/results/accuracy.json``.

MovieLens latest-small (``--movielens``, default ``../shared/data/movielens-latest-small``):
- explicit mode, 5-fold RMSE (surprise's ``KFold``, seeded): the tuned ``SVD(biased=True)`` picks its
  hyper-parameters with 3 inner folds *inside each outer training fold* (surprise ``GridSearchCV``
  on the outer training ratings only), and surprise's default ``SVD()`` runs on the same outer folds;
- implicit-mode ranking on the per-user 75/25 split (seeded): every method sees only the 75 %, the
  SVD tunes on a validation part carved out of it, and P@10 / nDCG@10 are measured on the 25 %.

UCI Online Retail (``--uci``, default ``../shared/data/uci-online-retail``): read with pandas from
``online_retail_all.csv.gz`` when present, else from the 305 ``by-day/*.csv`` files (the same rows), and
cleaned with the rules of the dbt project (``dbt_project/macros/uci_exclusion_rules.sql`` and the vars in
``dbt_project.yml``): customer present, invoice not starting with 'C', no exact duplicate line, product
codes only (no POST, DOT, M, C2, D, S, B, BANK CHARGES, AMAZONFEE, CRUK, gift_0001_*), quantity > 0,
unit price > 0, quantity <= 10000; InvoiceDate is UK local time, converted to UTC. Time-based split: the
last 30 days are the test window; methods see only the earlier days (the SVD tunes on the 30 days before
the test window).  Two declared settings, both over test users who bought before the window:
- discovery: items the user bought before are excluded from the ranking and from the relevant set;
- replenishment: repeat purchases count (nothing excluded, every item bought in the window is relevant).

Every method is a *scorer* ``fn(train_df, users) -> array[len(users), k]`` of item ids (``None`` pads),
given only the training frame (``user_id, item_id, rating, event_timestamp`` and, for UCI,
``purchases`` and ``quantity``; one row per user-item pair, built from the order lines with
``recomart.model.split.pairs_from_events``, as the train DAG does for UCI).  The SVD settings, search
space and trial count are those of ``recomart.model.config.TrainingConfig`` (the train DAG's), with an
unlimited tuning budget so the chosen parameters never depend on machine load; the SVD is tuned once
per setting on the validation splitter and both the SVD row and the hybrid use the tuned parameters.
Extra scorers (the hybrid and its components) are picked up from
``recomart.model.offline.benchmark_scorers(dataset, setting, k)`` when that module exists:
``dataset`` is ``ml_latest_small`` or ``uci``, ``setting`` is ``ranking``, ``discovery`` or
``replenishment``; it returns ``{name: scorer}`` and each name becomes keys ``<name>_p_at_10`` /
``<name>_ndcg_at_10`` (MovieLens) and ``<name>_<setting>_ndcg_at_10`` (UCI).  The hook also receives the
configuration, the tuned SVD parameters, the benchmark's validation splitter (the one the SVD tunes on;
for UCI it rebuilds the fit part from the order lines before the cut) and a ``record`` dict for its fit
evidence (the hybrid's weights, component options and validation nDCG), saved under
``details.*.hybrid_fit``; the stand-alone candidate generators (``ease``, ``rp3beta``:
``recomart.model.component_search``) choose their parameters on the same validation splitter and record
every trial under ``details.*.candidates_fit``; the learned ranker (``ranker``:
``recomart.model.ranker_fit``) is fitted on the same validation window and records its chosen generator
parameters, candidate recall, early stopping and feature importances by gain under
``details.*.candidates_fit.ranker``.  In discovery, any item a scorer returns that the user
already bought is blanked before scoring.

``--only ease,rp3beta`` (or ``--only ranker``) runs only the named scorers on the same splits (no RMSE,
no SVD tuning: a hybrid blends the SVD parameters the last full run tuned) and merges their rows into the
existing ``--out`` (read again just before the merge, so a section another benchmark wrote meanwhile,
e.g. ``generated`` by :mod:`benchmarks.accuracy_generated`, is kept): every other figure is left as the
last full run wrote it, the evaluation sets must match it (users, relevant pairs, items), and
``meta.partial_runs`` records the run (the fit evidence of scorers that did not run is kept as stored).
The ranker's candidates per generator ``N`` are chosen on each validation window
(:func:`recomart.model.ranker_fit.choose_n_candidates`), recorded under
``details.*.candidates_fit.ranker.n_candidates_choice`` and summarised as ``ml_latest_small.ranker_n_candidates``
and ``uci.ranker_n_candidates_<setting>``.

Item embeddings (issue 18): with the search extra, each catalogue's products are embedded with
all-MiniLM-L6-v2 (:mod:`benchmarks.catalogue_vectors`) and passed to the hook, which adds
``content_tfidf`` / ``content_blend`` / ``content_embed`` rows (the content component with TF-IDF, half
embeddings, embeddings alone) and lets the hybrid's validation search try the embeddings; the variant
the validation window chose is ``content_validation_choice`` (MovieLens) and
``content_validation_choice_<setting>`` (UCI), its evidence under ``details.*.hybrid_fit.content``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.catalogue_vectors import catalogue_vectors
from recomart.model.config import TrainingConfig
from recomart.model.split import pairs_from_events, per_user_random_split, per_user_three_way_split, time_days_split
from recomart.model.tuning import svd_candidates, tune
from recomart.ranking import metrics as M
from recomart.ranking.scoring import recommend_top_k, static_top_k, top_k
from recomart.ranking.svd import fit_biased_svd

log = logging.getLogger("benchmarks.accuracy")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "accuracy.json"
K = 10
SEED = 42

Scorer = Callable[[pd.DataFrame, np.ndarray], np.ndarray]

# explicit RMSE: a small grid, searched with inner folds inside each outer training fold
RMSE_GRID: dict[str, list[Any]] = {
    "n_factors": [100],
    "n_epochs": [20, 40],
    "lr_all": [0.005, 0.01],
    "reg_all": [0.02, 0.1],
}
# implicit ranking: the train DAG's configuration; every trial runs, so the chosen parameters never
# depend on machine load
CONFIG = TrainingConfig(seed=SEED, tuning_budget_s=float("inf"))

# --- UCI cleaning: mirrors the dbt project's rules (uci_exclusion_rules.sql + dbt_project.yml vars) ---
UCI_NON_PRODUCT_CODES = frozenset({"POST", "DOT", "M", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"})
UCI_NON_PRODUCT_PREFIX = "GIFT_0001_"
UCI_MAX_LINE_QUANTITY = 10_000
UCI_SOURCE_TIMEZONE = "Europe/London"
UCI_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


# --- evaluation loop -----------------------------------------------------------------------------
def evaluate_scorers(
    train: pd.DataFrame,
    test: pd.DataFrame,
    scorers: dict[str, Scorer],
    *,
    k: int = K,
    exclude_seen: bool = True,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Ranking metrics at ``k`` of each scorer on ``test``, given only ``train``.

    Users: test users present in ``train`` with at least one relevant item of the train catalogue.
    With ``exclude_seen`` (discovery, and MovieLens where a film is rated once) relevant items exclude
    the user's train items, and any train item a scorer returns is blanked.
    """
    users = pd.Index(np.sort(train["user_id"].astype(str).unique()))
    items = pd.Index(np.sort(train["item_id"].astype(str).unique()))
    seen = _pair_matrix(train, users, items)
    tu = users.get_indexer(test["user_id"].astype(str).to_numpy())
    ti = items.get_indexer(test["item_id"].astype(str).to_numpy())
    ok = (tu >= 0) & (ti >= 0)
    rel = sp.csr_matrix((np.ones(int(ok.sum()), np.int8), (tu[ok], ti[ok])), shape=seen.shape)
    rel.sum_duplicates()
    rel.data[:] = 1
    if exclude_seen:
        rel = (rel - rel.multiply(seen)).tocsr()
        rel.eliminate_zeros()
    rows = np.flatnonzero(np.diff(rel.indptr) > 0)
    relevant = rel[rows]
    eval_users = users.to_numpy()[rows]
    out: dict[str, dict[str, float]] = {}
    for name, scorer in scorers.items():
        t = time.perf_counter()
        ids = np.asarray(scorer(train, eval_users), dtype=object)
        if ids.shape != (len(eval_users), k):
            raise ValueError(f"scorer {name} returned shape {ids.shape}, expected {(len(eval_users), k)}")
        codes = items.get_indexer(pd.Series(ids.ravel()).astype(str).where(pd.notna(ids.ravel())).to_numpy())
        codes = codes.reshape(ids.shape).astype(np.int64)
        if exclude_seen:
            codes[M.hit_matrix(codes, seen[rows])] = -1
        out[name] = {**M.ranking_metrics(codes, relevant, k), "seconds": time.perf_counter() - t}
    info = {"n_eval_users": int(len(eval_users)), "n_relevant_pairs": int(relevant.nnz), "n_items": int(len(items))}
    return out, info


def _pair_matrix(df: pd.DataFrame, users: pd.Index, items: pd.Index, values: np.ndarray | None = None) -> sp.csr_matrix:
    u = users.get_indexer(df["user_id"].astype(str).to_numpy())
    i = items.get_indexer(df["item_id"].astype(str).to_numpy())
    ok = (u >= 0) & (i >= 0)
    data = np.ones(int(ok.sum()), np.float32) if values is None else np.asarray(values, np.float32)[ok]
    mat = sp.csr_matrix((data, (u[ok], i[ok])), shape=(len(users), len(items)))
    mat.sum_duplicates()
    if values is None:
        mat.data[:] = 1
    return mat


def _ids(items: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.asarray(items, dtype=object)[np.where(idx >= 0, idx, 0)]
    out[idx < 0] = None
    return out


# --- built-in scorers ------------------------------------------------------------------------------
def popularity_scorer(*, exclude_seen: bool, k: int = K) -> Scorer:
    """Items by number of training users (ties: item id order), the user's own items masked if asked."""

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        uidx = pd.Index(np.sort(train["user_id"].astype(str).unique()))
        items = pd.Index(np.sort(train["item_id"].astype(str).unique()))
        seen = _pair_matrix(train, uidx, items)
        pop = np.asarray(seen.sum(axis=0)).ravel().astype(np.float32)
        rows = uidx.get_indexer(pd.Series(users).astype(str).to_numpy())
        idx, _ = static_top_k(pop, len(users), k, seen if exclude_seen else None, rows if exclude_seen else None)
        return _ids(items.to_numpy(), idx)

    return score


def buy_again_scorer(*, k: int = K, block_size: int = 2048) -> Scorer:
    """The user's own purchase counts, best first; ties and empty slots go to popular items."""

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        uidx = pd.Index(np.sort(train["user_id"].astype(str).unique()))
        items = pd.Index(np.sort(train["item_id"].astype(str).unique()))
        counts = _pair_matrix(train, uidx, items, train["purchases"].to_numpy(np.float32))
        pop = np.asarray((counts > 0).sum(axis=0)).ravel().astype(np.float64)
        prior = (pop / (pop.max() + 1.0)).astype(np.float32)  # < 1: only breaks ties between own counts
        rows = uidx.get_indexer(pd.Series(users).astype(str).to_numpy())
        out = np.empty((len(users), k), dtype=object)
        for start in range(0, len(users), block_size):
            r = rows[start : start + block_size]
            own = counts[np.where(r >= 0, r, 0)].toarray()
            own[r < 0] = 0.0
            idx, _ = top_k(own + prior[None, :], k)
            out[start : start + block_size] = _ids(items.to_numpy(), idx)
        return out

    return score


def _svd_top(train: pd.DataFrame, users: np.ndarray, params: dict[str, Any], exclude_seen: bool, k: int) -> np.ndarray:
    model, _ = fit_biased_svd(train, CONFIG.svd_settings(params))
    rows = model.user_index(users)
    exclude = model.interactions(train["user_id"], train["item_id"]) if exclude_seen else None
    idx, _ = recommend_top_k(model, rows, k, exclude, rows)
    return _ids(model.item_ids, idx)


def tune_svd_params(
    train: pd.DataFrame,
    *,
    exclude_seen: bool,
    validation: Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]],
    k: int = K,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Implicit BiasedSVD parameters chosen on ``validation(train)`` (nDCG@k) among the configuration's
    candidates; the chosen parameters, the trials and the seconds go to ``record``."""
    started = time.perf_counter()
    fit_part, valid_part = validation(train)

    def on_valid(params: dict[str, Any]) -> dict[str, float]:
        scorer = {"svd": lambda tr, us: _svd_top(tr, us, params, exclude_seen, k)}
        metrics, _ = evaluate_scorers(fit_part, valid_part, scorer, k=k, exclude_seen=exclude_seen)
        return metrics["svd"]

    tuned = tune(on_valid, svd_candidates(CONFIG), metric=f"ndcg_at_{k}", budget_s=CONFIG.tuning_budget_s)
    if record is not None:
        record["svd_params"] = tuned.best_params
        record["svd_valid_ndcg_at_10"] = tuned.best_value
        record["svd_trials"] = [
            {"params": t.params, "valid_ndcg_at_10": t.metrics[f"ndcg_at_{k}"]} for t in tuned.trials
        ]
        record["tuning_seconds"] = time.perf_counter() - started
    return tuned.best_params


def svd_scorer(params: dict[str, Any], *, exclude_seen: bool, k: int = K) -> Scorer:
    """Implicit BiasedSVD with ``params`` fitted on the whole ``train``."""

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        return _svd_top(train, users, params, exclude_seen, k)

    return score


EXTRA_SCORERS_MODULE = "recomart.model.offline"


def extra_scorers(
    dataset: str,
    setting: str,
    k: int = K,
    *,
    module_name: str = EXTRA_SCORERS_MODULE,
    errors: dict[str, str] | None = None,
    **hook_kwargs: Any,
) -> dict[str, Scorer]:
    """Scorers from ``<module_name>.benchmark_scorers(dataset, setting, k, **hook_kwargs)`` if that
    module exists (``hook_kwargs``: ``validation`` splitter, ``record`` dict).

    A missing module gives no extra rows; a failing one is logged and recorded in ``errors`` so the
    core results are still written.
    """
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return {}
        raise
    factory = getattr(module, "benchmark_scorers", None)
    if factory is None:
        log.warning("%s has no benchmark_scorers(dataset, setting, k): no extra rows", module_name)
        return {}
    try:
        scorers = dict(factory(dataset, setting, k, **hook_kwargs))
    except Exception as exc:  # noqa: BLE001 - an optional add-on must not sink the core benchmark
        log.exception("extra scorers for %s/%s failed", dataset, setting)
        if errors is not None:
            errors[f"{dataset}/{setting}"] = repr(exc)
        return {}
    return {name: _guarded(name, fn, k, errors) for name, fn in scorers.items()}


def _guarded(name: str, fn: Scorer, k: int, errors: dict[str, str] | None) -> Scorer:
    """``fn``, but a failure returns empty lists (scores 0) and is recorded instead of raising."""

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        try:
            return fn(train, users)
        except Exception as exc:  # noqa: BLE001 - see extra_scorers
            log.exception("extra scorer %s failed", name)
            if errors is not None:
                errors[name] = repr(exc)
            return np.full((len(users), k), None, dtype=object)

    return score


# --- MovieLens latest-small ------------------------------------------------------------------------
def movielens_rmse(
    ratings: pd.DataFrame, *, n_folds: int = 5, inner_folds: int = 3, seed: int = SEED, n_jobs: int = 2
) -> dict[str, Any]:
    """5-fold RMSE of the nested-tuned SVD and of surprise's default ``SVD()`` on the same folds."""
    from surprise import SVD, Dataset, Reader, accuracy
    from surprise.model_selection import GridSearchCV, KFold

    reader = Reader(rating_scale=(0.5, 5.0))
    data = Dataset.load_from_df(ratings[["user_id", "item_id", "rating"]], reader)
    folds = []
    for fold, (trainset, testset) in enumerate(KFold(n_splits=n_folds, random_state=seed, shuffle=True).split(data)):
        t = time.perf_counter()
        inner = pd.DataFrame(
            [(trainset.to_raw_uid(u), trainset.to_raw_iid(i), r) for u, i, r in trainset.all_ratings()],
            columns=["user_id", "item_id", "rating"],
        )
        search = GridSearchCV(
            SVD,
            RMSE_GRID,
            measures=["rmse"],
            n_jobs=n_jobs,
            cv=KFold(n_splits=inner_folds, random_state=seed + fold, shuffle=True),
        )
        search.fit(Dataset.load_from_df(inner, reader))
        best = search.best_params["rmse"]
        tuned = SVD(biased=True, random_state=seed, **best).fit(trainset)
        default = SVD(random_state=seed).fit(trainset)
        folds.append(
            {
                "fold": fold,
                "best_params": best,
                "inner_rmse": float(search.best_score["rmse"]),
                "rmse": float(accuracy.rmse(tuned.test(testset), verbose=False)),
                "rmse_surprise_default": float(accuracy.rmse(default.test(testset), verbose=False)),
                "seconds": time.perf_counter() - t,
            }
        )
        log.info(
            "fold %d: tuned %.4f (%s) vs default %.4f in %.0fs",
            fold,
            folds[-1]["rmse"],
            best,
            folds[-1]["rmse_surprise_default"],
            folds[-1]["seconds"],
        )
    return {
        "rmse": float(np.mean([f["rmse"] for f in folds])),
        "rmse_surprise_default": float(np.mean([f["rmse_surprise_default"] for f in folds])),
        "folds": folds,
    }


def _only(scorers: dict[str, Scorer], only: frozenset[str] | None) -> dict[str, Scorer]:
    """``scorers`` restricted to the names in ``only`` (all of them when ``None``); fails when none is known."""
    if only is None:
        return scorers
    if not only & set(scorers):
        raise ValueError(f"no scorer named {', '.join(sorted(only))} (known: {', '.join(sorted(scorers))})")
    return {name: fn for name, fn in scorers.items() if name in only}


def _core_scorers(
    train: pd.DataFrame,
    validation: Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]],
    *,
    exclude_seen: bool,
    k: int,
    record: dict[str, Any],
    only: frozenset[str] | None,
) -> tuple[dict[str, Scorer], dict[str, Any] | None]:
    """(SVD and popularity scorers, the tuned SVD parameters); with ``only`` the SVD is not tuned
    (nothing, and ``None``, unless ``svd`` or ``popularity`` is asked for)."""
    if only is not None and not only & {"svd", "popularity"}:
        return {}, None
    params = tune_svd_params(train, exclude_seen=exclude_seen, validation=validation, k=k, record=record)
    scorers = {
        "svd": svd_scorer(params, exclude_seen=exclude_seen, k=k),
        "popularity": popularity_scorer(exclude_seen=exclude_seen, k=k),
    }
    return scorers, params


def _vectors(dataset: str) -> Any:
    """The hook's item vectors of ``dataset`` (None without the search extra)."""
    from recomart.model.offline import movielens_products, uci_products

    return catalogue_vectors(dataset, movielens_products() if dataset == "ml_latest_small" else uci_products())


def movielens_ranking(
    ratings: pd.DataFrame,
    *,
    seed: int = SEED,
    k: int = K,
    only: frozenset[str] | None = None,
    svd_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Implicit-mode ranking on the per-user 75/25 split: SVD (tuned on validation), popularity, extras
    (only the scorers named in ``only`` when given; the hybrid then blends ``svd_params``)."""
    split = per_user_three_way_split(ratings, test_frac=0.25, valid_frac=0.2, seed=seed)
    train, test = split.train_valid, split.test

    def validation(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        return per_user_random_split(frame, test_frac=0.2, seed=seed + 7)

    record: dict[str, Any] = {}
    hybrid_fit: dict[str, Any] = {}
    candidates_fit: dict[str, Any] = {}
    errors: dict[str, str] = {}
    core, params = _core_scorers(train, validation, exclude_seen=True, k=k, record=record, only=only)
    hook = {"validation": validation, "record": hybrid_fit, "config": CONFIG, "svd_params": params or svd_params}
    hook.update(candidates_record=candidates_fit, item_vectors=_vectors("ml_latest_small"))
    scorers = _only({**core, **extra_scorers("ml_latest_small", "ranking", k, errors=errors, **hook)}, only)
    metrics, info = evaluate_scorers(train, test, scorers, k=k, exclude_seen=True)
    return {
        "metrics": metrics,
        "info": {**info, **split.info, "n_train": len(train), "n_test": len(test)},
        "svd_tuning": record,
        "hybrid_fit": hybrid_fit,
        "candidates_fit": candidates_fit,
        "extra_scorer_errors": errors,
    }


# --- UCI Online Retail ------------------------------------------------------------------------------
def read_uci(folder: Path) -> pd.DataFrame:
    """The raw UCI order lines (all 541,909), from the gzip file if present, else the by-day files."""
    folder = Path(folder)
    dtypes = {
        "InvoiceNo": str,
        "StockCode": str,
        "Description": str,
        "Quantity": "int64",
        "InvoiceDate": str,
        "UnitPrice": "float64",
        "CustomerID": str,
        "Country": str,
    }
    gz = folder / "online_retail_all.csv.gz"
    if gz.is_file():
        return pd.read_csv(gz, dtype=dtypes, keep_default_na=False, na_values={"CustomerID": [""]})
    files = sorted((folder / "by-day").glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"neither {gz} nor {folder / 'by-day'}/*.csv found")
    return pd.concat(
        [pd.read_csv(f, dtype=dtypes, keep_default_na=False, na_values={"CustomerID": [""]}) for f in files],
        ignore_index=True,
    )


def clean_uci(raw: pd.DataFrame) -> pd.DataFrame:
    """Order lines kept by the dbt rules (see the module docstring), with UTC timestamps and text ids."""
    df = raw[UCI_COLUMNS].copy()
    df["InvoiceNo"] = df["InvoiceNo"].str.strip()
    df["StockCode"] = df["StockCode"].str.strip()
    duplicate = df.duplicated(keep="first")  # exact copies of a line in every source column
    code = df["StockCode"].str.upper()
    non_product = code.isin(UCI_NON_PRODUCT_CODES) | code.str.startswith(UCI_NON_PRODUCT_PREFIX)
    keep = (
        df["CustomerID"].notna()
        & ~df["InvoiceNo"].str.startswith("C")
        & ~duplicate
        & ~non_product
        & (df["Quantity"] > 0)
        & (df["UnitPrice"] > 0)
        & (df["Quantity"] <= UCI_MAX_LINE_QUANTITY)
    )
    df = df[keep]
    local = pd.to_datetime(df["InvoiceDate"], format="%Y-%m-%d %H:%M:%S")
    return pd.DataFrame(
        {
            "user_id": pd.to_numeric(df["CustomerID"]).astype("int64").astype(str).to_numpy(),
            "item_id": df["StockCode"].to_numpy(),
            "order_id": df["InvoiceNo"].to_numpy(),
            "quantity": df["Quantity"].to_numpy(),
            "event_timestamp": local.dt.tz_localize(UCI_SOURCE_TIMEZONE, ambiguous="NaT", nonexistent="shift_forward")
            .dt.tz_convert("UTC")
            .to_numpy(),
        }
    ).dropna(subset=["event_timestamp"])


def uci_benchmark(
    lines: pd.DataFrame,
    *,
    test_days: int = 30,
    k: int = K,
    only: frozenset[str] | None = None,
    svd_params: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Discovery and replenishment nDCG@k on the last ``test_days`` of the cleaned order lines (only the
    scorers named in ``only`` when given; the hybrid then blends ``svd_params[setting]``)."""
    split = time_days_split(lines, valid_days=0, test_days=test_days)
    train_lines, test_lines = split.train, split.test
    train = pairs_from_events(train_lines)
    test = test_lines[["user_id", "item_id"]].drop_duplicates()

    def validation(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        # the scorer sees pairs only: the validation window holds pairs whose last purchase is in the
        # last `test_days` of its training data; its fit part is the rebuilt history before that window
        cut = frame["event_timestamp"].max() - pd.Timedelta(days=test_days)
        inner_lines = train_lines[train_lines["event_timestamp"] <= frame["event_timestamp"].max()]
        fit_lines = inner_lines[inner_lines["event_timestamp"] < cut]
        valid_lines = inner_lines[inner_lines["event_timestamp"] >= cut]
        return pairs_from_events(fit_lines), valid_lines[["user_id", "item_id"]].drop_duplicates()

    results: dict[str, Any] = {"info": {**split.info, "n_train_pairs": len(train), "n_test_pairs": len(test)}}
    vectors = _vectors("uci")
    for setting, exclude in (("discovery", True), ("replenishment", False)):
        record: dict[str, Any] = {}
        hybrid_fit: dict[str, Any] = {}
        candidates_fit: dict[str, Any] = {}
        errors: dict[str, str] = {}
        scorers, params = _core_scorers(train, validation, exclude_seen=exclude, k=k, record=record, only=only)
        params = params or (svd_params or {}).get(setting)
        hook = {"validation": validation, "record": hybrid_fit, "config": CONFIG, "svd_params": params}
        hook.update(candidates_record=candidates_fit, item_vectors=vectors)
        if setting == "replenishment":
            scorers["buy_again"] = buy_again_scorer(k=k)
        scorers.update(extra_scorers("uci", setting, k, errors=errors, **hook))
        metrics, info = evaluate_scorers(train, test, _only(scorers, only), k=k, exclude_seen=exclude)
        results[setting] = {
            "metrics": metrics,
            "info": info,
            "svd_tuning": record,
            "hybrid_fit": hybrid_fit,
            "candidates_fit": candidates_fit,
            "extra_scorer_errors": errors,
        }
    return results


# --- main ---------------------------------------------------------------------------------------------
def run(movielens_dir: Path, uci_dir: Path, out: Path, *, n_jobs: int = 2) -> dict[str, Any]:
    """Run both benchmarks, write ``out`` and return the results."""
    from recomart.datasets.movielens import load_latest_small

    started = time.perf_counter()
    ml = load_latest_small(movielens_dir)
    t = time.perf_counter()
    rmse = movielens_rmse(ml, n_jobs=n_jobs)
    rmse_s = time.perf_counter() - t
    t = time.perf_counter()
    ranking = movielens_ranking(ml)
    ranking_s = time.perf_counter() - t
    t = time.perf_counter()
    uci = uci_benchmark(clean_uci(read_uci(uci_dir)))
    uci_s = time.perf_counter() - t

    ml_section: dict[str, Any] = {"rmse": rmse["rmse"], "rmse_surprise_default": rmse["rmse_surprise_default"]}
    ml_section.update(_ml_keys(ranking))
    uci_section = _uci_keys(uci)
    import surprise

    result = {
        "ml_latest_small": ml_section,
        "uci": uci_section,
        "details": {
            "ml_rmse": {
                **rmse,
                "grid": RMSE_GRID,
                "protocol": "surprise KFold(5, shuffle, seed 42); GridSearchCV "
                "with KFold(3) on each outer training fold only; default = SVD(random_state=42)",
                "seconds": rmse_s,
            },
            "ml_ranking": {
                **ranking,
                "seconds": ranking_s,
                "protocol": "per-user 75/25 (seed 42), implicit SVD (1 sampled negative per positive, "
                "rating 0), seen items excluded; SVD and hybrid tuned on a per-user validation part of "
                "the 75%; the hybrid blends the tuned SVD",
            },
            "uci": {
                **uci,
                "seconds": uci_s,
                "protocol": "dbt cleaning rules; last 30 days = test; warm test users; SVD and hybrid (weights, "
                "component options) tuned on the 30 days before the test window, fit part rebuilt from the "
                "order lines before it; the hybrid blends the tuned SVD; discovery excludes bought items from "
                "ranking and relevant set; replenishment counts repeats",
            },
        },
        "meta": {
            "command": ".venv/bin/python -m benchmarks.accuracy",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "total_seconds": time.perf_counter() - started,
            "k": K,
            "seed": SEED,
            "surprise": surprise.__version__,
            "python": platform.python_version(),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    return result


UCI_SETTINGS = ("discovery", "replenishment")


def _ml_keys(ranking: dict[str, Any]) -> dict[str, Any]:
    """``<name>_p_at_10`` and ``<name>_ndcg_at_10`` of each MovieLens ranking scorer, and the hybrid's
    content variant chosen on validation."""
    out: dict[str, Any] = {}
    for name, m in ranking["metrics"].items():
        out[f"{name}_p_at_10"] = m["precision_at_10"]
        out[f"{name}_ndcg_at_10"] = m["ndcg_at_10"]
    if "content" in ranking["hybrid_fit"]:
        out["content_validation_choice"] = ranking["hybrid_fit"]["content"]["chosen"]
    choice = _n_choice(ranking)
    if choice is not None:
        out["ranker_n_candidates"] = choice
    return out


def _n_choice(evaluation: dict[str, Any]) -> int | None:
    """The ranker's candidates per generator chosen on validation (None when the ranker did not run)."""
    return evaluation.get("candidates_fit", {}).get("ranker", {}).get("n_candidates_choice", {}).get("n_candidates")


def _uci_keys(uci: dict[str, Any]) -> dict[str, Any]:
    """``<name>_<setting>_ndcg_at_10`` and ``_p_at_10`` of each UCI scorer, and the hybrid's content
    variant chosen on validation per setting."""
    out: dict[str, Any] = {}
    for setting in UCI_SETTINGS:
        for name, m in uci[setting]["metrics"].items():
            out[f"{name}_{setting}_ndcg_at_10"] = m["ndcg_at_10"]
            out[f"{name}_{setting}_p_at_10"] = m["precision_at_10"]
        if "content" in uci[setting]["hybrid_fit"]:
            out[f"content_validation_choice_{setting}"] = uci[setting]["hybrid_fit"]["content"]["chosen"]
        choice = _n_choice(uci[setting])
        if choice is not None:
            out[f"ranker_n_candidates_{setting}"] = choice
    return out


def _merge_rows(details: dict[str, Any], fresh: dict[str, Any], where: str) -> None:
    """Copy ``fresh``'s metrics and candidate fits into ``details`` (one evaluation); the evaluation
    set (users, relevant pairs, items) must be the earlier run's, else nothing is comparable."""
    for key in ("n_eval_users", "n_relevant_pairs", "n_items"):
        if details["info"][key] != fresh["info"][key]:
            raise ValueError(f"{where}: {key} {fresh['info'][key]} differs from the stored {details['info'][key]}")
    details["metrics"].update(fresh["metrics"])
    if fresh.get("hybrid_fit"):  # the hybrid was re-run: its fit evidence replaces the stored one
        details["hybrid_fit"] = fresh["hybrid_fit"]
    fits = {name: fit for name, fit in fresh["candidates_fit"].items() if fit}  # scorers not run leave {}
    details.setdefault("candidates_fit", {}).update(fits)
    details.setdefault("extra_scorer_errors", {}).update(fresh["extra_scorer_errors"])


def run_only(names: frozenset[str], movielens_dir: Path, uci_dir: Path, out: Path) -> dict[str, Any]:
    """Run only the scorers ``names`` (e.g. ``ease``, ``rp3beta``) on the same splits and merge their rows
    into the existing ``out``: every other figure stays as the full run wrote it, and ``meta.partial_runs``
    records this run (command, names, seconds)."""
    from recomart.datasets.movielens import load_latest_small

    result = json.loads(out.read_text())
    details = result["details"]
    started = time.perf_counter()
    tuned_ml = details["ml_ranking"]["svd_tuning"].get("svd_params")
    ranking = movielens_ranking(load_latest_small(movielens_dir), only=names, svd_params=tuned_ml)
    tuned_uci = {setting: details["uci"][setting]["svd_tuning"].get("svd_params") for setting in UCI_SETTINGS}
    uci = uci_benchmark(clean_uci(read_uci(uci_dir)), only=names, svd_params=tuned_uci)
    result = json.loads(out.read_text())  # again: another benchmark may have written its section meanwhile
    _merge_rows(result["details"]["ml_ranking"], ranking, "ml_ranking")
    for setting in UCI_SETTINGS:
        _merge_rows(result["details"]["uci"][setting], uci[setting], f"uci/{setting}")
    result["ml_latest_small"].update(_ml_keys(ranking))
    result["uci"].update(_uci_keys(uci))
    result["meta"].setdefault("partial_runs", []).append(
        {
            "command": ".venv/bin/python -m benchmarks.accuracy --only " + ",".join(sorted(names)),
            "scorers": sorted(names),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - started,
            "load_average": round(os.getloadavg()[0], 1),
        }
    )
    out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", type=Path, default=SHARED / "movielens-latest-small")
    parser.add_argument("--uci", type=Path, default=SHARED / "uci-online-retail")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--jobs", type=int, default=2, help="parallel inner-CV fits (surprise GridSearchCV n_jobs)")
    parser.add_argument(
        "--only",
        type=lambda text: frozenset(name.strip() for name in text.split(",") if name.strip()),
        help="comma-separated scorers (e.g. ease,rp3beta): run only these, skip the RMSE and SVD tuning, and "
        "merge their rows into the existing --out without changing any other figure",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.only:
        result = run_only(args.only, args.movielens, args.uci, args.out)
        print(json.dumps(result["meta"]["partial_runs"][-1], indent=2))
        print(f"merged into {args.out}")
        return
    result = run(args.movielens, args.uci, args.out, n_jobs=args.jobs)
    print(json.dumps({"ml_latest_small": result["ml_latest_small"], "uci": result["uci"]}, indent=2))
    print(f"written to {args.out} in {result['meta']['total_seconds']:.0f}s")


if __name__ == "__main__":
    main()
