"""Training features point-in-time through a FeatureService, with one indexed lookup per row and view.

Feast's ``get_historical_features`` on the Postgres offline store joins every entity row to every
feature row of its ``ttl`` window, ranks them with ``ROW_NUMBER`` and joins the ranked CTE back to
itself (feast-dev/feast#3867). With the daily feature histories that is ~60 item rows per label row
(600k rows for 10k labels), and the planner estimates those CTEs at 1 to 660 rows. Without column
statistics it picks hash joins (6 s for 10k rows at load 11); once the history marts are analyzed
(``ANALYZE``, or autovacuum whenever it gets to them) it picks a nested loop over the CTE and the same
call takes 140 to 165 s (docs/features.md has the plans). That flip was the unexplained 0.6 s / 22 s /
125 s spread.

:func:`training_features` gives the same answer (tested against ``get_historical_features`` on the
same rows) with a plan that cannot flip: the entity rows are copied into a temporary table, and
each row takes, per feature view of the service, the latest source row of its entity with
``label time - ttl <= event_timestamp <= label time`` (the bounds Feast's join uses), as a
``LATERAL ... ORDER BY event_timestamp DESC LIMIT 1``: one backward scan of the marts' unique
``(entity, event_timestamp)`` index per row and view. Which views, features, sources and ttls it
reads comes from the Feast registry's FeatureService, so the service stays the one contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recomart.features.names import FEATURE_SERVICE
from recomart.features.store import feature_store

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

_ENTITY_TABLE = "recomart_pit_entities"
_ROW_ID = "_pit_row"


@dataclass(frozen=True)
class ViewRead:
    """What the point-in-time read takes from one feature view of a service.

    ``source_sql`` is the view's batch source as a FROM item (a table name, or a query in
    parentheses); ``join_key`` its entity column; ``features`` the service's projection of it.
    """

    name: str
    source_sql: str
    join_key: str
    timestamp_field: str
    created_timestamp_column: str | None
    ttl_seconds: int
    features: tuple[str, ...]


def service_view_reads(store: FeatureStore, feature_service: str = FEATURE_SERVICE) -> list[ViewRead]:
    """The :class:`ViewRead` of each feature view that ``feature_service`` projects (registry order).

    Raises ``ValueError`` for a view with more than one entity (not supported here) or for two
    views that project the same feature name (Feast would need ``full_feature_names``).
    """
    service = store.get_feature_service(feature_service)
    reads = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        if len(view.entity_columns) != 1:
            raise ValueError(f"feature view {view.name!r} has {len(view.entity_columns)} entity columns, not one")
        source = view.batch_source
        reads.append(
            ViewRead(
                name=projection.name_to_use(),
                source_sql=source.get_table_query_string(),
                join_key=view.entity_columns[0].name,
                timestamp_field=source.timestamp_field,
                created_timestamp_column=source.created_timestamp_column or None,
                ttl_seconds=int(view.ttl.total_seconds()) if view.ttl else 0,
                features=tuple(f.name for f in projection.features),
            )
        )
    names = [f for read in reads for f in read.features]
    if len(names) != len(set(names)):
        raise ValueError(f"feature service {feature_service!r} projects a feature name twice: {names}")
    return reads


def point_in_time_sql(reads: Sequence[ViewRead], entity_table: str = _ENTITY_TABLE):
    """The SELECT of every entity row of ``entity_table`` with each view's features as of its label time.

    Returns a ``psycopg.sql.Composed``: ``_pit_row`` then the features of ``reads`` in order, one row
    per entity row, ordered by ``_pit_row``. A view with ``ttl_seconds`` 0 has no lower bound.
    """
    from psycopg import sql

    columns = [sql.Identifier("e", _ROW_ID)]
    joins = []
    for n, read in enumerate(reads):
        alias = f"fv{n}"
        columns += [sql.Identifier(alias, f) for f in read.features]
        ts = sql.Identifier("src", read.timestamp_field)
        lower = (
            sql.SQL(" and {ts} >= e.event_timestamp - {ttl} * interval '1 second'").format(
                ts=ts, ttl=sql.Literal(read.ttl_seconds)
            )
            if read.ttl_seconds
            else sql.SQL("")
        )
        order = [sql.SQL("{} desc").format(ts)]
        if read.created_timestamp_column:
            order.append(sql.SQL("{} desc").format(sql.Identifier("src", read.created_timestamp_column)))
        joins.append(
            sql.SQL(
                "left join lateral (select {features} from {source} as src"
                " where {key} = {entity_key} and {ts} <= e.event_timestamp{lower}"
                " order by {order} limit 1) as {alias} on true"
            ).format(
                features=sql.SQL(", ").join(sql.Identifier("src", f) for f in read.features),
                source=sql.SQL(read.source_sql),  # the registered source's own SQL, as Feast runs it
                key=sql.Identifier("src", read.join_key),
                entity_key=sql.Identifier("e", read.join_key),
                ts=ts,
                lower=lower,
                order=sql.SQL(", ").join(order),
                alias=sql.Identifier(alias),
            )
        )
    return sql.SQL("select {columns} from {table} as e {joins} order by e.{row}").format(
        columns=sql.SQL(", ").join(columns),
        table=sql.Identifier(entity_table),
        joins=sql.SQL(" ").join(joins),
        row=sql.Identifier(_ROW_ID),
    )


def rows_views(entity_rows: pd.DataFrame, reads: Sequence[ViewRead]) -> list[ViewRead]:
    """The views of ``reads`` whose join key ``entity_rows`` has, after checking the rows.

    Raises ``ValueError`` when there is no such view, when ``event_timestamp`` (the cutoff) is
    missing or not timezone-aware, or when a used key or the cutoff is empty in some row.
    """
    import pandas as pd

    used = [read for read in reads if read.join_key in entity_rows.columns]
    if not used:
        keys = sorted({read.join_key for read in reads})
        raise ValueError(f"entity rows have none of the service's join keys {keys}")
    if "event_timestamp" not in entity_rows.columns:
        raise ValueError("entity rows lack event_timestamp (the cutoff)")
    if not isinstance(entity_rows["event_timestamp"].dtype, pd.DatetimeTZDtype):
        raise ValueError("entity rows' event_timestamp (the cutoff) must be timezone-aware (UTC)")
    columns = sorted({read.join_key for read in used}) + ["event_timestamp"]
    if entity_rows[columns].isna().any().any():
        raise ValueError(f"entity rows have empty values in {columns}")
    return used


def _offline_conninfo(store: FeatureStore) -> str:
    """libpq connection string of the Feast offline store (the warehouse)."""
    from psycopg.conninfo import make_conninfo

    cfg = store.config.offline_store
    return make_conninfo(
        host=cfg.host,
        port=cfg.port,
        dbname=cfg.database,
        user=cfg.user,
        password=cfg.password or None,
        sslmode=cfg.sslmode or None,
    )


def _copy_entity_rows(cur, entity_rows: pd.DataFrame, keys: Sequence[str]) -> None:
    """Copy ``entity_rows`` (row number, ``keys`` as text, label time) into the temporary entity table."""
    from psycopg import sql

    cur.execute(
        sql.SQL(
            "create temporary table {table} ({row} bigint primary key, {keys}, event_timestamp timestamptz not null)"
            " on commit drop"
        ).format(
            table=sql.Identifier(_ENTITY_TABLE),
            row=sql.Identifier(_ROW_ID),
            keys=sql.SQL(", ").join(sql.SQL("{} text not null").format(sql.Identifier(k)) for k in keys),
        )
    )
    frame = entity_rows[[*keys, "event_timestamp"]].astype(dict.fromkeys(keys, str))
    frame.insert(0, _ROW_ID, range(len(frame)))
    text = frame.to_csv(index=False, header=False, date_format="%Y-%m-%d %H:%M:%S.%f%z")
    copy_sql = sql.SQL("copy {} ({}) from stdin (format csv)").format(
        sql.Identifier(_ENTITY_TABLE), sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    )
    with cur.copy(copy_sql) as copy:
        copy.write(text)
    cur.execute(sql.SQL("analyze {}").format(sql.Identifier(_ENTITY_TABLE)))


def training_features(
    repo_dir: Path,
    env: Mapping[str, str],
    entity_rows: pd.DataFrame,
    feature_service: str = FEATURE_SERVICE,
) -> pd.DataFrame:
    """The training feature frame of ``entity_rows``, point-in-time, through ``feature_service``.

    ``entity_rows`` needs ``event_timestamp`` (the cutoff or label time, timezone-aware) and the
    join keys (``user_id``, ``item_id``) of the views to read: a view whose key is absent is
    skipped, so a candidate set can read user features per (user, cutoff) and item features per
    (item, cutoff) and merge them, instead of one lookup per pair. Other columns (labels, scores)
    are kept. Returns a copy of
    ``entity_rows`` (same order and index) with one column per feature of the service: for each
    feature view, the values of the entity's latest source row with ``event_timestamp`` at or
    before the row's time and not older than the view's ttl (``NaN``/``None`` when there is none):
    the answer of Feast's ``get_historical_features`` through the same service, never a value
    stamped after the cutoff. Runs as one transaction on the Feast offline store's database
    (read only but for a temporary table); cost grows linearly with the rows, not the history.
    """
    import pandas as pd
    import psycopg

    store = feature_store(repo_dir, env)
    reads = rows_views(entity_rows, service_view_reads(store, feature_service))
    with psycopg.connect(_offline_conninfo(store)) as conn, conn.cursor() as cur:
        _copy_entity_rows(cur, entity_rows, sorted({read.join_key for read in reads}))
        cur.execute("set local jit = off")  # ~80 ms of compiling for a plan of index lookups
        cur.execute(point_in_time_sql(reads))
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
    features = pd.DataFrame.from_records(rows, columns=names, coerce_float=True).drop(columns=[_ROW_ID])
    for column in features.select_dtypes("datetimetz").columns:  # psycopg's zone is Etc/UTC
        features[column] = features[column].dt.tz_convert("UTC")
    clash = set(features.columns) & set(entity_rows.columns)
    if clash:
        raise ValueError(f"entity rows already have feature columns {sorted(clash)}")
    features.index = entity_rows.index
    return pd.concat([entity_rows, features], axis=1)


def entity_frames_at(
    repo_dir: Path,
    env: Mapping[str, str],
    cutoff: datetime,
    ids: Mapping[str, Sequence[str]],
    feature_service: str = FEATURE_SERVICE,
) -> dict[str, pd.DataFrame]:
    """Each entity's features at one ``cutoff``, through ``feature_service``, point-in-time.

    ``ids`` maps a join key to its ids, e.g. ``{"user_id": users, "item_id": items}``; returns,
    per key, a frame indexed by the (distinct) ids with the features of the views of that key
    (the user and item frames :func:`recomart.ranking.ranker_features.frame_columns` joins).
    ``cutoff`` must be timezone-aware.
    """
    import pandas as pd

    frames = {}
    for key, values in ids.items():
        distinct = pd.unique(pd.Series(values, dtype=str))
        rows = pd.DataFrame({key: distinct, "event_timestamp": pd.Timestamp(cutoff)})
        frames[key] = training_features(repo_dir, env, rows, feature_service).drop(columns="event_timestamp")
        frames[key] = frames[key].set_index(key)
    return frames
