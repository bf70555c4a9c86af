"""The ``reco`` tables: specs of the swapped tables and the append-only ``reco.generations`` log (created by
the warehouse migrations)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, get_args

import psycopg
from psycopg.types.json import Jsonb

from recomart.recommend.writer import Index, TableSpec, View
from recomart.warehouse.migrate import migrate_connection

SCHEMA = "reco"

# The enriched views read the catalogue through this function rather than from marts.dim_products itself:
# dbt replaces a table by renaming a new one into place and dropping the old one CASCADE, which would
# drop any view on it, so after a plain `dbt build` the views were gone until the next publish. A SQL
# function's body is resolved when it runs, not tracked as a dependency, and the planner inlines it
# into the view's query (a single STABLE SELECT), so it costs nothing.
PRODUCT_DETAILS_SQL = (
    "CREATE OR REPLACE FUNCTION reco.product_details()"
    " RETURNS TABLE (item_id text, title text, category text, price numeric)"
    " LANGUAGE sql STABLE AS $$"
    " SELECT item_id::text, title::text, category::text, price::numeric FROM marts.dim_products $$"
)

USER_RECOMMENDATIONS = TableSpec(
    schema=SCHEMA,
    name="user_recommendations",
    columns_ddl=(
        ("generation_id", "bigint NOT NULL"),
        ("user_id", "text NOT NULL"),
        ("rank", "smallint NOT NULL"),
        ("item_id", "text NOT NULL"),
        ("score", "real NOT NULL"),
        ("svd_score", "real"),
        ("content_score", "real"),
        ("item_item_score", "real"),
        ("buy_again_score", "real"),
        ("popularity_score", "real"),
        ("strategy", "text NOT NULL"),
        ("model_version", "text"),
    ),
    # readers look up one user's list; the dashboard's product page, the users an item is recommended to
    # (on item_id alone: a popular item's rows sort by rank after the lookup, and the index builds in 0.56 s
    # against 0.84 s with rank on 1M rows of the scoring benchmark, whose items repeat a lot)
    indexes=(Index(("user_id", "rank"), unique=True), Index(("item_id",))),
    comments={
        "": "Top-k recommendations per user of the live generation (swapped in atomically each night).",
        "generation_id": "reco.generations row that produced this table.",
        "user_id": "Warehouse user id (marts.user_features).",
        "rank": "1 = best.",
        "item_id": "Recommended item (marts.dim_products).",
        "score": (
            "Ranking score: weighted sum of the per-user min-max normalised components (hybrid*),"
            " or segment popularity (popular_*)."
        ),
        "svd_score": "Unclipped mu + bu + bi + pu.qi of the champion (NULL when the user has no factors).",
        "item_item_score": (
            "Sum over the user's recency-weighted items of their co-occurrence similarity to this item (or NULL)."
        ),
        "content_score": "TF-IDF similarity of the item to the user's recency-weighted profile (or NULL).",
        "buy_again_score": (
            "Recency-weighted count of the user's own purchases of this item; NULL unless the feed allows repeats."
        ),
        "popularity_score": (
            "hybrid*: the all-time prior log(1 + distinct users) scaled to [0, 1];"
            " popular_*: trending popularity of the item in the user's segment, in [0, 1]."
        ),
        "strategy": (
            "hybrid (user has factors) | hybrid_no_svd (history, no factors) | popular_cold_start (no history)"
            " | popular_no_model (no champion yet)."
        ),
        "model_version": "Champion model version of the generation (NULL when no model was registered).",
    },
    views=(
        View(
            name="user_recommendations_enriched",
            select_sql=(
                "SELECT r.generation_id, r.user_id, r.rank, r.item_id, p.title, p.category, p.price,"
                " r.score, r.strategy, r.model_version"
                " FROM reco.user_recommendations AS r"
                " LEFT JOIN reco.product_details() AS p ON p.item_id = r.item_id"
            ),
            comment="reco.user_recommendations with title, category and price from marts.dim_products.",
            requires=("marts.dim_products",),
            setup_sql=PRODUCT_DETAILS_SQL,
        ),
    ),
)

#: the kinds of ``reco.similar_items``: co-occurrence ("also bought", the default everywhere) and
#: nearest neighbours by the products' text embeddings ("looks like this")
SimilarKind = Literal["also_bought", "looks_like"]
ALSO_BOUGHT, LOOKS_LIKE = SIMILAR_KINDS = get_args(SimilarKind)

SIMILAR_ITEMS = TableSpec(
    schema=SCHEMA,
    name="similar_items",
    columns_ddl=(
        ("generation_id", "bigint NOT NULL"),
        ("item_id", "text NOT NULL"),
        ("kind", "text NOT NULL"),
        ("rank", "smallint NOT NULL"),
        ("similar_item_id", "text NOT NULL"),
        ("score", "real NOT NULL"),
    ),
    # the same unique key as migration 0014 gives a table published before kinds existed
    indexes=(Index(("item_id", "kind", "rank"), unique=True),),
    comments={
        "": (
            "Top-N neighbours per item of the live generation, by kind: also_bought (customers who bought"
            " this also bought) and looks_like (nearest by text embedding)."
        ),
        "generation_id": "reco.generations row that produced this table.",
        "item_id": "The item being looked at.",
        "kind": (
            "also_bought: co-occurrence neighbours of the champion; looks_like: nearest neighbours by the"
            " cosine of the reco.item_embeddings vectors (only items with a vector)."
        ),
        "rank": "1 = most similar (within the item and kind).",
        "similar_item_id": "A neighbour of item_id.",
        "score": (
            "also_bought: Jaccard (or cosine) similarity of the two items' sets of customers, in (0, 1];"
            " looks_like: cosine of the two items' text embeddings, in [-1, 1]."
        ),
    },
    views=(
        View(
            name="similar_items_enriched",
            select_sql=(
                "SELECT s.generation_id, s.item_id, a.title AS item_title, s.kind, s.rank, s.similar_item_id,"
                " b.title AS similar_title, b.category AS similar_category, b.price AS similar_price, s.score"
                " FROM reco.similar_items AS s"
                " LEFT JOIN reco.product_details() AS a ON a.item_id = s.item_id"
                " LEFT JOIN reco.product_details() AS b ON b.item_id = s.similar_item_id"
            ),
            comment="reco.similar_items with the titles of both items and the neighbour's category and price.",
            requires=("marts.dim_products",),
            setup_sql=PRODUCT_DETAILS_SQL,
        ),
    ),
)

POPULAR_ITEMS = TableSpec(
    schema=SCHEMA,
    name="popular_items",
    columns_ddl=(
        ("generation_id", "bigint NOT NULL"),
        ("segment", "text NOT NULL"),
        ("rank", "smallint NOT NULL"),
        ("item_id", "text NOT NULL"),
        ("score", "real NOT NULL"),
    ),
    indexes=(Index(("segment", "rank"), unique=True),),
    comments={
        "": "Trending items per user segment ('__all__' = every user), relative to the data's latest event.",
        "generation_id": "reco.generations row that produced this table.",
        "segment": "User segment from marts.user_features, or '__all__' for the overall ranking.",
        "rank": "1 = most trending in the segment.",
        "item_id": "A trending item.",
        "score": "Popularity in [0, 1] (1 = the segment's most trending item).",
    },
)

GENERATION_LOCK_CLASS = 0x72676E  # pg_advisory_lock(GENERATION_LOCK_CLASS, generation_id): held while building
STATUSES = ("building", "live", "superseded", "failed", "rolled_back")

# A generation still ``building`` whose build session no longer holds its advisory lock was left by
# a run that died (killed, crashed, lost its connection): nothing will ever finish it.  A sharded
# generation (``details.shards``) is built by several tasks, each holding the lock while it works,
# so between two tasks nobody holds it: only the next sharded run (:func:`fail_abandoned_sharded`,
# never concurrent: ``max_active_runs=1``) or its own run's teardown marks it failed.
_FAIL_ORPHANS = """
UPDATE reco.generations AS g
   SET status = 'failed',
       details = coalesce(g.details, '{}'::jsonb) || jsonb_build_object(
           'error', %(error)s::text,
           'failed_at', now())
 WHERE g.status = 'building' AND NOT g.is_live AND coalesce(g.details ? 'shards', false) = %(sharded)s
   AND NOT EXISTS (
       SELECT FROM pg_locks AS l
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = %(lock_class)s::oid AND l.objsubid = 2 AND l.objid::bigint = g.generation_id)
RETURNING g.generation_id
"""


def fail_orphaned_generations(conn: psycopg.Connection) -> list[int]:
    """Mark ``failed`` every ``building`` generation whose build lock is no longer held; return their ids.

    A build in progress holds its lock on its own session, so it is never touched.  The caller commits.
    """
    error = "orphaned: the run building it ended without finishing it (its lock was no longer held)"
    params = {"lock_class": GENERATION_LOCK_CLASS, "error": error, "sharded": False}
    rows = conn.execute(_FAIL_ORPHANS, params).fetchall()
    return sorted(int(r[0]) for r in rows)


def fail_abandoned_sharded(conn: psycopg.Connection) -> list[int]:
    """Mark ``failed`` every sharded generation still ``building`` while no task of it holds its lock;
    return their ids.  Only for the start of a sharded run: with one run of the DAG at a time, any
    other sharded generation belongs to a run that ended without publishing.  The caller commits."""
    error = "abandoned: its sharded run ended without publishing it"
    params = {"lock_class": GENERATION_LOCK_CLASS, "error": error, "sharded": True}
    rows = conn.execute(_FAIL_ORPHANS, params).fetchall()
    return sorted(int(r[0]) for r in rows)


@contextmanager
def working_on_generation(dsn: str, generation_id: int) -> Iterator[psycopg.Connection]:
    """A session holding ``generation_id``'s build lock in shared mode for the block (the shards of a
    run work at once; ``forget``'s :func:`wait_for_builds` waits for all of them), after checking that
    the generation is still ``building`` (RuntimeError otherwise: marked failed, or published)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", (GENERATION_LOCK_CLASS, generation_id))
        row = conn.execute("SELECT status FROM reco.generations WHERE generation_id = %s", (generation_id,)).fetchone()
        conn.commit()
        if row is None or row[0] != "building":
            raise RuntimeError(f"reco.generations {generation_id} is {row[0] if row else 'missing'}, not building")
        yield conn


class BuildingGeneration:
    """A ``building`` row of ``reco.generations`` and the session holding its advisory lock.

    The lock (``GENERATION_LOCK_CLASS``, generation id) is taken in the transaction that inserts the
    row, so no other session ever sees the row without the lock; it is held until :meth:`close`
    (or until the process dies, when Postgres ends the session and the next run marks the row failed).
    """

    def __init__(self, conn: psycopg.Connection, generation_id: int, orphans: list[int]) -> None:
        self.conn = conn
        self.generation_id = generation_id
        self.orphans_failed = orphans

    def describe(
        self, model_version: str | None, details: Mapping[str, Any] | None, marts_digest: str | None = None
    ) -> None:
        """Record the model version, details and the digest of the marts read once the build knows them."""
        self.conn.execute(
            "UPDATE reco.generations SET model_version = %s, details = coalesce(details, '{}'::jsonb) || %s,"
            " marts_digest = coalesce(%s, marts_digest) WHERE generation_id = %s",
            (model_version, Jsonb(dict(details or {})), marts_digest, self.generation_id),
        )
        self.conn.commit()

    def close(self) -> None:
        """End the build session (releasing the lock)."""
        self.conn.close()

    def __enter__(self) -> BuildingGeneration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def begin_generation(
    dsn: str, model_version: str | None = None, details: Mapping[str, Any] | None = None
) -> BuildingGeneration:
    """Mark orphaned generations failed, then append a ``building`` generation whose advisory lock this
    build's session holds until it is closed (use it as a context manager)."""
    conn = psycopg.connect(dsn)
    try:
        migrate_connection(conn)
        orphans = fail_orphaned_generations(conn)
        row = conn.execute(
            "INSERT INTO reco.generations (model_version, details) VALUES (%s, %s) RETURNING generation_id",
            (model_version, Jsonb(dict(details or {}))),
        ).fetchone()
        assert row is not None
        generation_id = int(row[0])
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (GENERATION_LOCK_CLASS, generation_id))
        conn.commit()
    except BaseException:
        conn.close()
        raise
    return BuildingGeneration(conn, generation_id, orphans)


def mark_live(
    cur: psycopg.Cursor,
    generation_id: int,
    *,
    strategy_summary: Mapping[str, int],
    row_count: int,
    user_count: int,
    popular_item_count: int,
    similar_item_count: int | None = None,
) -> None:
    """Inside the swap transaction: supersede the live generation and make ``generation_id`` live.

    Raises ``RuntimeError`` (rolling the swap back) when the generation is no longer ``building``, e.g.
    marked failed as orphaned after its build session was lost.
    """
    cur.execute(
        "UPDATE reco.generations SET is_live = false, status = 'superseded' WHERE is_live AND generation_id <> %s",
        (generation_id,),
    )
    cur.execute(
        """UPDATE reco.generations
              SET is_live = true, status = 'live', built_at = now(), strategy_summary = %s,
                  row_count = %s, user_count = %s, popular_item_count = %s, similar_item_count = %s
            WHERE generation_id = %s AND status = 'building'""",
        (Jsonb(dict(strategy_summary)), row_count, user_count, popular_item_count, similar_item_count, generation_id),
    )
    if cur.rowcount != 1:
        raise RuntimeError(f"reco.generations {generation_id} is no longer building (marked failed?); not swapping")


def mark_failed(dsn: str, generation_id: int, error: str, *, only_building: bool = False) -> bool:
    """Record a failed generation (the live tables are untouched); ``only_building``: unless it has
    ended already (published, superseded, failed).  Returns whether the row was marked."""
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            """UPDATE reco.generations
                  SET status = 'failed',
                      details = coalesce(details, '{}'::jsonb) || jsonb_build_object('error', %s::text)
                WHERE generation_id = %s AND NOT is_live AND (status = 'building' OR NOT %s)""",
            (error[:2000], generation_id, only_building),
        )
        return cur.rowcount == 1


def mark_restored(cur: psycopg.Cursor, rolled_back: int, restored: int, rollback_id: int) -> None:
    """Inside a rollback's swap transaction: ``rolled_back`` (the live generation) becomes
    ``rolled_back`` and ``restored`` (the one in ``*_previous``) is live again; each row's ``details``
    records the rollback (``rolled_back`` / ``restored``: rollback id and time)."""
    note = (
        "coalesce(details, '{}'::jsonb)"
        " || jsonb_build_object(%s::text, jsonb_build_object('rollback_id', %s::bigint, 'at', now()))"
    )
    cur.execute(
        f"UPDATE reco.generations SET is_live = false, status = 'rolled_back', details = {note}"
        " WHERE generation_id = %s AND is_live",
        ("rolled_back", rollback_id, rolled_back),
    )
    if cur.rowcount != 1:
        raise RuntimeError(f"reco.generations {rolled_back} is not the live generation; not rolling back")
    cur.execute(
        f"UPDATE reco.generations SET is_live = true, status = 'live', details = {note} WHERE generation_id = %s",
        ("restored", rollback_id, restored),
    )
    if cur.rowcount != 1:
        raise RuntimeError(f"reco.generations has no generation {restored}; not rolling back")


def wait_for_builds(conn: psycopg.Connection, log: Callable[[str], Any] = print) -> list[int]:
    """Wait until every generation being built right now has finished (its build session released its
    lock); return their ids.  A build that read the marts before a change (e.g. an erasure) then has
    published or failed, and whatever it published can be corrected after this returns."""
    if conn.execute("SELECT to_regclass('reco.generations') IS NOT NULL").fetchone() != (True,):
        return []
    building = [
        int(r[0])
        for r in conn.execute(
            "SELECT generation_id FROM reco.generations WHERE status = 'building' ORDER BY generation_id"
        ).fetchall()
    ]
    conn.commit()
    for generation_id in building:
        log(f"waiting for generation {generation_id}, being built, to finish")
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (GENERATION_LOCK_CLASS, generation_id))
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (GENERATION_LOCK_CLASS, generation_id))
        conn.commit()
    return building


def live_generation(dsn: str) -> tuple[int, str | None, str | None] | None:
    """(generation id, model version, marts digest) of the live generation, or None (none yet, or no log)."""
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('reco.generations') IS NOT NULL").fetchone() != (True,):
            return None
        # to_jsonb: a log from before the digest column reads as NULL (no DDL on a read)
        row = conn.execute(
            "SELECT generation_id, model_version, to_jsonb(g) ->> 'marts_digest' FROM reco.generations g WHERE is_live"
        ).fetchone()
    return None if row is None else (int(row[0]), row[1], row[2])
