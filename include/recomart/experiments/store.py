"""``ops.experiments``: create, list and read the running experiment (migration ``0012_exposures_experiments``).

The API applies at most one experiment at a time (a response carries one variant), so
:func:`create_experiment` refuses one whose window overlaps another's.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from recomart.experiments.definitions import Experiment, variants_from_json

COLUMNS = "name, salt, variants, control, primary_metric, starts_at, ends_at"
OVERLAPPING = """
select name from ops.experiments
where tstzrange(starts_at, ends_at) && tstzrange(%(starts_at)s::timestamptz, %(ends_at)s::timestamptz)
order by starts_at
"""


class ExperimentError(ValueError):
    """An experiment that cannot be created (the message says why)."""


def _experiment(row: tuple) -> Experiment:
    name, salt, variants, control, metric, starts_at, ends_at = row
    return Experiment(name, salt, variants_from_json(variants), control, metric, starts_at, ends_at)


def create_experiment(conn: psycopg.Connection, experiment: Experiment) -> None:
    """Insert ``experiment`` (committed); raises :class:`ExperimentError` when the name is taken or its
    window overlaps another experiment's."""
    params = {"starts_at": experiment.starts_at, "ends_at": experiment.ends_at}
    with conn.transaction():
        conn.execute("lock table ops.experiments in share row exclusive mode")
        if conn.execute("select 1 from ops.experiments where name = %s", (experiment.name,)).fetchone():
            raise ExperimentError(f"an experiment named {experiment.name!r} exists already (ops.experiments)")
        clash = [row[0] for row in conn.execute(OVERLAPPING, params)]
        if clash:
            raise ExperimentError(
                f"its window overlaps experiment(s) {', '.join(clash)}: the API applies one experiment at a time"
            )
        conn.execute(
            f"insert into ops.experiments ({COLUMNS}) values (%s, %s, %s::jsonb, %s, %s, %s, %s)",
            (
                experiment.name, experiment.salt, experiment.variants_json(), experiment.control,
                experiment.primary_metric, experiment.starts_at, experiment.ends_at,
            ),
        )  # fmt: skip


def stop_experiment(conn: psycopg.Connection, name: str) -> datetime | None:
    """End ``name`` now (committed): its new ``ends_at``, or None when it is unknown or ended already.
    A scheduled experiment that has not started ends at its start (it never runs)."""
    with conn.transaction():
        row = conn.execute(
            "update ops.experiments set ends_at = greatest(now(), starts_at + interval '1 microsecond')"
            " where name = %s and (ends_at is null or ends_at > now()) returning ends_at",
            (name,),
        ).fetchone()
    return None if row is None else row[0]


def list_experiments(conn: psycopg.Connection) -> list[Experiment]:
    """Every experiment, newest start first (none before migration 0012)."""
    if conn.execute("select to_regclass('ops.experiments')").fetchone()[0] is None:
        return []
    return [_experiment(row) for row in conn.execute(f"select {COLUMNS} from ops.experiments order by starts_at desc")]


def get_experiment(conn: psycopg.Connection, name: str) -> Experiment | None:
    """The experiment named ``name`` (None when there is none, also before migration 0012)."""
    if conn.execute("select to_regclass('ops.experiments')").fetchone()[0] is None:
        return None
    row = conn.execute(f"select {COLUMNS} from ops.experiments where name = %s", (name,)).fetchone()
    return None if row is None else _experiment(row)


def running_experiment(conn: psycopg.Connection, now: datetime) -> Experiment | None:
    """The experiment running at ``now`` (None when none is, or before migration 0012)."""
    if conn.execute("select to_regclass('ops.experiments')").fetchone()[0] is None:
        return None
    row = conn.execute(
        f"select {COLUMNS} from ops.experiments where starts_at <= %(now)s and (ends_at is null or %(now)s < ends_at)"
        " order by starts_at limit 1",
        {"now": now},
    ).fetchone()
    return None if row is None else _experiment(row)
