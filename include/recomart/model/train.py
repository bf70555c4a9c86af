"""Train a biased SVD (scikit-surprise) on user × item ratings and evaluate it against popularity.

Evaluation never calls surprise's per-pair ``predict`` / ``test`` / ``estimate``: the fitted factors
are copied into a :class:`FactorModel` and every evaluated user is ranked against the whole catalogue
with :func:`recomart.model.scoring.recommend_top_k` (GEMM per user block + compiled top-k).

Implicit mode (default, for shop data): observed user–item pairs are positives carrying their
rating, and for each user ``negative_ratio × n_positives`` items the user never touched (in the
data the model is fitted on) are added with ``negative_rating`` (seeded, uniform over the catalogue),
so the factors learn to rank observed items above unobserved ones instead of only fitting ratings.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recomart.model.factors import FactorModel
from recomart.model.scoring import DEFAULT_BLOCK_SIZE

if TYPE_CHECKING:
    from recomart.model.blend_eval import Catalogue
    from recomart.model.split import Split
    from recomart.recommend.hybrid import BlendWeights

log = logging.getLogger(__name__)

RATINGS_RELATION = "marts.user_item_ratings"
RATING_COLUMNS = ["user_id", "item_id", "rating", "event_timestamp"]

# chosen on planted-taste data (300×100 and 5000×1000): with sampled negatives, more epochs or a
# weaker regularisation overfit (nDCG@10 0.29 here vs 0.14 at 40 epochs, lr 0.01, reg 0.05)
DEFAULT_SVD_PARAMS: dict[str, Any] = {
    "n_factors": 32,
    "n_epochs": 20,
    "lr_all": 0.005,
    "reg_all": 0.1,
    "init_std_dev": 0.1,
}
DECISION_METRIC = "ndcg_at_10"
NEGATIVE_SCHEMES = ("uniform", "popularity")


@dataclass(eq=False)
class TrainResult:
    """What :func:`train_tune_evaluate` produced.

    ``model`` is the SVD to serve: with ``refit_full=True`` (default) it is refitted with the same
    hyper-parameters and seed on ALL ratings (the held-out window holds the freshest interactions);
    ``eval_model`` is the train-split model the metrics were measured on.  The registered recommender
    is the blend of ``model`` with ``metadata["weights"]`` (fit evidence in ``metadata["blend"]``):
    ``metrics["model"]`` is that blend on the test window, ``metrics["svd"]`` the SVD alone.
    """

    model: FactorModel
    eval_model: FactorModel
    metrics: dict[str, dict[str, float]]
    beats_popularity: bool
    params: dict[str, Any]
    data_digest: str
    split: dict[str, Any]
    seen: sp.csr_matrix
    refit_full: bool
    timings: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    primary_metric: str = DECISION_METRIC
    gate_margin: float = 0.0
    champion_version: str | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, Any] = field(default_factory=dict)
    score_samples: dict[str, list[float]] = field(default_factory=dict)
    dataset_source: str = RATINGS_RELATION
    data: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def decision_metric(self) -> str:
        return self.primary_metric

    def flat_metrics(self) -> dict[str, float]:
        """``{"model_ndcg_at_10": …, "popularity_ndcg_at_10": …}`` for MLflow (NaNs dropped)."""
        flat = {
            f"{name}_{metric}": float(value)
            for name, values in self.metrics.items()
            for metric, value in values.items()
        }
        return {key: value for key, value in flat.items() if np.isfinite(value)}


# --- loading -------------------------------------------------------------------
def load_ratings(dsn: str, *, relation: str = RATINGS_RELATION) -> pd.DataFrame:
    """``user_id, item_id, rating, event_timestamp`` (UTC) of ``marts.user_item_ratings`` in one COPY query.

    ``event_timestamp`` is the pair's ``last_interaction_at``: the time the split orders pairs by. (The
    mart's own ``event_timestamp`` is its as-of time, the same for every row, for Feast.)
    """
    import psycopg
    from psycopg import sql

    schema, _, table = relation.rpartition(".")
    ident = sql.Identifier(schema, table) if schema else sql.Identifier(table)
    query = sql.SQL(
        "copy (select user_id::text, item_id::text, rating::float8, "
        "extract(epoch from last_interaction_at)::float8 from {} order by user_id, item_id) "
        "to stdout with (format csv)"
    ).format(ident)
    buf = io.BytesIO()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, cur.copy(query) as copy:
        for chunk in copy:
            buf.write(chunk)
    buf.seek(0)
    if buf.getbuffer().nbytes == 0:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                "item_id": pd.Series(dtype=object),
                "rating": pd.Series(dtype="float64"),
                "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
            }
        )
    df = pd.read_csv(
        buf,
        header=None,
        names=["user_id", "item_id", "rating", "epoch"],
        dtype={"user_id": str, "item_id": str, "rating": "float64", "epoch": "float64"},
        keep_default_na=False,
        na_values={"rating": [""], "epoch": [""]},
    )
    df["event_timestamp"] = pd.to_datetime(df.pop("epoch"), unit="s", utc=True)
    return df


# --- data preparation -------------------------------------------------------------
def prepare_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """Typed, one row per user–item pair (mean rating, latest timestamp), sorted by user then item."""
    missing = set(RATING_COLUMNS) - set(ratings.columns)
    if missing:
        raise ValueError(f"ratings frame misses columns {sorted(missing)}")
    df = ratings[RATING_COLUMNS].reset_index(drop=True)
    df = df.assign(
        user_id=df["user_id"].astype(str),
        item_id=df["item_id"].astype(str),
        rating=pd.to_numeric(df["rating"]).astype("float64"),
        event_timestamp=pd.to_datetime(df["event_timestamp"], utc=True),
    )
    if df["rating"].isna().any() or df["event_timestamp"].isna().any():
        raise ValueError("ratings contain missing ratings or timestamps")
    if df.duplicated(["user_id", "item_id"]).any():
        df = df.groupby(["user_id", "item_id"], as_index=False, sort=False).agg(
            rating=("rating", "mean"), event_timestamp=("event_timestamp", "max")
        )
    return df.sort_values(["user_id", "item_id"], kind="stable", ignore_index=True)


def data_digest(df: pd.DataFrame) -> str:
    """sha256 over the prepared (sorted, typed) ratings: equal data gives an equal digest."""
    hashed = pd.util.hash_pandas_object(df[RATING_COLUMNS], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def sample_negatives(
    user_codes: np.ndarray,
    item_codes: np.ndarray,
    n_items: int,
    ratio: float,
    rng: np.random.Generator,
    scheme: str = "uniform",
) -> tuple[np.ndarray, np.ndarray]:
    """About ``ratio × positives`` distinct unobserved items per user (vectorised).

    ``scheme`` ``uniform`` draws items uniformly; ``popularity`` draws them in proportion to their
    number of positives (popular unobserved items are the informative negatives).  Draws with
    replacement, then drops draws that hit a positive or repeat; users who have seen nearly the
    whole catalogue get fewer negatives.
    """
    if scheme not in NEGATIVE_SCHEMES:
        raise ValueError(f"unknown negative sampling scheme {scheme!r} ({', '.join(NEGATIVE_SCHEMES)})")
    if ratio <= 0 or len(user_codes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    users, counts = np.unique(user_codes, return_counts=True)
    wanted = np.ceil(counts * ratio).astype(np.int64)
    # oversample a little so collisions with positives rarely leave a user short
    draws = np.minimum(np.ceil(wanted * 1.3).astype(np.int64) + 2, 4 * n_items)
    neg_users = np.repeat(users, draws)
    if scheme == "popularity":
        counts_per_item = np.bincount(item_codes, minlength=n_items).astype(np.float64) + 1.0
        neg_items = rng.choice(n_items, size=len(neg_users), p=counts_per_item / counts_per_item.sum())
    else:
        neg_items = rng.integers(0, n_items, size=len(neg_users))
    pos_keys = np.unique(user_codes.astype(np.int64) * n_items + item_codes)
    keys = neg_users.astype(np.int64) * n_items + neg_items
    keep = ~np.isin(keys, pos_keys)
    keys = keys[keep]
    # first occurrence of each key, kept in draw order, then cap each user at `wanted`
    _, first = np.unique(keys, return_index=True)
    keys = keys[np.sort(first)]
    key_users = keys // n_items
    rank = pd.Series(key_users).groupby(key_users).cumcount().to_numpy()
    cap = pd.Series(wanted, index=users).reindex(key_users).to_numpy()
    keys = keys[rank < cap]
    return keys // n_items, keys % n_items


def build_trainset(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    ratings: np.ndarray,
    rating_scale: tuple[float, float],
):
    """A ``surprise.Trainset`` built from arrays (sorted raw ids → inner ids) without per-row dict lookups.

    Inner ids follow the sorted raw ids and each user's ratings are ordered by item, so the SGD
    visits ratings in a deterministic order whatever the input row order was.
    """
    from surprise import Trainset

    u_codes, u_uniques = pd.factorize(pd.Series(user_ids, dtype=str), sort=True)
    i_codes, i_uniques = pd.factorize(pd.Series(item_ids, dtype=str), sort=True)
    r = np.asarray(ratings, dtype=np.float64)

    def grouped(outer: np.ndarray, inner: np.ndarray, n_outer: int) -> defaultdict:
        order = np.lexsort((inner, outer))
        o, pairs = outer[order], list(zip(inner[order].tolist(), r[order].tolist(), strict=True))
        bounds = np.searchsorted(o, np.arange(n_outer + 1)).tolist()
        out: defaultdict = defaultdict(list)
        out.update({key: pairs[bounds[key] : bounds[key + 1]] for key in range(n_outer)})
        return out

    ur = grouped(u_codes, i_codes, len(u_uniques))
    ir = grouped(i_codes, u_codes, len(i_uniques))
    return Trainset(
        ur,
        ir,
        len(u_uniques),
        len(i_uniques),
        len(r),
        rating_scale,
        dict(zip(u_uniques.tolist(), range(len(u_uniques)), strict=True)),
        dict(zip(i_uniques.tolist(), range(len(i_uniques)), strict=True)),
    )


@dataclass(frozen=True)
class _FitConfig:
    svd_params: dict[str, Any]
    seed: int
    implicit: bool
    negative_ratio: float
    negative_rating: float
    negative_sampling: str = "uniform"


def _fit(df: pd.DataFrame, cfg: _FitConfig) -> tuple[FactorModel, Any, int]:
    """Fit surprise's SVD on the positives of ``df`` (+ sampled negatives); returns (model, algo, n_neg)."""
    from surprise import SVD

    users, items = df["user_id"].to_numpy(), df["item_id"].to_numpy()
    ratings = df["rating"].to_numpy(dtype=np.float64)
    n_neg = 0
    lo, hi = float(ratings.min()), float(ratings.max())
    if cfg.implicit and cfg.negative_ratio > 0:
        u_codes, u_uniques = pd.factorize(pd.Series(users), sort=True)
        i_codes, i_uniques = pd.factorize(pd.Series(items), sort=True)
        rng = np.random.default_rng(cfg.seed)
        nu, ni = sample_negatives(u_codes, i_codes, len(i_uniques), cfg.negative_ratio, rng, cfg.negative_sampling)
        n_neg = len(nu)
        users = np.concatenate([users, np.asarray(u_uniques)[nu]])
        items = np.concatenate([items, np.asarray(i_uniques)[ni]])
        ratings = np.concatenate([ratings, np.full(n_neg, cfg.negative_rating)])
        lo, hi = min(lo, cfg.negative_rating), max(hi, cfg.negative_rating)
    trainset = build_trainset(users, items, ratings, (lo, hi))
    algo = SVD(biased=True, random_state=cfg.seed, **cfg.svd_params)
    algo.fit(trainset)
    return FactorModel.from_surprise(algo, trainset), algo, n_neg


def fit_factors(
    df: pd.DataFrame,
    params: dict[str, Any] | None = None,
    *,
    seed: int = 42,
    implicit: bool = True,
    negative_ratio: float = 1.0,
    negative_rating: float = 0.0,
    negative_sampling: str = "uniform",
) -> FactorModel:
    """Fit ``surprise.SVD(biased=True)`` on a ``user_id, item_id, rating`` frame and return its factors."""
    svd = {
        key: value
        for key, value in {**DEFAULT_SVD_PARAMS, **(params or {})}.items()
        if key not in ("biased", "random_state")
    }
    cfg = _FitConfig(svd, int(seed), bool(implicit), float(negative_ratio), float(negative_rating), negative_sampling)
    return _fit(df, cfg)[0]


def interaction_matrix(model: FactorModel, user_ids: Any, item_ids: Any) -> sp.csr_matrix:
    """CSR (model users × model items) marking the given pairs; pairs with unknown ids are dropped."""
    u = model.user_index(user_ids)
    i = model.item_index(item_ids)
    ok = (u >= 0) & (i >= 0)
    data = np.ones(int(ok.sum()), dtype=np.int8)
    mat = sp.csr_matrix((data, (u[ok], i[ok])), shape=(model.n_users, model.n_items))
    mat.sum_duplicates()
    mat.data[:] = 1
    return mat


def _saw_test(trained_through: str | None, test: pd.DataFrame) -> bool | None:
    """Whether a model fitted on data up to ``trained_through`` may have seen rows of ``test``."""
    if not trained_through or test.empty:
        return None
    first_test = pd.to_datetime(test["event_timestamp"], utc=True).min()
    saw = bool(pd.Timestamp(trained_through) >= first_test)
    if saw:
        log.warning(
            "the champion was trained on data up to %s, past the test part's start %s: its test figures are optimistic",
            trained_through,
            first_test,
        )
    return saw


# --- tuned training with a three-way split and the champion re-scored ---------------------------
@dataclass(frozen=True)
class TrainConfig:
    """How :func:`train_tune_evaluate` trains, tunes and evaluates (everything is explicit).

    ``mode``: ``implicit`` (positives + sampled negatives, the default for shop data) or
    ``explicit`` (fit the ratings).  ``split``: ``time`` (fractions of rows in time), ``time_days``
    (``split_options`` ``valid_days`` / ``test_days``) or ``per_user_random`` (75/25 per user,
    validation carved out of train).  ``tuning_metric`` defaults to ``primary_metric`` in implicit
    mode and ``rmse`` in explicit mode.
    """

    mode: str = "implicit"
    negative_ratio: float = 1.0
    negative_sampling: str = "uniform"
    negative_rating: float = 0.0
    split: str = "time"
    split_options: dict[str, Any] = field(default_factory=lambda: {"valid_fraction": 0.1, "test_fraction": 0.2})
    k: int = 10
    primary_metric: str = DECISION_METRIC
    gate_margin: float = 0.0
    tuning_metric: str | None = None
    search_space: dict[str, list[Any]] | None = None
    max_trials: int = 8
    tuning_budget_s: float = 120.0
    base_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SVD_PARAMS))
    seed: int = 42
    seen_policy_exclude: bool = True
    refit_full: bool = True
    block_size: int = DEFAULT_BLOCK_SIZE

    def __post_init__(self) -> None:
        if self.mode not in ("implicit", "explicit"):
            raise ValueError(f"mode must be implicit or explicit, not {self.mode!r}")
        if self.negative_sampling not in NEGATIVE_SCHEMES:
            raise ValueError(f"negative_sampling must be one of {NEGATIVE_SCHEMES}")

    @property
    def implicit(self) -> bool:
        return self.mode == "implicit"

    @property
    def effective_tuning_metric(self) -> str:
        return self.tuning_metric or (self.primary_metric if self.implicit else "rmse")

    def fit_config(self, params: dict[str, Any]) -> _FitConfig:
        svd = {key: value for key, value in params.items() if key not in ("biased", "random_state")}
        return _FitConfig(
            svd,
            int(self.seed),
            self.implicit,
            float(self.negative_ratio),
            float(self.negative_rating),
            self.negative_sampling,
        )


def _tune(split: Split, cfg: TrainConfig) -> tuple[dict[str, Any], list[dict[str, Any]], FactorModel | None]:
    """Bounded search on the validation window: (best params, trials, the best params' SVD fitted on
    ``split.train``, kept for the blend fit; ``None`` when tuning did not run)."""
    from recomart.model.evaluate import evaluate_models
    from recomart.model.tuning import DEFAULT_SEARCH_SPACE, candidate_params, tune

    candidates = candidate_params(cfg.search_space or DEFAULT_SEARCH_SPACE, cfg.max_trials, cfg.seed, cfg.base_params)
    if split.valid.empty or len(candidates) <= 1:
        return dict(cfg.base_params), [], None
    fitted: dict[str, FactorModel] = {}

    def evaluate_params(params: dict[str, Any]) -> dict[str, float]:
        model, _, _ = _fit(split.train, cfg.fit_config(params))
        fitted[repr(sorted(params.items()))] = model
        ev = evaluate_models(
            split.train,
            split.valid,
            {"model": model},
            k=cfg.k,
            exclude_seen=cfg.seen_policy_exclude,
            block_size=cfg.block_size,
        )
        pop = {f"popularity_{key}": value for key, value in ev["metrics"]["popularity"].items()}
        return {**ev["metrics"]["model"], **pop}

    try:
        tuned = tune(evaluate_params, candidates, metric=cfg.effective_tuning_metric, budget_s=cfg.tuning_budget_s)
    except ValueError as exc:  # validation part without a warm user: keep the base parameters
        log.warning("tuning skipped: %s", exc)
        return dict(cfg.base_params), [], None
    trials = [
        {"index": tr.index, "params": tr.params, "metrics": tr.metrics, "seconds": tr.seconds} for tr in tuned.trials
    ]
    return tuned.best_params, trials, fitted.get(repr(sorted(tuned.best_params.items())))


def _merge_blend_metrics(
    svd: dict[str, dict[str, float]], blends: dict[str, dict[str, float]], factors_of: dict[str, str]
) -> dict[str, dict[str, float]]:
    """SVD-alone and blend metrics in one mapping; a blend carries its factors' rating errors and user
    coverage (the share of test users its SVD part knows)."""
    carried = ("rmse", "mae", "user_coverage")
    out = dict(svd)
    for name, values in blends.items():
        source = svd.get(factors_of.get(name, ""), {})
        out[name] = {**values, **{key: source[key] for key in carried if key in source}}
    return out


def train_tune_evaluate(
    ratings: pd.DataFrame,
    config: TrainConfig | None = None,
    *,
    champion: FactorModel | None = None,
    champion_version: str | None = None,
    champion_trained_through: str | None = None,
    champion_weights: BlendWeights | None = None,
    champion_options: Mapping[str, Any] | None = None,
    catalogue: Catalogue | None = None,
    dataset_source: str = RATINGS_RELATION,
) -> TrainResult:
    """Split three ways, tune SVD and fit the blend weights on validation, score the test part once.

    1. SVD hyper-parameters are tuned on the validation window (fitted on the train part).
    2. The hybrid's weights and input options (neighbours, popularity prior window, buy-again
       half-life) are fitted on the same window with that SVD
       (:func:`recomart.model.blend_eval.fit_weights`; default 0.7 CF / 0.3 content and default
       options, ``fitted=False``, when there is too little data) over ``catalogue`` (products,
       segments, feed policy: :class:`recomart.model.blend_eval.Catalogue`; ids only by default).
    3. The candidate SVD is refitted on train + validation and the test part is scored once for:
       ``model`` (the blend that gets registered), ``svd`` and every other component alone,
       ``popularity``, and ``champion``: the current champion's evaluation factors blended with its
       stored weights and options (``champion_weights``, a :class:`BlendWeights`, and
       ``champion_options``; defaults when it has none), its SVD alone as ``champion_svd``.  The
       candidate and the components alone are ranked over inputs built with the fitted options.
       A champion whose training data reaches past this split's earliest test row
       (``champion_trained_through``) is flagged (``champion_saw_test_data``).

    The served SVD is refitted on all the data with the chosen parameters when ``config.refit_full``.
    """
    from recomart.model.blend_eval import (
        COMPONENT_KEYS,
        Catalogue,
        Contender,
        blend_record,
        evaluate_blends,
        fit_weights,
    )
    from recomart.model.blend_eval import single_component as alone
    from recomart.model.evaluate import eval_set, evaluate_models
    from recomart.model.split import make_split, overlapping_pairs
    from recomart.recommend.hybrid import BlendWeights

    cfg = config or TrainConfig()
    cat = catalogue if catalogue is not None else Catalogue()
    t0 = time.perf_counter()
    df = prepare_ratings(ratings)
    if df.empty:
        raise ValueError("no ratings to train on")
    split = make_split(df, cfg.split, seed=cfg.seed, **cfg.split_options)
    if split.train.empty or split.test.empty:
        raise ValueError(f"split {split.info} leaves an empty train or test part")
    leaks = overlapping_pairs(split.train_valid, split.test)
    if leaks:
        raise ValueError(f"{leaks} test user-item pairs also appear in train: the split leaks")
    timings: dict[str, float] = {"prepare_s": time.perf_counter() - t0}

    # 1. SVD tuning on validation only
    t = time.perf_counter()
    best_params, trials, train_model = _tune(split, cfg)
    fit_cfg = cfg.fit_config(best_params)
    timings["tuning_s"] = time.perf_counter() - t

    # 2. blend weights on validation, with the tuned SVD fitted on the train part
    t = time.perf_counter()
    if train_model is None and not split.valid.empty:
        train_model = _fit(split.train, fit_cfg)[0]
    fit = fit_weights(
        split.train, split.valid, train_model, cat, exclude_seen=cfg.seen_policy_exclude, k=cfg.k, seed=cfg.seed
    )
    weights = BlendWeights.from_meta({"weights": fit.weights})
    timings["blend_fit_s"] = time.perf_counter() - t

    # 3. the candidate on train + validation, the test part scored once for all contenders
    t = time.perf_counter()
    train_valid = split.train_valid
    eval_model, _, n_neg = _fit(train_valid, fit_cfg)
    timings["fit_train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    factor_models = {"svd": eval_model, **({"champion_svd": champion} if champion is not None else {})}
    ev = evaluate_models(
        train_valid,
        split.test,
        factor_models,
        k=cfg.k,
        exclude_seen=cfg.seen_policy_exclude,
        block_size=cfg.block_size,
        seed=cfg.seed,
    )
    blends = {"model": Contender(weights, eval_model, fit.options)}
    blends.update(
        {
            COMPONENT_KEYS[c]: Contender(alone(c), None, fit.options)
            for c in cat.components()
            if c in COMPONENT_KEYS and c != "cf"
        }
    )
    if champion is not None:
        blends["champion"] = Contender(champion_weights or BlendWeights(), champion, dict(champion_options or {}))
    bl = evaluate_blends(
        train_valid, eval_set(train_valid, split.test), blends, cat, k=cfg.k, exclude_seen=cfg.seen_policy_exclude
    )
    metrics = _merge_blend_metrics(ev["metrics"], bl["metrics"], {"model": "svd", "champion": "champion_svd"})
    timings["evaluate_s"] = time.perf_counter() - t

    # 4. the served SVD
    if cfg.refit_full:
        t = time.perf_counter()
        model, _, _ = _fit(df, fit_cfg)
        timings["fit_full_s"] = time.perf_counter() - t
    else:
        model = eval_model
    seen_df = df if cfg.refit_full else train_valid
    seen = interaction_matrix(model, seen_df["user_id"], seen_df["item_id"])
    beats = metrics["model"][cfg.primary_metric] > metrics["popularity"][cfg.primary_metric]
    split_info = {
        **split.info,
        "n_ratings": int(len(df)),
        "n_train": int(len(split.train)),
        "n_valid": int(len(split.valid)),
        "n_test": int(len(split.test)),
        "n_negatives_train": int(n_neg),
        "test_pairs_in_train": int(leaks),
        "champion_saw_test_data": _saw_test(champion_trained_through, split.test),
        **ev["info"],
    }
    all_params = {
        **fit_cfg.svd_params,
        "biased": True,
        "seed": int(cfg.seed),
        "k": int(cfg.k),
        "mode": cfg.mode,
        "implicit": cfg.implicit,
        "negative_ratio": float(cfg.negative_ratio),
        "negative_sampling": cfg.negative_sampling,
        "negative_rating": float(cfg.negative_rating),
        "seen_policy_exclude": bool(cfg.seen_policy_exclude),
        "refit_full": bool(cfg.refit_full),
        "split": cfg.split,
        **{f"split_{key}": value for key, value in cfg.split_options.items()},
        "tuning_metric": cfg.effective_tuning_metric,
        "tuning_trials": len(trials),
        "tuning_budget_s": float(cfg.tuning_budget_s),
        "primary_metric": cfg.primary_metric,
        "gate_margin": float(cfg.gate_margin),
        "repeat_purchases": bool(cat.repeat_purchases),
    }
    timings["total_s"] = time.perf_counter() - t0
    pm = cfg.primary_metric
    log.info(
        "blend %s=%.4f (svd %.4f) vs popularity %.4f%s; weights %s options %s (%s, %.1fs) after %d trials in %.1fs",
        pm,
        metrics["model"][pm],
        metrics["svd"][pm],
        metrics["popularity"][pm],
        f" vs champion {metrics['champion'][pm]:.4f}" if "champion" in metrics else "",
        fit.weights,
        fit.options,
        fit.reason,
        timings["blend_fit_s"],
        len(trials),
        timings["total_s"],
    )
    return TrainResult(
        model=model,
        eval_model=eval_model,
        metrics=metrics,
        beats_popularity=bool(beats),
        params=all_params,
        data_digest=data_digest(df),
        split=split_info,
        seen=seen,
        refit_full=bool(cfg.refit_full),
        timings=timings,
        primary_metric=cfg.primary_metric,
        gate_margin=float(cfg.gate_margin),
        champion_version=champion_version if champion is not None else None,
        trials=trials,
        curves={**ev["curves"], **bl["curves"]},
        score_samples=ev["scores"],
        dataset_source=dataset_source,
        data=df,
        metadata={
            "eval_trained_through": pd.Timestamp(train_valid["event_timestamp"].max()).isoformat(),
            "weights": dict(fit.weights),
            "blend": blend_record(fit),
        },
    )
