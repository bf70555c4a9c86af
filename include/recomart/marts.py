"""Every SQL read of the dbt marts, in one place.

Each read is one ``COPY (select …) TO STDOUT`` into a data frame (ids and text stay strings).  The
frames and their columns are the data contracts between the warehouse and the model:

- :func:`read_ratings`: ``marts.user_item_ratings`` as training pairs;
- :func:`read_events`: ``marts.user_item_events`` as training events (feeds with repeat purchases);
- :func:`read_catalogue`: ``marts.dim_products`` (+ ``item_features.price_band``) and the users'
  segments from ``marts.user_features``;
- :func:`read_ranking_inputs`: the users to rank and their history (:mod:`recomart.ranking.history`);
- :func:`feature_history_span`: the first and last Feast event timestamps of the feature histories;
- :func:`feature_history_built_at` / :func:`feature_history_rebuilt_from`: when dbt last wrote them, and
  the first event timestamp it wrote after a given time (what a materialization has to load);
- :func:`marts_digest`: a digest of the rows training and ranking read (unchanged data, same digest);
- :func:`load_item_vectors` / :func:`read_item_embeddings`: the item vectors of ``reco.item_embeddings``
  (written by :mod:`recomart.search`), for the searcher, "looks like" neighbours and the content component.

A mart that does not exist yet reads as ``None`` where the function says so.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

RATINGS_RELATION = "marts.user_item_ratings"
EVENTS_RELATION = "marts.user_item_events"

_TEXT_COLUMNS = {
    "user_id": str,
    "item_id": str,
    "segment": str,
    "title": str,
    "description": str,
    "category": str,
    "brand": str,
    "price_band": str,
    "event_type": str,
    "order_id": str,
}
HISTORY_SQL = (
    "select user_id::text as user_id, item_id::text as item_id, rating, purchases, last_interaction_at"
    " from marts.user_item_ratings"
)
SEGMENTS_SQL = "select user_id::text as user_id, segment from marts.user_features"
PRODUCTS_SQL = "select item_id::text as item_id, title, description, category, brand, price from marts.dim_products"
PRICE_BANDS_SQL = "select item_id::text as item_id, price_band from marts.item_features"
EVENTS_SQL = (
    "select user_id::text as user_id, item_id::text as item_id, event_time as event_timestamp, event_type,"
    " order_id::text as order_id, quantity from {}"
)


def read_frame(conn: psycopg.Connection, query: str | sql.Composable) -> pd.DataFrame:
    """Run ``query`` through ``COPY (…) TO STDOUT`` (CSV with a header) into a DataFrame."""
    buf = io.BytesIO()
    inner = sql.SQL(query) if isinstance(query, str) else query
    stmt = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(inner)
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for chunk in copy:
            buf.write(chunk)
    buf.seek(0)
    return pd.read_csv(buf, dtype=_TEXT_COLUMNS, keep_default_na=False, na_values=[""])


def relation_exists(conn: psycopg.Connection, relation: str) -> bool:
    """Whether ``schema.name`` is a table or view."""
    row = conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()
    return bool(row and row[0])


def _relation(name: str) -> sql.Identifier:
    schema, _, table = name.rpartition(".")
    return sql.Identifier(schema, table) if schema else sql.Identifier(table)


def read_ratings(dsn: str, *, relation: str = RATINGS_RELATION) -> pd.DataFrame:
    """Training pairs ``user_id, item_id, rating, purchases, event_timestamp`` (UTC).

    ``event_timestamp`` is the pair's ``last_interaction_at``: the time a pair split orders pairs by.
    (The mart's own ``event_timestamp`` is its as-of time, the same for every row, for Feast.)
    """
    query = sql.SQL(
        "select user_id::text as user_id, item_id::text as item_id, rating::float8 as rating,"
        " purchases::int8 as purchases, last_interaction_at as event_timestamp"
        " from {}"
    ).format(_relation(relation))
    with psycopg.connect(dsn) as conn:
        frame = read_frame(conn, query)
    frame["rating"] = frame["rating"].astype("float64")
    frame["purchases"] = frame["purchases"].astype("int64")
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True, format="ISO8601")
    return frame


def read_events(dsn: str, *, relation: str = EVENTS_RELATION) -> pd.DataFrame:
    """Training events ``user_id, item_id, event_timestamp`` (UTC), ``event_type, order_id, quantity``."""
    with psycopg.connect(dsn) as conn:
        frame = read_frame(conn, sql.SQL(EVENTS_SQL).format(_relation(relation)))
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True, format="ISO8601")
    return frame


@dataclass(frozen=True)
class CatalogueFrames:
    """``products`` (``item_id, title, description, category, brand, price`` and ``price_band`` when
    ``marts.item_features`` exists) and ``users`` (``user_id, segment``); ``None`` for a missing mart."""

    products: pd.DataFrame | None
    users: pd.DataFrame | None


def read_catalogue(dsn: str) -> CatalogueFrames:
    """The products and user segments the hybrid is fitted with."""
    with psycopg.connect(dsn) as conn:
        products = read_frame(conn, PRODUCTS_SQL) if relation_exists(conn, "marts.dim_products") else None
        users = read_frame(conn, SEGMENTS_SQL) if relation_exists(conn, "marts.user_features") else None
        if products is not None and relation_exists(conn, "marts.item_features"):
            bands = read_frame(conn, PRICE_BANDS_SQL).drop_duplicates("item_id")
            products = products.merge(bands, on="item_id", how="left")
    return CatalogueFrames(products, users)


@dataclass(frozen=True)
class RankingInputs:
    """What the nightly job ranks: ``users`` (``user_id, segment``: every user of
    ``marts.user_features`` or of the history, sorted; segment NaN when unknown) and their
    ``history`` (``user_id, item_id, rating, purchases, last_interaction_at``)."""

    users: pd.DataFrame
    history: pd.DataFrame


def _in_user_range(query: str, user_range: tuple[str, str] | None) -> sql.Composable:
    """``query`` limited to the users ``lo <= user_id <= hi`` (byte order, as Python sorts str)."""
    if user_range is None:
        return sql.SQL(query)
    lo, hi = user_range
    return sql.SQL('{} where user_id::text collate "C" between {} and {}').format(
        sql.SQL(query), sql.Literal(lo), sql.Literal(hi)
    )


def read_ranking_inputs(dsn: str, user_range: tuple[str, str] | None = None) -> RankingInputs:
    """The users to rank and their history, as of the marts' latest build; with ``user_range``
    (``(lo, hi)``, inclusive, byte order) only the users in it: one shard of the nightly job."""
    with psycopg.connect(dsn) as conn:
        history = read_frame(conn, _in_user_range(HISTORY_SQL, user_range))
        segments = read_frame(conn, _in_user_range(SEGMENTS_SQL, user_range))
    history["last_interaction_at"] = pd.to_datetime(history["last_interaction_at"], utc=True, format="ISO8601")
    segments = segments.dropna(subset=["user_id"]).drop_duplicates("user_id")
    user_ids = sorted(set(segments["user_id"]).union(history["user_id"]))
    users = pd.DataFrame({"user_id": user_ids}).merge(segments, on="user_id", how="left")
    return RankingInputs(users, history)


def feature_history_span(dsn: str) -> tuple[datetime, datetime] | None:
    """``(earliest, latest)`` ``event_timestamp`` of ``marts.user_features_history`` and
    ``marts.item_features_history``, Feast's offline sources (None while both are empty)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select least((select min(event_timestamp) from marts.user_features_history), "
            "(select min(event_timestamp) from marts.item_features_history)), "
            "greatest((select max(event_timestamp) from marts.user_features_history), "
            "(select max(event_timestamp) from marts.item_features_history))"
        ).fetchone()
    return None if row is None or row[0] is None else (row[0], row[1])


def feature_history_built_at(dsn: str) -> datetime | None:
    """The latest ``built_at`` of the feature histories (when dbt last wrote a day of either), or None
    while either lacks the column (tables not built by dbt) or both are empty."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "select count(*) from information_schema.columns where table_schema = 'marts'"
            " and table_name in ('user_features_history', 'item_features_history') and column_name = 'built_at'"
        ).fetchone()
        if found is None or found[0] < 2:
            return None
        row = conn.execute(
            "select greatest((select max(built_at) from marts.user_features_history),"
            " (select max(built_at) from marts.item_features_history))"
        ).fetchone()
    return None if row is None else row[0]


def feature_history_rebuilt_from(dsn: str, since: datetime) -> datetime | None:
    """The earliest ``event_timestamp`` of the feature-history rows dbt wrote after ``since`` (their
    ``built_at``), or None when it wrote none."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select least((select min(event_timestamp) from marts.user_features_history where built_at > %(since)s),"
            " (select min(event_timestamp) from marts.item_features_history where built_at > %(since)s))",
            {"since": since},
        ).fetchone()
    return None if row is None else row[0]


#: the marts whose rows decide a model and its lists: what training and the nightly ranking read
DIGEST_RELATIONS = (
    RATINGS_RELATION,
    EVENTS_RELATION,
    "marts.dim_products",
    "marts.item_features",
    "marts.user_features",
)
# per relation: the row count and two order-independent sums of a 64-bit hash of each row's text (a
# multiset digest: no sort, one scan); the text of a row is fixed by the session settings set below
_DIGEST_SQL = (
    "select count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0),"
    " coalesce(sum(hashtextextended(t::text, 1)::numeric), 0) from {} as t"
)


def marts_digest(dsn: str, relations: tuple[str, ...] = DIGEST_RELATIONS) -> str | None:
    """A sha256 hex digest of the rows of ``relations`` (a missing mart counts as absent), or None when
    none exists yet.  Set-based and order-independent: the same rows give the same digest whatever
    their physical order, so a ``dbt build`` on unchanged data keeps it; any changed row changes it."""
    parts: list[str] = []
    with psycopg.connect(dsn) as conn:
        conn.execute("set timezone to 'UTC'")
        conn.execute("set datestyle to 'ISO, YMD'")
        conn.execute("set extra_float_digits to 1")
        for relation in relations:
            if not relation_exists(conn, relation):
                parts.append(f"{relation}:absent")
                continue
            row = conn.execute(sql.SQL(_DIGEST_SQL).format(_relation(relation))).fetchone()
            assert row is not None
            parts.append(f"{relation}:{row[0]}:{row[1]}:{row[2]}")
    if all(part.endswith(":absent") for part in parts):
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class StoredVectors:
    """Vectors of one model, row ``i`` belonging to ``item_ids[i]`` (sorted by item id)."""

    model: str
    item_ids: np.ndarray  # object (str), n
    text_hashes: np.ndarray  # object (str), n
    vectors: np.ndarray  # float32, n x dim


def load_item_vectors(conn: psycopg.Connection, model: str) -> StoredVectors:
    """Every stored vector of ``model``, in one row from the server (ids, hashes and the vector bytes)."""
    with conn.cursor(binary=True) as cur:
        cur.execute(
            """
            SELECT coalesce(array_agg(item_id ORDER BY item_id), '{}'),
                   coalesce(array_agg(text_hash ORDER BY item_id), '{}'),
                   coalesce(string_agg(vector, ''::bytea ORDER BY item_id), ''::bytea),
                   coalesce(max(dim), 0), count(DISTINCT dim)
            FROM reco.item_embeddings WHERE model = %s
            """,
            (model,),
        )
        ids, hashes, blob, dim, dims = cur.fetchone()
    if dims > 1:
        raise ValueError(f"reco.item_embeddings holds vectors of several dimensions for model {model!r}")
    vectors = np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32).reshape(len(ids), int(dim))
    return StoredVectors(model, np.array(ids, dtype=object), np.array(hashes, dtype=object), vectors)


def read_item_embeddings(dsn: str) -> StoredVectors | None:
    """The vectors of ``reco.item_embeddings`` made by the model that embedded the most items (after a
    model change, the one the refresh is moving to once it has overtaken the old one), or None when
    the table is missing or empty."""
    with psycopg.connect(dsn) as conn:
        if not relation_exists(conn, "reco.item_embeddings"):
            return None
        row = conn.execute(
            "SELECT model FROM reco.item_embeddings GROUP BY model ORDER BY count(*) DESC, model LIMIT 1"
        ).fetchone()
        return None if row is None else load_item_vectors(conn, row[0])


def item_embeddings_digest(dsn: str) -> str | None:
    """md5 of every (item, model, text hash) of ``reco.item_embeddings``: another vector set, another
    digest (None without the table or any vector)."""
    with psycopg.connect(dsn) as conn:
        if not relation_exists(conn, "reco.item_embeddings"):
            return None
        row = conn.execute(
            "SELECT md5(string_agg(item_id || ':' || model || ':' || text_hash, ',' ORDER BY item_id))"
            " FROM reco.item_embeddings"
        ).fetchone()
    return None if row is None else row[0]
