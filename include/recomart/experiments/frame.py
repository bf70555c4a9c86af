"""The per-user frame an experiment's analysis reads, from the mart ``marts.fct_experiment_users``.

One row per user of the experiment (a user sees one variant for the experiment's life):
``user_id, variant, converted`` (int 0/1: bought an item they were shown within the attribution
window), ``revenue`` (float; NaN when the feed has no prices), ``pre_metric`` (float: the user's
purchases, or revenue for the metric ``revenue``, in the pre-period before their first exposure:
CUPED's covariate), ``first_exposure_day`` (date) and ``exposures`` (int: the user's responses under
the experiment; the analysis sums them per variant).
"""

from __future__ import annotations

import pandas as pd
import psycopg

from recomart.experiments.definitions import Experiment

FRAME_COLUMNS = ("user_id", "variant", "converted", "revenue", "pre_metric", "first_exposure_day", "exposures")
USERS_SQL = """
select
    user_id,
    variant,
    converted::int as converted,
    revenue::float8 as revenue,
    (case when %(metric)s = 'revenue' then pre_revenue else pre_purchases end)::float8 as pre_metric,
    first_exposure_day,
    exposures
from marts.fct_experiment_users
where experiment = %(name)s
order by user_id
"""


class MartMissing(RuntimeError):
    """``marts.fct_experiment_users`` is not built yet."""


def users_frame(conn: psycopg.Connection, experiment: Experiment) -> pd.DataFrame:
    """The frame of ``experiment`` (columns :data:`FRAME_COLUMNS`; empty before any exposure).

    Raises :class:`MartMissing` when the mart was never built (run the transform DAG or ``dbt build``).
    """
    if conn.execute("select to_regclass('marts.fct_experiment_users')").fetchone()[0] is None:
        raise MartMissing("marts.fct_experiment_users does not exist yet: run the transform DAG (dbt build)")
    rows = conn.execute(USERS_SQL, {"metric": experiment.primary_metric, "name": experiment.name}).fetchall()
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    return frame.astype(
        {
            "user_id": str,
            "variant": str,
            "converted": "int64",
            "revenue": "float64",
            "pre_metric": "float64",
            "exposures": "int64",
        }  # fmt: skip
    )
