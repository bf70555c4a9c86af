"""The nightly write-back on a real Postgres: staging + COPY + atomic rename swap, views, grants, log.

The marts are made by hand (dbt is tested elsewhere) in a private database next to this run's
warehouse, because other modules create their own ``marts.*`` tables in the warehouse itself.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from recomart.config import Settings
from recomart.marts import read_catalogue, read_ranking_inputs
from recomart.ranking.base import TrainingSet
from recomart.ranking.blend import BlendWeights
from recomart.ranking.factors import FactorModel
from recomart.ranking.hybrid import STRATEGY_HYBRID, HybridRecommender
from recomart.ranking.svd import BiasedSVD
from recomart.recommend.run import OUTPUT_COLUMNS, generate_recommendations, publish_generation
from recomart.recommend.writer import View, swap_in_table

pytestmark = pytest.mark.integration

N_USERS, N_ITEMS, N_RATINGS = 400, 120, 3000
BUSINESS = (
    "user_id, rank, item_id, score, svd_score, item_item_score, content_score, buy_again_score, popularity_score,"
    " strategy, model_version"
)

_MARTS_DDL = """
CREATE SCHEMA marts;
CREATE TABLE marts.user_item_ratings (
    user_id text, item_id text, rating double precision, interactions integer, purchases integer,
    last_interaction_at timestamptz, event_timestamp timestamptz);
CREATE TABLE marts.user_features (
    user_id text, event_timestamp timestamptz, recency_days integer, frequency integer, monetary numeric,
    distinct_items integer, favourite_category text, country text, segment text, days_since_first_seen integer);
CREATE TABLE marts.dim_products (
    item_id text, title text, description text, category text, brand text, price numeric);
CREATE TABLE marts.item_features (
    item_id text, event_timestamp timestamptz, pop_7d integer, pop_30d integer, pop_90d integer,
    distinct_buyers integer, revenue numeric, price numeric, price_band text, category text, brand text,
    content_text text, first_seen_at timestamptz);
"""


def copy_frame(conn: psycopg.Connection, table: str, frame: pd.DataFrame) -> None:
    """COPY a small test frame into ``schema.table`` (columns named like the frame's)."""
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    )
    with conn.cursor().copy(stmt) as copy:
        for row in frame.itertuples(index=False):
            copy.write_row(row)


def _hand_made_marts(dsn: str) -> None:
    rng = np.random.default_rng(11)
    cats = np.array(["Shoes", "Books", "Garden", "Kitchen"])
    item_cat = cats[rng.integers(0, len(cats), N_ITEMS)]
    items = pd.DataFrame(
        {
            "item_id": [f"p{i:04d}" for i in range(N_ITEMS)],
            "title": [f"{c} item number {i}" for i, c in enumerate(item_cat)],
            "description": [f"a fine {c.lower()} product, model {i % 7}" for i, c in enumerate(item_cat)],
            "category": item_cat,
            "brand": [f"brand{i % 9}" for i in range(N_ITEMS)],
            "price": np.round(rng.uniform(5, 200, N_ITEMS), 2),
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"c{u:05d}" for u in range(N_USERS)],
            "segment": np.array(["new", "regular", "vip"])[rng.integers(0, 3, N_USERS)],
        }
    )
    # popularity skew; the last 20 items are brand new (no interactions); 40 users never interacted
    weights = 1.0 / np.arange(1, N_ITEMS - 20 + 1)
    pairs = pd.DataFrame(
        {
            "user_id": users["user_id"].to_numpy()[rng.integers(40, N_USERS, N_RATINGS)],
            "item_id": items["item_id"].to_numpy()[rng.choice(N_ITEMS - 20, N_RATINGS, p=weights / weights.sum())],
        }
    ).drop_duplicates()
    n = len(pairs)
    last = pd.Timestamp("2021-03-31 18:00:00", tz="UTC") - pd.to_timedelta(rng.integers(0, 120 * 86400, n), "s")
    ratings = pairs.assign(
        rating=np.round(rng.uniform(1, 5, n), 3),
        interactions=rng.integers(1, 5, n),
        purchases=rng.integers(0, 2, n),
        last_interaction_at=last,
        event_timestamp=last,
    )
    with psycopg.connect(dsn) as conn:
        conn.execute(_MARTS_DDL)
        copy_frame(conn, "marts.dim_products", items)
        copy_frame(conn, "marts.user_features", users)
        copy_frame(conn, "marts.user_item_ratings", ratings)
        bands = pd.DataFrame({"item_id": items["item_id"], "price_band": np.where(items["price"] > 100, "high", "low")})
        copy_frame(conn, "marts.item_features", bands)


@pytest.fixture(scope="module")
def reco_dsn(private_database) -> str:
    """A private database on this run's server, with hand-made marts; dropped after the module."""
    dsn = private_database("reco")
    _hand_made_marts(dsn)
    return dsn


def _rows(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def _one(dsn: str, query: str, params: tuple = ()):
    return _rows(dsn, query, params)[0][0]


@pytest.fixture(scope="module")
def two_generations(reco_dsn: str, test_settings: Settings) -> tuple[object, object, list, list]:
    """Run the nightly job twice on the same marts with no champion registered (real MLflow store)."""
    logs: list[str] = []
    first = generate_recommendations(
        reco_dsn, tracking_uri=test_settings.mlflow_tracking_uri, model_name=test_settings.model_name, log=logs.append
    )
    rows_first = _rows(reco_dsn, f"SELECT {BUSINESS} FROM reco.user_recommendations ORDER BY user_id, rank")
    second = generate_recommendations(
        reco_dsn, tracking_uri=test_settings.mlflow_tracking_uri, model_name=test_settings.model_name, log=logs.append
    )
    rows_second = _rows(reco_dsn, f"SELECT {BUSINESS} FROM reco.user_recommendations ORDER BY user_id, rank")
    return first, second, (rows_first, rows_second), logs


def test_two_runs_publish_identical_business_rows(two_generations, reco_dsn: str) -> None:
    first, second, (rows_first, rows_second), logs = two_generations
    assert "no champion model registered yet: serving popularity" in logs
    assert rows_first == rows_second
    assert len(rows_first) == N_USERS * 10  # every warehouse user, ten items each
    assert {r[9] for r in rows_first} == {"popular_no_model"}
    assert second.generation_id > first.generation_id
    assert second.strategy_counts == {"popular_no_model": N_USERS}


def test_previous_generation_kept_and_log_has_one_live_row(two_generations, reco_dsn: str) -> None:
    first, second, _, _ = two_generations
    assert _one(reco_dsn, "SELECT to_regclass('reco.user_recommendations_previous') IS NOT NULL")
    assert _one(reco_dsn, "SELECT to_regclass('reco.popular_items_previous') IS NOT NULL")
    assert _one(reco_dsn, "SELECT to_regclass('reco.user_recommendations__staging') IS NULL")
    assert _one(reco_dsn, "SELECT DISTINCT generation_id FROM reco.user_recommendations_previous") == (
        first.generation_id
    )
    log = _rows(
        reco_dsn,
        "SELECT generation_id, status, is_live, row_count, strategy_summary FROM reco.generations ORDER BY 1",
    )
    assert [(g, s, live) for g, s, live, _, _ in log] == [
        (first.generation_id, "superseded", False),
        (second.generation_id, "live", True),
    ]
    assert log[-1][3] == N_USERS * 10 and log[-1][4] == {"popular_no_model": N_USERS}


def test_enriched_view_shows_the_new_generation(two_generations, reco_dsn: str) -> None:
    _, second, _, _ = two_generations
    gens, missing_titles, n = _rows(
        reco_dsn,
        "SELECT array_agg(DISTINCT generation_id), count(*) FILTER (WHERE title IS NULL), count(*)"
        " FROM reco.user_recommendations_enriched",
    )[0]
    assert gens == [second.generation_id] and missing_titles == 0 and n == N_USERS * 10
    row = _rows(
        reco_dsn,
        "SELECT e.title, e.category, e.price, p.title, p.category, p.price"
        " FROM reco.user_recommendations_enriched e JOIN marts.dim_products p USING (item_id) LIMIT 1",
    )[0]
    assert row[:3] == row[3:]


def test_enriched_views_survive_dbt_replacing_the_catalogue(two_generations, reco_dsn: str) -> None:
    """dbt replaces a table by renaming a new one into place and dropping the old one CASCADE (the
    README's `dbt build` did this and took the views with it until the next publish)."""
    with psycopg.connect(reco_dsn) as conn:
        conn.execute("CREATE TABLE marts.dim_products__dbt_tmp AS SELECT * FROM marts.dim_products")
        conn.execute("UPDATE marts.dim_products__dbt_tmp SET title = title || ' (renamed)'")
        conn.execute("ALTER TABLE marts.dim_products RENAME TO dim_products__dbt_backup")
        conn.execute("ALTER TABLE marts.dim_products__dbt_tmp RENAME TO dim_products")
        conn.execute("DROP TABLE marts.dim_products__dbt_backup CASCADE")
    titles = _rows(
        reco_dsn,
        "SELECT count(*), count(*) FILTER (WHERE strpos(title, '(renamed)') > 0)"
        " FROM reco.user_recommendations_enriched",
    )[0]
    assert titles == (N_USERS * 10, N_USERS * 10)
    similar = _rows(
        reco_dsn, "SELECT count(*) FILTER (WHERE strpos(item_title, '(renamed)') > 0) FROM reco.similar_items_enriched"
    )
    assert similar[0][0] == _rows(reco_dsn, "SELECT count(*) FROM reco.similar_items")[0][0] > 0


def test_popular_items_grants_and_comments(two_generations, reco_dsn: str) -> None:
    _, second, _, _ = two_generations
    segments = _rows(reco_dsn, "SELECT segment, count(*), min(rank), max(rank) FROM reco.popular_items GROUP BY 1")
    assert {s for s, *_ in segments} == {"__all__", "new", "regular", "vip"}
    assert all(c == 100 and lo == 1 and hi == 100 for _, c, lo, hi in segments)
    assert _one(reco_dsn, "SELECT DISTINCT generation_id FROM reco.popular_items") == second.generation_id
    for rel in ("reco.user_recommendations", "reco.user_recommendations_enriched", "reco.popular_items"):
        assert _one(reco_dsn, "SELECT has_table_privilege('recomart_reader', %s, 'SELECT')", (rel,)), rel
    assert not _one(reco_dsn, "SELECT has_table_privilege('recomart_reader', 'reco.user_recommendations', 'INSERT')")
    assert "live generation" in _one(reco_dsn, "SELECT obj_description('reco.user_recommendations'::regclass)")
    assert _one(
        reco_dsn,
        "SELECT col_description('reco.user_recommendations'::regclass, attnum) FROM pg_attribute"
        " WHERE attrelid = 'reco.user_recommendations'::regclass AND attname = 'strategy'",
    ).startswith("hybrid")


def _marts(dsn: str):
    """(ranking inputs, training set) of the hand-made marts, read as the nightly job reads them."""
    inputs, catalogue = read_ranking_inputs(dsn), read_catalogue(dsn)
    return inputs, TrainingSet.build(inputs.history, catalogue.products, catalogue.users)


def _publish(dsn: str, recommender: HybridRecommender, inputs, version: str) -> tuple[pd.DataFrame, object]:
    recs = recommender.rank(inputs.users, inputs.history, k=10).assign(model_version=version)[OUTPUT_COLUMNS]
    return recs, publish_generation(dsn, recs, recommender, model_version=version, log=lambda _: None)


def test_hybrid_generation_with_a_champion(two_generations, reco_dsn: str) -> None:
    """A hand-built factor model through the same compute + publish path the nightly job uses."""
    inputs, training = _marts(reco_dsn)
    active = training.entries.user_ids[training.entries.has_history]
    known_users = active[::2]  # half the active users are in the model
    known_items = np.array(sorted(set(inputs.history["item_id"])), dtype=object)
    rng = np.random.default_rng(5)
    model = FactorModel(
        known_users,
        known_items,
        3.0,
        rng.normal(0, 0.1, len(known_users)),
        rng.normal(0, 0.1, len(known_items)),
        rng.normal(0, 0.3, (len(known_users), 8)),
        rng.normal(0, 0.3, (len(known_items), 8)),
    )
    _, result = _publish(reco_dsn, HybridRecommender(svd=BiasedSVD.from_factors(model)).fit(training), inputs, "42")
    assert result.strategy_counts[STRATEGY_HYBRID] == len(known_users)
    stored = _rows(
        reco_dsn,
        "SELECT strategy, count(DISTINCT user_id), count(*) FILTER (WHERE svd_score IS NULL),"
        " bool_and(model_version = '42') FROM reco.user_recommendations GROUP BY 1 ORDER BY 1",
    )
    n_active = len(active)
    no_svd = n_active - len(known_users)
    assert stored == [
        ("hybrid", len(known_users), 0, True),
        ("hybrid_no_svd", no_svd, 10 * no_svd, True),
        ("popular_cold_start", N_USERS - n_active, 10 * (N_USERS - n_active), True),
    ]
    # generated feed: no repeats, so no buy-again score; the other components are filled for hybrid rows
    nulls = _rows(
        reco_dsn,
        "SELECT strategy, count(*) FILTER (WHERE buy_again_score IS NOT NULL),"
        " count(*) FILTER (WHERE item_item_score IS NULL), count(*) FILTER (WHERE content_score IS NULL)"
        " FROM reco.user_recommendations GROUP BY 1 ORDER BY 1",
    )
    assert nulls == [("hybrid", 0, 0, 0), ("hybrid_no_svd", 0, 0, 0), ("popular_cold_start", 0, 400, 400)]
    bought = _one(
        reco_dsn,
        "SELECT count(*) FROM reco.user_recommendations r JOIN marts.user_item_ratings m"
        " USING (user_id, item_id) WHERE m.purchases > 0",
    )
    assert bought == 0
    assert _one(reco_dsn, "SELECT count(*) FROM reco.generations WHERE is_live") == 1


# --- the swap itself, under a concurrent reader ---------------------------------------------------
def _frame(n: int, offset: int) -> pd.DataFrame:
    ids = np.arange(n)
    return pd.DataFrame(
        {
            "user_id": np.char.add("u", (ids // 10 + offset).astype(str)).astype(object),
            "rank": (ids % 10 + 1).astype(np.int16),
            "item_id": np.char.add("i", (ids % 997).astype(str)).astype(object),
            "score": np.float32(1.0) / (ids % 10 + 1).astype(np.float32),
        }
    )


_PROBE_DDL = (("user_id", "text NOT NULL"), ("rank", "smallint NOT NULL"), ("item_id", "text"), ("score", "real"))
_PROBE_VIEW = View("swap_probe_top1", "SELECT user_id, item_id FROM reco.swap_probe WHERE rank = 1")


def _swap_probe(dsn: str, frame: pd.DataFrame, log=lambda _: None) -> int:
    return swap_in_table(
        dsn,
        "reco",
        "swap_probe",
        frame,
        _PROBE_DDL,
        indexes=["user_id, rank"],
        comments={"": "swap probe", "score": "a score"},
        views=[_PROBE_VIEW],
        log=log,
    )


@pytest.mark.parametrize(
    ("n_old", "n_new"),
    [(200_000, 230_000), pytest.param(1_000_000, 1_050_000, marks=pytest.mark.slow, id="1M")],
)
def test_reader_only_sees_old_or_new_table_during_a_swap(reco_dsn: str, n_old: int, n_new: int) -> None:
    assert _swap_probe(reco_dsn, _frame(n_old, 0)) == n_old
    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            with psycopg.connect(reco_dsn, autocommit=True) as conn:
                while not stop.is_set():
                    # one statement, so the table and its view are read in the same snapshot
                    row = conn.execute(
                        "SELECT (SELECT count(*) FROM reco.swap_probe), (SELECT count(*) FROM reco.swap_probe_top1)"
                    ).fetchone()
                    seen.append(row)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        time.sleep(0.2)
        t0 = time.perf_counter()
        logs: list[str] = []
        assert _swap_probe(reco_dsn, _frame(n_new, 10**6), log=logs.append) == n_new
        took = time.perf_counter() - t0
        time.sleep(0.2)
    finally:  # a failed swap must not leave the reader polling into the next test
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert len(seen) > 20, f"reader polled only {len(seen)} times in {took:.1f}s"
    assert set(seen) <= {(n_old, n_old // 10), (n_new, n_new // 10)}, set(seen)
    first_new = next(i for i, s in enumerate(seen) if s[0] == n_new)
    assert seen[0][0] == n_old and all(s[0] == n_new for s in seen[first_new:])  # never flips back
    assert _one(reco_dsn, "SELECT count(*) FROM reco.swap_probe_previous") == n_old
    print(f"swap of {n_new} rows took {took:.2f}s; the reader polled {len(seen)} times; {logs}")


def test_empty_or_failing_load_leaves_the_live_table(reco_dsn: str) -> None:
    _swap_probe(reco_dsn, _frame(1000, 0))
    with pytest.raises(ValueError, match="empty"):
        _swap_probe(reco_dsn, _frame(0, 0))
    bad = _frame(10, 0).assign(user_id=None)  # violates NOT NULL during COPY
    with pytest.raises(psycopg.errors.NotNullViolation):
        _swap_probe(reco_dsn, bad)
    assert _one(reco_dsn, "SELECT count(*) FROM reco.swap_probe") == 1000
    assert _one(reco_dsn, "SELECT count(*) FROM reco.swap_probe_top1") == 100


def test_similar_items_published_with_the_generation(two_generations, reco_dsn: str) -> None:
    live = _one(reco_dsn, "SELECT generation_id FROM reco.generations WHERE is_live")
    gens, n, bad_rank, self_pairs, top = _rows(
        reco_dsn,
        "SELECT array_agg(DISTINCT generation_id), count(*), count(*) FILTER (WHERE rank < 1 OR rank > 50),"
        " count(*) FILTER (WHERE item_id = similar_item_id), max(score) FROM reco.similar_items",
    )[0]
    assert gens == [live] and n > 0 and bad_rank == 0 and self_pairs == 0 and 0 < top <= 1
    assert _one(reco_dsn, "SELECT similar_item_count FROM reco.generations WHERE is_live") == n
    # brand-new items (no interactions) have no neighbours; a popular item has some
    assert _one(reco_dsn, "SELECT count(*) FROM reco.similar_items WHERE item_id >= 'p0100'") == 0
    assert _one(reco_dsn, "SELECT count(*) FROM reco.similar_items WHERE item_id = 'p0000'") > 0
    # scores are non-increasing with rank for every item
    assert (
        _one(
            reco_dsn,
            "SELECT count(*) FROM (SELECT score, lag(score) OVER (PARTITION BY item_id ORDER BY rank) AS prev"
            " FROM reco.similar_items) t WHERE score > prev",
        )
        == 0
    )
    titles = _one(reco_dsn, "SELECT count(*) FILTER (WHERE similar_title IS NULL) FROM reco.similar_items_enriched")
    assert titles == 0
    assert _one(reco_dsn, "SELECT has_table_privilege('recomart_reader', 'reco.similar_items', 'SELECT')")


def test_every_reco_table_and_column_has_a_comment(two_generations, reco_dsn: str) -> None:
    missing = _rows(
        reco_dsn,
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE n.nspname = 'reco' AND c.relkind = 'r' AND c.relname IN"
        " ('user_recommendations', 'similar_items', 'popular_items')"
        " AND col_description(c.oid, a.attnum) IS NULL",
    )
    assert missing == []


def test_repeat_purchase_feed_gets_buy_again_and_keeps_purchases(two_generations, reco_dsn: str) -> None:
    """The UCI policy: purchased items stay recommendable and buy-again is a weighted component."""
    inputs, training = _marts(reco_dsn)
    active = training.entries.user_ids[training.entries.has_history]
    model = FactorModel(
        active,
        np.array(["p0000"], dtype=object),
        3.0,
        np.zeros(len(active)),
        np.zeros(1),
        np.zeros((len(active), 2)),
        np.zeros((1, 2)),
    )
    svd = BiasedSVD.from_factors(model)
    recommender = HybridRecommender(weights=BlendWeights.only("buy_again"), repeat_purchases=True, svd=svd)
    recommender.fit(training)
    assert recommender.exclude == "none" and recommender.buy_again is not None
    recs, result = _publish(reco_dsn, recommender, inputs, "1")
    assert result.rows == len(recs)
    # a buyer's top item is the one they bought most (recency weighted): buy-again score is the row's max
    top = _rows(
        reco_dsn,
        "SELECT count(*), count(*) FILTER (WHERE b.purchases > 0) FROM reco.user_recommendations r"
        " JOIN marts.user_item_ratings b USING (user_id, item_id) WHERE r.rank = 1 AND r.buy_again_score > 0",
    )[0]
    assert top[0] > 100 and top[0] == top[1]


def test_the_dashboards_item_lookup_uses_the_item_index(two_generations, reco_dsn: str) -> None:
    """``reco.user_recommendations``' second index is on ``item_id`` alone (quicker to build than with
    ``rank``); the dashboard's "recommended to" query, run as it is, reads through it."""
    from recomart.dashboard.queries import recommended_to

    definition = _one(
        reco_dsn, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'reco' AND indexname = 'user_recommendations_i1'"
    )
    assert definition.endswith("(item_id)"), definition
    with psycopg.connect(reco_dsn, row_factory=dict_row) as conn:
        item = conn.execute("SELECT item_id FROM reco.user_recommendations LIMIT 1").fetchone()["item_id"]
        users, rows = recommended_to(conn, item)
        assert users > 0 and rows
        conn.execute("SET enable_seqscan = off")  # a 4,000-row table: the planner may prefer a scan
        seen: list[str] = []
        original = conn.execute

        def explain(query, params=None, **kwargs):
            seen.extend(str(row) for row in original("EXPLAIN " + query, params).fetchall())
            return original(query, params, **kwargs)

        conn.execute = explain  # type: ignore[method-assign]
        recommended_to(conn, item)
    assert any("user_recommendations_i1" in line for line in seen), seen
    assert any("Index Cond" in line and "item_id" in line for line in seen), seen
