"""``./recomart rollback``: serve the previous recommendation generation again, optionally the prior champion.

The generation in ``reco.*_previous`` is swapped back in by the writer's own swap (one transaction,
every lock in one statement, views and grants recreated; :func:`recomart.recommend.writer.swap_staged`
with ``incoming=PREVIOUS``), so readers see the current tables or the restored ones, never a mix.  The
tables that were live become ``*_previous``.  In the same transaction ``reco.generations`` marks the
restored generation live (``details.restored``) and the other ``rolled_back``, and ``ops.rollbacks``
gets a row.  Then the Redis copy the API serves from (:mod:`recomart.recommend.cache`) flips its
pointer to the restored generation.  With ``model=True`` ``@champion`` then moves back to the champion the current one
replaced (``ops.model_promotions.previous_champion``), with its own ``ops.rollbacks`` row.

A second rollback without a newer publish is refused: ``*_previous`` then holds the generation that
was rolled back, and swapping it back in would undo the rollback.  A newer publish makes the restored
generation ``*_previous`` again, so a rollback after it is allowed.  The same holds for ``--model``:
refused while the champion is the one the last model rollback restored and no promotion came since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from recomart.model.promotion_log import previous_champion_of
from recomart.model.registry import current_champion_version, set_champion
from recomart.recommend.tables import POPULAR_ITEMS, SIMILAR_ITEMS, USER_RECOMMENDATIONS, mark_restored
from recomart.recommend.writer import PREVIOUS, ensure_reader_role, publish_lock, swap_staged
from recomart.warehouse.migrate import migrate

SWAPPED = (USER_RECOMMENDATIONS, SIMILAR_ITEMS, POPULAR_ITEMS)


class RollbackRefused(RuntimeError):
    """The rollback cannot be done (nothing to roll back to, or it would undo the last rollback)."""


@dataclass(frozen=True)
class ModelStep:
    """``@champion`` of ``model_name`` moves from ``from_version`` back to ``to_version``."""

    model_name: str
    from_version: str
    to_version: str


@dataclass(frozen=True)
class RollbackResult:
    """What a rollback did; ``model`` is None unless the champion was moved too; ``cache``: the Redis copy
    the API reads, pointed at the restored generation (empty when not asked to)."""

    rollback_id: int
    from_generation: int
    to_generation: int
    model: ModelStep | None = None
    cache: dict[str, Any] = field(default_factory=dict)


def _generation_of(conn: psycopg.Connection, schema: str, table: str) -> int | None:
    """The generation id held by ``schema.table`` (None when the table is missing or empty)."""
    if conn.execute("select to_regclass(%s) is not null", (f"{schema}.{table}",)).fetchone() != (True,):
        return None
    query = sql.SQL("select generation_id from {} limit 1").format(sql.Identifier(schema, table))
    row = conn.execute(query).fetchone()
    return None if row is None else int(row[0])


def plan_generation_rollback(conn: psycopg.Connection) -> tuple[int, int]:
    """(live generation, generation in ``*_previous``) or :class:`RollbackRefused` saying why not."""
    live = _generation_of(conn, "reco", "user_recommendations")
    previous = _generation_of(conn, "reco", "user_recommendations" + PREVIOUS)
    if live is None:
        raise RollbackRefused("nothing to roll back: no recommendation generation has been published")
    if previous is None:
        raise RollbackRefused(f"nothing to roll back to: generation {live} is live and reco.*_previous is empty")
    for spec in SWAPPED[1:]:
        other = _generation_of(conn, spec.schema, spec.name + PREVIOUS)
        if other not in (None, previous):
            raise RollbackRefused(
                f"reco.*_previous is inconsistent: {spec.name}{PREVIOUS} holds generation {other},"
                f" user_recommendations{PREVIOUS} generation {previous}"
            )
    row = conn.execute(
        "select status, details -> 'rolled_back' ->> 'rollback_id' from reco.generations where generation_id = %s",
        (previous,),
    ).fetchone()
    if row is not None and row[0] == "rolled_back":
        raise RollbackRefused(
            f"generation {live} is live after rollback {row[1]}, which took generation {previous} out;"
            f" reco.*_previous holds {previous}, so a second rollback would serve it again."
            " Publish a new generation (the recommend DAG) before rolling back further."
        )
    return live, previous


def plan_model_rollback(dsn: str, tracking_uri: str, model_name: str) -> ModelStep:
    """The champion move a model rollback makes, or :class:`RollbackRefused` saying why there is none."""
    current = current_champion_version(tracking_uri, model_name)
    if current is None:
        raise RollbackRefused(f"{model_name} has no @champion to roll back")
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select r.rollback_id, r.from_version from ops.rollbacks r"
            " where r.kind = 'model' and r.model_name = %s and r.to_version = %s"
            " and not exists (select from ops.model_promotions p where p.model_name = r.model_name"
            "                 and p.decision = 'promoted' and p.decided_at > r.performed_at)"
            " order by r.performed_at desc limit 1",
            (model_name, current),
        ).fetchone()
    if row is not None:
        raise RollbackRefused(
            f"{model_name}@champion v{current} was restored by rollback {row[0]} (from v{row[1]}) and no model"
            " was promoted since; rolling back again would go further back. Point the alias explicitly in MLflow"
            " if that is what you want."
        )
    prior = previous_champion_of(dsn, model_name, current)
    if prior is None:
        raise RollbackRefused(
            f"{model_name}@champion v{current} replaced no earlier champion (ops.model_promotions):"
            " nothing to go back to"
        )
    return ModelStep(model_name, current, prior)


def _swap_previous_in(dsn: str, performed_by: str, reason: str | None, log: Callable[[str], Any]) -> RollbackResult:
    """Under the publish lock: check, then exchange ``reco.*`` and ``reco.*_previous`` in one transaction
    that also marks the generations and writes the audit row."""
    with psycopg.connect(dsn) as conn, publish_lock(conn):
        live, previous = plan_generation_rollback(conn)
        conn.commit()
        grant = ensure_reader_role(conn, log)
        ids: list[int] = []

        def on_swap(cur: psycopg.Cursor) -> None:
            cur.execute(
                "insert into ops.rollbacks (performed_by, kind, from_generation, to_generation, reason)"
                " values (%s, 'generation', %s, %s, %s) returning rollback_id",
                (performed_by, live, previous, reason),
            )
            row = cur.fetchone()
            assert row is not None
            ids[:] = [int(row[0])]
            mark_restored(cur, live, previous, ids[0])

        swap_staged(conn, SWAPPED, grant=grant, incoming=PREVIOUS, on_swap=on_swap, log=log)
    log(f"generation {previous} is live again (generation {live} is now reco.*{PREVIOUS}); rollback {ids[0]}")
    return RollbackResult(ids[0], live, previous)


def _move_champion(dsn: str, tracking_uri: str, step: ModelStep, performed_by: str, reason: str | None) -> None:
    set_champion(tracking_uri, step.model_name, step.to_version)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "insert into ops.rollbacks (performed_by, kind, model_name, from_version, to_version, reason)"
            " values (%s, 'model', %s, %s, %s, %s)",
            (performed_by, step.model_name, step.from_version, step.to_version, reason),
        )


def _point_cache_at_live(dsn: str, redis_url: str, db_prefix: str, log: Callable[[str], Any]) -> dict[str, Any]:
    """Flip the API's Redis pointer to Postgres's live generation (its keys are usually still there as
    ``previous``; else they are copied).  Redis is a copy: on failure the API reads Postgres meanwhile."""
    import redis

    from recomart.recommend.cache import cache_layout, publish_cache

    client = redis.Redis.from_url(redis_url, socket_timeout=30)
    try:
        return publish_cache(dsn, client, cache_layout(db_prefix), log=log).as_dict()
    except redis.RedisError as exc:
        log(f"the Redis copy still points at the rolled-back generation (the API reads Postgres meanwhile): {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()


def rollback(
    dsn: str,
    *,
    performed_by: str,
    reason: str | None = None,
    model: bool = False,
    tracking_uri: str | None = None,
    model_name: str | None = None,
    redis_url: str | None = None,
    db_prefix: str | None = None,
    log: Callable[[str], Any] = print,
) -> RollbackResult:
    """Swap the previous generation back in; with ``model``, also point ``@champion`` of ``model_name``
    back at its prior version.  Both are checked before anything changes (:class:`RollbackRefused`).
    With ``redis_url`` and ``db_prefix`` the API's Redis copy is then pointed at the restored generation."""
    migrate(dsn)
    step = None
    if model:
        if tracking_uri is None or model_name is None:
            raise ValueError("a model rollback needs tracking_uri and model_name")
        step = plan_model_rollback(dsn, tracking_uri, model_name)
    result = _swap_previous_in(dsn, performed_by, reason, log)
    if redis_url is not None and db_prefix is not None:
        result = replace(result, cache=_point_cache_at_live(dsn, redis_url, db_prefix, log))
    if step is not None:
        assert tracking_uri is not None
        _move_champion(dsn, tracking_uri, step, performed_by, reason)
        log(f"{step.model_name}@champion moved back from v{step.from_version} to v{step.to_version}")
        result = replace(result, model=step)
    return result
