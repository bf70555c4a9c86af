"""The nightly recommendation run: read the marts, load the champion, score every user, swap reco.* in."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from recomart.recommend.hybrid import BlendWeights, ExcludePolicy, HybridInputs, build_inputs, recommend
from recomart.recommend.item_item import similar_items_frame
from recomart.recommend.popularity import popular_items_frame
from recomart.recommend.tables import (
    POPULAR_ITEMS,
    SIMILAR_ITEMS,
    USER_RECOMMENDATIONS,
    begin_generation,
    mark_failed,
    mark_live,
)
from recomart.recommend.writer import publish

RATINGS_SQL = (
    "SELECT user_id::text AS user_id, item_id::text AS item_id, rating, purchases, last_interaction_at"
    " FROM marts.user_item_ratings"
)
USERS_SQL = "SELECT user_id::text AS user_id, segment FROM marts.user_features"
PRODUCTS_SQL = "SELECT item_id::text AS item_id, title, description, category, brand, price FROM marts.dim_products"
ITEM_FEATURES_SQL = "SELECT item_id::text AS item_id, price_band FROM marts.item_features"

#: the :func:`build_inputs` options a champion may carry in ``metadata["blend"]["options"]`` and their types
BLEND_OPTION_TYPES: dict[str, type] = {"top_n": int, "prior_days": int, "buy_again_half_life_days": float}
#: options that may be ``None`` (``build_inputs``' own default: all-time prior, the history's half-life)
_NULLABLE_OPTIONS = ("prior_days", "buy_again_half_life_days")

_TEXT = {
    "user_id": str,
    "item_id": str,
    "segment": str,
    "title": str,
    "description": str,
    "category": str,
    "brand": str,
    "price_band": str,
}


@dataclass(frozen=True)
class WarehouseData:
    """The mart extracts the recommender needs."""

    ratings: pd.DataFrame
    users: pd.DataFrame
    products: pd.DataFrame


@dataclass
class GenerationResult:
    """What one run published."""

    generation_id: int
    model_version: str | None
    strategy_counts: dict[str, int]
    users: int
    rows: int
    popular_rows: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    similar_rows: int = 0
    options: dict[str, Any] = field(default_factory=dict)


def read_frame(conn: psycopg.Connection, query: str) -> pd.DataFrame:
    """Run ``query`` through ``COPY (…) TO STDOUT`` (CSV) into a DataFrame; ids and text stay strings."""
    buf = io.BytesIO()
    stmt = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(sql.SQL(query))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for chunk in copy:
            buf.write(chunk)
    buf.seek(0)
    return pd.read_csv(buf, dtype=_TEXT, keep_default_na=False, na_values=[""])


def read_warehouse(dsn: str) -> WarehouseData:
    """One query per mart; ``item_features.price_band`` is joined onto the products when present."""
    with psycopg.connect(dsn) as conn:
        ratings = read_frame(conn, RATINGS_SQL)
        users = read_frame(conn, USERS_SQL)
        products = read_frame(conn, PRODUCTS_SQL)
        has_features = conn.execute("SELECT to_regclass('marts.item_features') IS NOT NULL").fetchone()[0]
        if has_features:
            bands = read_frame(conn, ITEM_FEATURES_SQL).drop_duplicates("item_id")
            products = products.merge(bands, on="item_id", how="left")
    ratings["last_interaction_at"] = pd.to_datetime(ratings["last_interaction_at"], utc=True)
    return WarehouseData(ratings, users, products)


def repeat_purchases_allowed(dataset: str | None) -> bool:
    """The feed policy of data set ``dataset``: True if any of its feeds declares
    ``repeat_purchases_recommendable`` (UCI), False for the generated shop and unknown data sets."""
    from recomart.ingest.feeds import feeds_for_dataset

    if not dataset:
        return False
    try:
        return any(feed.repeat_purchases_recommendable for feed in feeds_for_dataset(dataset))
    except KeyError:
        return False


def blend_options(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The :func:`build_inputs` options chosen with the champion's weights (``metadata["blend"]["options"]``:
    ``top_n``, ``prior_days``, ``buy_again_half_life_days``); ``{}`` (the defaults) when absent, and when
    any key is unknown or any value is not a positive number of its type (or ``None`` where allowed)."""
    blend = (meta or {}).get("blend")
    raw = blend.get("options") if isinstance(blend, Mapping) else None
    if not isinstance(raw, Mapping) or not set(raw) <= set(BLEND_OPTION_TYPES):
        return {}
    options: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None and name in _NULLABLE_OPTIONS:
            options[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            return {}
        typed = BLEND_OPTION_TYPES[name](value)
        if typed != value:  # e.g. 12.5 neighbours
            return {}
        options[name] = typed
    return options


def _similar_frame(inputs: HybridInputs, generation_id: int) -> pd.DataFrame:
    if inputs.similarity is None:
        frame = pd.DataFrame({"item_id": [], "rank": [], "similar_item_id": [], "score": []})
    else:
        frame = similar_items_frame(inputs.similarity, inputs.item_ids)
    frame.insert(0, "generation_id", generation_id)
    return frame


def _popular_frame(inputs: HybridInputs, generation_id: int, n: int) -> pd.DataFrame:
    frame = popular_items_frame(inputs.popularity, inputs.item_ids, n)
    frame.insert(0, "generation_id", generation_id)
    return frame


def publish_generation(
    dsn: str,
    recs: pd.DataFrame,
    inputs: HybridInputs,
    *,
    model_version: str | None,
    popular_n: int = 100,
    details: dict[str, Any] | None = None,
    log: Callable[[str], Any] = print,
) -> GenerationResult:
    """Append a generation, then swap ``reco.user_recommendations``, ``reco.similar_items`` and
    ``reco.popular_items`` in together (``similar_items`` may be empty: no co-occurrence yet)."""
    t0 = time.perf_counter()
    generation_id = begin_generation(dsn, model_version, details)
    try:
        recs = recs.copy()
        recs.insert(0, "generation_id", generation_id)
        popular = _popular_frame(inputs, generation_id, popular_n)
        similar = _similar_frame(inputs, generation_id)
        counts = {str(k): int(v) for k, v in recs.groupby("strategy")["user_id"].nunique().items()}
        users = int(recs["user_id"].nunique())

        def on_swap(cur: psycopg.Cursor) -> None:
            mark_live(
                cur,
                generation_id,
                strategy_summary=counts,
                row_count=len(recs),
                user_count=users,
                popular_item_count=len(popular),
                similar_item_count=len(similar),
            )

        publish(
            dsn,
            [(USER_RECOMMENDATIONS, recs), (SIMILAR_ITEMS, similar), (POPULAR_ITEMS, popular)],
            on_swap=on_swap,
            allow_empty=(SIMILAR_ITEMS.name,),
            log=log,
        )
    except BaseException as exc:
        mark_failed(dsn, generation_id, f"{type(exc).__name__}: {exc}")
        raise
    return GenerationResult(
        generation_id,
        model_version,
        counts,
        users,
        len(recs),
        len(popular),
        time.perf_counter() - t0,
        similar_rows=len(similar),
    )


def generate_recommendations(
    dsn: str,
    *,
    tracking_uri: str,
    model_name: str,
    k: int = 10,
    block_size: int = 2048,
    dataset: str | None = None,
    repeat_purchases: bool | None = None,
    exclude: ExcludePolicy | None = None,
    popular_n: int = 100,
    log: Callable[[str], Any] = print,
) -> GenerationResult:
    """Score every warehouse user with the champion (or popularity) and publish the result atomically.

    ``repeat_purchases`` (default: the policy of ``dataset``'s feeds, see :func:`repeat_purchases_allowed`)
    enables buy-again and stops excluding purchased items; ``exclude`` overrides the exclusion alone.
    The champion's weights and input options (:func:`blend_options`) are applied as they were fitted;
    the options are in the result and in ``reco.generations.details["blend_options"]``.
    """
    from recomart.model.registry import load_champion

    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - t, 3)
        return now

    t = time.perf_counter()
    data = read_warehouse(dsn)
    t = lap("read_marts", t)
    log(f"read marts: {len(data.ratings)} ratings, {len(data.users)} users, {len(data.products)} products")

    champion = load_champion(tracking_uri, model_name)
    if champion is None:
        model, meta, version = None, {}, None
        log("no champion model registered yet: serving popularity")
    else:
        model, meta, version = champion
        log(f"champion {model_name} v{version}: {model.n_users} users x {model.n_items} items")
    weights, options = BlendWeights.from_meta(meta), blend_options(meta)
    t = lap("load_champion", t)

    if repeat_purchases is None:
        repeat_purchases = repeat_purchases_allowed(dataset)
    inputs = build_inputs(
        data.ratings, data.users, data.products, repeat_purchases=repeat_purchases, exclude=exclude, **options
    )
    t = lap("build_inputs", t)
    recs = recommend(inputs, model, model_version=version, weights=weights, k=k, block_size=block_size)
    t = lap("score", t)
    details = {
        "k": k,
        "dataset": dataset,
        "repeat_purchases": repeat_purchases,
        "exclude": exclude or ("none" if repeat_purchases else "purchased"),
        "weights": weights.as_dict(),
        "weights_source": "champion" if isinstance((meta or {}).get("weights"), dict) else "default",
        "blend_options": options,
        "model_name": model_name,
    }
    result = publish_generation(dsn, recs, inputs, model_version=version, popular_n=popular_n, details=details, log=log)
    lap("publish", t)
    result.timings, result.options = timings, options
    result.seconds = round(time.perf_counter() - started, 3)
    log(
        f"generation {result.generation_id}: {result.rows} rows for {result.users} users "
        f"{result.strategy_counts} in {result.seconds:.1f}s {timings}, options {options or 'default'}"
    )
    return result
