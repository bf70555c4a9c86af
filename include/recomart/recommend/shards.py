"""The nightly run fanned out: one generation, ranked by several shard tasks, published by a final one.

1. :func:`begin_sharded_generation` (one task) begins the generation, pins the champion version,
   stages ``reco.similar_items`` and ``reco.popular_items`` and an empty ``reco.user_recommendations``
   as ``<name>__g<generation id>`` tables, and splits the users into contiguous ranges of the user ids
   in byte order (``ntile``: shards differ by at most one user), each with its expected user count.
2. :func:`rank_shard` (one task per shard, any number at once, on any worker) loads the pinned version,
   reads only its users' history, ranks them, and in one transaction deletes its range's rows (a
   previous attempt's) and COPYs its own: a retried shard replaces its rows, never duplicates them.
3. :func:`publish_sharded_generation` (after every shard succeeded) checks that the marts are those the
   run began with and that every shard delivered every one of its users, then builds the indexes,
   ``ANALYZE``\\ s and swaps the three tables in atomically, as the single-task run does.
4. :func:`discard_sharded_generation` (the run's teardown) marks an unpublished generation failed and
   drops its tables: the live generation stays the previous one.

Each task holds the generation's build lock (shared) while it works, so ``forget`` waits for them; the
final check of the marts digest fails a run whose marts changed meanwhile (an erasure, a new build).

Memory of a shard: the artifact (its item-side matrices, the same in every shard) and the scores of
one block of users (``block_size`` × items) are fixed costs; only its users' history and its output
grow with the shard (``benchmarks/shard_memory.py`` measures it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from recomart.marts import marts_digest, read_item_embeddings, read_ranking_inputs
from recomart.model.registry import current_champion_version, load_champion
from recomart.ranking.hybrid import HybridRecommender
from recomart.recommend.run import (
    OUTPUT_COLUMNS,
    GenerationResult,
    StoreFeatures,
    attach_ranker_features,
    fallback_recommender,
    generation_details,
    similar_frame,
    with_generation,
)
from recomart.recommend.tables import (
    POPULAR_ITEMS,
    SIMILAR_ITEMS,
    USER_RECOMMENDATIONS,
    begin_generation,
    fail_abandoned_sharded,
    mark_failed,
    mark_live,
    working_on_generation,
)
from recomart.recommend.writer import create_table, drop_tables, publish_prestaged, replace_rows

TABLES = (USER_RECOMMENDATIONS, SIMILAR_ITEMS, POPULAR_ITEMS)

# the users the single-task run ranks (recomart.marts.read_ranking_inputs): every user of
# marts.user_features or of the history, split into ``ntile`` ranges in byte order
_PLAN_SQL = """
with users as (
    select user_id::text as user_id from marts.user_features where user_id is not null and user_id::text <> ''
    union
    select user_id::text from marts.user_item_ratings where user_id is not null and user_id::text <> ''
), split as (
    select user_id, ntile(%s) over (order by user_id collate "C") - 1 as shard from users
)
select shard, min(user_id collate "C"), max(user_id collate "C"), count(*) from split group by shard order by shard
"""


@dataclass(frozen=True)
class Shard:
    """One shard of a sharded generation: users ``first_user`` … ``last_user`` (byte order, inclusive)."""

    generation_id: int
    index: int
    first_user: str
    last_user: str
    users: int
    model_version: str | None
    marts_digest: str | None
    k: int = 10
    #: the generation's feature-store cutoff (ISO, UTC): every shard's ranker reads features as of it
    features_cutoff: str | None = None

    @property
    def suffix(self) -> str:
        return generation_suffix(self.generation_id)

    def user_filter(self) -> sql.Composable:
        """The SQL condition selecting this shard's users."""
        return sql.SQL('user_id collate "C" between {} and {}').format(
            sql.Literal(self.first_user), sql.Literal(self.last_user)
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Shard:
        return cls(**data)


def generation_suffix(generation_id: int) -> str:
    """Suffix of a sharded generation's tables before the swap: ``reco.<name>__g<id>``."""
    return f"__g{generation_id}"


def plan_shards(dsn: str, shards: int) -> list[tuple[str, str, int]]:
    """``(first user, last user, users)`` of at most ``shards`` contiguous ranges covering every user."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(_PLAN_SQL, (shards,)).fetchall()
    return [(str(first), str(last), int(n)) for _, first, last, n in rows]


def shard_recommender(
    dsn: str, version: str | None, *, tracking_uri: str, model_name: str, repeat_purchases: bool
) -> HybridRecommender:
    """The pinned champion ``version``'s recommender, or (no champion: ``None``) the popularity fallback
    fitted on all of tonight's marts."""
    if version is None:
        return fallback_recommender(dsn, read_ranking_inputs(dsn), repeat_purchases=repeat_purchases)
    champion = load_champion(tracking_uri, model_name, version=version)
    if champion is None:
        raise RuntimeError(f"model {model_name} version {version} could not be loaded")
    return champion.recommender


def begin_sharded_generation(
    dsn: str,
    shards: int,
    *,
    tracking_uri: str,
    model_name: str,
    dataset: str | None = None,
    repeat_purchases: bool = False,
    k: int = 10,
    popular_n: int = 100,
    digest: str | None = None,
    log: Callable[[str], Any] = print,
) -> list[Shard]:
    """Begin a generation ranked by up to ``shards`` tasks and stage its item-side tables (see the
    module docstring); return its shards.  ``digest``: the marts' digest, taken before reading them."""
    with psycopg.connect(dsn) as conn:
        if abandoned := fail_abandoned_sharded(conn):
            log(f"marked abandoned sharded generations failed: {abandoned}")
    with begin_generation(dsn, details={"shards": shards}) as generation:
        gid = generation.generation_id
        try:
            version = current_champion_version(tracking_uri, model_name)
            recommender = shard_recommender(
                dsn, version, tracking_uri=tracking_uri, model_name=model_name, repeat_purchases=repeat_purchases
            )
            details = generation_details(recommender, version, k=k, dataset=dataset, model_name=model_name)
            generation.describe(version, {**details, "shards": shards}, digest)
            suffix = generation_suffix(gid)
            create_table(dsn, USER_RECOMMENDATIONS, suffix)
            similar = similar_frame(recommender, read_item_embeddings(dsn))
            create_table(dsn, SIMILAR_ITEMS, suffix, with_generation(similar, gid))
            create_table(dsn, POPULAR_ITEMS, suffix, with_generation(recommender.popular_items_frame(popular_n), gid))
            plan = plan_shards(dsn, shards)
            if not plan:
                raise ValueError("no users in marts.user_features or marts.user_item_ratings: nothing to rank")
        except BaseException as exc:
            mark_failed(dsn, gid, f"{type(exc).__name__}: {exc}")
            drop_tables(dsn, TABLES, generation_suffix(gid))
            raise
    log(f"generation {gid}: model version {version}, {sum(n for *_, n in plan)} users in {len(plan)} shards")
    cutoff = generation_cutoff()
    return [Shard(gid, i, first, last, n, version, digest, k, cutoff) for i, (first, last, n) in enumerate(plan)]


def generation_cutoff() -> str:
    """Now (UTC, ISO): the point in time a generation's learned ranker reads its features at."""
    return pd.Timestamp.now(tz="UTC").isoformat()


def rank_shard(
    dsn: str,
    shard: Shard,
    *,
    tracking_uri: str,
    model_name: str,
    repeat_purchases: bool = False,
    block_size: int = 2048,
    log: Callable[[str], Any] = print,
    store_features: StoreFeatures | None = None,
) -> dict[str, Any]:
    """Rank ``shard``'s users with its generation's model and replace its rows in the generation's table;
    returns ``{"shard", "users", "rows", "seconds"}``.  Raises when the marts no longer hold the
    number of users the run planned (they changed since it began).  A learned ranker reads its feature
    service through ``store_features`` at the generation's ``features_cutoff``."""
    started = time.perf_counter()
    with working_on_generation(dsn, shard.generation_id) as conn:
        inputs = read_ranking_inputs(dsn, (shard.first_user, shard.last_user))
        if len(inputs.users) != shard.users:
            raise RuntimeError(
                f"shard {shard.index} of generation {shard.generation_id}: the marts hold {len(inputs.users)}"
                f" users in its range, the run planned {shard.users} (the marts changed since it began)"
            )
        recommender = shard_recommender(
            dsn,
            shard.model_version,
            tracking_uri=tracking_uri,
            model_name=model_name,
            repeat_purchases=repeat_purchases,
        )
        cutoff = pd.Timestamp(shard.features_cutoff or generation_cutoff())
        attach_ranker_features(recommender, inputs.users["user_id"].astype(str).to_numpy(), store_features, cutoff)
        recs = recommender.rank(inputs.users, inputs.history, k=shard.k, block_size=block_size)
        frame = with_generation(recs.assign(model_version=shard.model_version)[OUTPUT_COLUMNS], shard.generation_id)
        rows = replace_rows(conn, USER_RECOMMENDATIONS, shard.suffix, shard.user_filter(), frame)
    seconds = round(time.perf_counter() - started, 3)
    log(f"shard {shard.index} of generation {shard.generation_id}: {rows} rows for {shard.users} users in {seconds}s")
    return {"shard": shard.index, "users": shard.users, "rows": rows, "seconds": seconds}


_DELIVERED_SQL = """
select s.n, s.expected, count(r.user_id)
  from unnest(%s::int[], %s::text[], %s::text[], %s::int[]) as s(n, first_user, last_user, expected)
  left join (select distinct user_id from {table}) as r
    on r.user_id collate "C" between s.first_user and s.last_user
 group by s.n, s.expected order by s.n
"""


def undelivered_shards(conn: psycopg.Connection, shards: list[Shard]) -> list[str]:
    """One line per shard whose users in the generation's table differ from the planned count."""
    table = USER_RECOMMENDATIONS.ident(shards[0].suffix)
    columns = ([s.index for s in shards], [s.first_user for s in shards], [s.last_user for s in shards])
    rows = conn.execute(sql.SQL(_DELIVERED_SQL).format(table=table), (*columns, [s.users for s in shards])).fetchall()
    return [f"shard {n}: {got} of {expected} users" for n, expected, got in rows if got != expected]


def _summary(conn: psycopg.Connection, suffix: str) -> tuple[dict[str, int], int, int]:
    """(users per strategy, rows, users) of a generation's staged recommendations."""
    table = USER_RECOMMENDATIONS.ident(suffix)
    counts = conn.execute(
        sql.SQL("select strategy, count(distinct user_id) from {} group by strategy").format(table)
    ).fetchall()
    rows, users = conn.execute(sql.SQL("select count(*), count(distinct user_id) from {}").format(table)).fetchone()
    return {str(s): int(n) for s, n in counts}, int(rows), int(users)


def publish_sharded_generation(dsn: str, shards: list[Shard], log: Callable[[str], Any] = print) -> GenerationResult:
    """Verify that every shard delivered all its users from the marts the run began with, then index,
    analyse and swap the generation in (see the module docstring).  Raises otherwise, leaving the
    generation ``building`` for a retry (the run's teardown, :func:`discard_sharded_generation`, fails it)."""
    started = time.perf_counter()
    first = shards[0]
    gid = first.generation_id
    with working_on_generation(dsn, gid) as conn:
        now = marts_digest(dsn)
        if first.marts_digest is not None and now != first.marts_digest:
            raise RuntimeError(f"the marts changed since generation {gid} began (digest {now}): not publishing")
        if missing := undelivered_shards(conn, shards):
            raise RuntimeError(f"generation {gid} is incomplete, not publishing: {'; '.join(missing)}")
        counts, rows, users = _summary(conn, first.suffix)
        conn.commit()  # end the reads' transaction: the swap renames the table they read

        def on_swap(cur: psycopg.Cursor, staged: Mapping[str, int]) -> None:
            mark_live(
                cur,
                gid,
                strategy_summary=counts,
                row_count=rows,
                user_count=users,
                popular_item_count=staged[POPULAR_ITEMS.name],
                similar_item_count=staged[SIMILAR_ITEMS.name],
            )

        staged = publish_prestaged(
            dsn, TABLES, first.suffix, on_swap=on_swap, allow_empty=(SIMILAR_ITEMS.name,), log=log
        )
    seconds = round(time.perf_counter() - started, 3)
    result = GenerationResult(
        gid,
        first.model_version,
        counts,
        users,
        rows,
        staged[POPULAR_ITEMS.name],
        seconds,
        similar_rows=staged[SIMILAR_ITEMS.name],
    )
    log(f"generation {gid}: {rows} rows for {users} users from {len(shards)} shards {counts}, published in {seconds}s")
    return result


def discard_sharded_generation(dsn: str, generation_id: int, log: Callable[[str], Any] = print) -> bool:
    """Mark the generation failed unless it was published, and drop its leftover tables; return whether
    it was marked (the run ended without publishing it)."""
    failed = mark_failed(dsn, generation_id, "not published: a task of its run did not succeed", only_building=True)
    drop_tables(dsn, TABLES, generation_suffix(generation_id))
    if failed:
        log(f"generation {generation_id} was not published (a shard or the publish failed): marked failed")
    return failed
