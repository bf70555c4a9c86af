"""The main job's closing report: rows per layer, the hybrid vs its components and popularity, samples."""

from __future__ import annotations

import json

import psycopg
from psycopg import sql

from recomart.config import Settings

LAYERS = ("raw", "quarantine", "staging", "intermediate", "marts", "reco", "ops")


def layer_counts(dsn: str) -> dict[str, dict[str, int]]:
    """Row counts of every table and view in the pipeline's schemas."""
    counts: dict[str, dict[str, int]] = {}
    with psycopg.connect(dsn) as conn:
        relations = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema = any(%s) and table_name not like '%%\\_\\_staging' "
            "order by array_position(%s, table_schema::text), table_name",
            (list(LAYERS), list(LAYERS)),
        ).fetchall()
        for schema, table in relations:
            query = sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            counts.setdefault(schema, {})[table] = conn.execute(query).fetchone()[0]
    return counts


def latest_model_decision(dsn: str) -> dict | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select model_version, decision, reason, metrics from ops.model_promotions order by decided_at desc limit 1"
        ).fetchone()
    if row is None:
        return None
    metrics = row[3] if isinstance(row[3], dict) else json.loads(row[3])
    return {"version": row[0], "decision": row[1], "reason": row[2], "metrics": metrics}


#: report columns of the metrics stored in ops.model_promotions: the blend, each component, the baselines
METRIC_COLUMNS = {
    "model": "hybrid",
    "svd": "svd",
    "item_item": "item_item",
    "content": "content",
    "buy_again": "buy_again",
    "popularity": "popularity",
    "champion": "champion",
}


def champion_blend(dsn: str) -> tuple[str, dict] | None:
    """(version, blend record) of the latest promoted model, or None (no promotion, or logged without weights)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select model_version, to_jsonb(p) -> 'blend' from ops.model_promotions p "
            "where decision = 'promoted' order by decided_at desc limit 1"
        ).fetchone()
    if row is None or row[1] is None:
        return None
    return row[0], row[1] if isinstance(row[1], dict) else json.loads(row[1])


def format_weights(blend: dict) -> str:
    """``svd 0.60, item_item 0.40 (fitted: validation nDCG@10 0.4329)`` or ``... (default: <reason>)``."""
    names = {"cf": "svd"}
    parts = ", ".join(f"{names.get(c, c)} {w:.2f}" for c, w in blend.get("weights", {}).items() if w)
    if blend.get("fitted"):
        return f"{parts} (fitted: validation nDCG@10 {blend.get('validation_ndcg') or float('nan'):.4f})"
    return f"{parts} (default: {blend.get('reason', 'not fitted')})"


def format_options(blend: dict) -> str:
    """``top_n 10, prior_days 30 (best of 4 candidates on validation)``; ``defaults`` when none were chosen
    (a ``None`` value is the component's default: all-time prior, the history's half-life)."""
    options = blend.get("options") or {}
    if not options:
        return "defaults"
    shown = ", ".join(f"{name} {'default' if value is None else value}" for name, value in options.items())
    n = len(blend.get("candidates") or [])
    return f"{shown} (best of {n} candidates on validation)" if n else shown


def sample_recommendations(dsn: str, users: int = 3, k: int = 10) -> dict[str, list[tuple]]:
    """Top-k of the first ``users`` users (by id) that have personalised recommendations."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "with sample as (select distinct user_id from reco.user_recommendations "
            "where strategy <> 'popular_cold_start' order by user_id limit %s) "
            "select r.user_id, r.rank, r.item_id, coalesce(r.title, ''), r.score, r.strategy "
            "from reco.user_recommendations_enriched r join sample using (user_id) "
            "where r.rank <= %s order by r.user_id, r.rank",
            (users, k),
        ).fetchall()
    out: dict[str, list[tuple]] = {}
    for user_id, rank, item_id, title, score, strategy in rows:
        out.setdefault(user_id, []).append((rank, item_id, title, score, strategy))
    return out


def own_decision(dsn: str, train_run_id: str | None) -> tuple[dict | None, str]:
    """(the decision to show, a heading line): the version the train DAG run ``train_run_id`` registered,
    or, when that run registered none (inputs unchanged) or no run is named, the latest decision."""
    from recomart.model.promotion_log import decision_of_run

    if train_run_id is None:
        return latest_model_decision(dsn), "latest decision"
    own = decision_of_run(dsn, train_run_id)
    if own is not None:
        return own, f"registered by this run's train ({train_run_id})"
    latest = latest_model_decision(dsn)
    since = f" since version {latest['version']}" if latest else ""
    return latest, f"this run's train ({train_run_id}) registered no version: inputs unchanged{since}"


def print_metrics(decision: dict) -> None:
    """The metric table of ``decision``: the hybrid, each component and popularity (K = 10)."""
    metrics = decision["metrics"]
    shown = [
        name
        for name in sorted(metrics.get("model", {}))
        if name.endswith("_at_10") or name.endswith("coverage") or name in ("rmse", "mae")
    ]
    columns = [c for c in METRIC_COLUMNS if metrics.get(c)]
    print("  " + f"{'metric':<24}" + "".join(f"{METRIC_COLUMNS[c]:>12}" for c in columns))
    for name in shown:
        values = [metrics[c].get(name) for c in columns]
        baseline = metrics.get("popularity", {}).get(name)
        if name in ("rmse", "mae") and (baseline is None or baseline != baseline):
            continue  # implicit mode: rating errors against sampled negatives say nothing
        print(
            "  "
            + f"{name:<24}"
            + "".join(f"{v:>12.4f}" if isinstance(v, int | float) and v == v else f"{'-':>12}" for v in values)
        )


def print_model(dsn: str, train_run_id: str | None) -> None:
    """The model section: this run's version (or why there is none), its metrics and the champion's blend."""
    decision, heading = own_decision(dsn, train_run_id)
    print("\nHybrid, each component alone and popularity on the held-out test window (K = 10)")
    print(f"  {heading}")
    if decision is None:
        print("  no model trained yet")
        return
    print_metrics(decision)
    print(f"  version {decision['version']}: {decision['decision']} ({decision['reason']})")
    champion = champion_blend(dsn)
    if champion is not None:
        print(f"  champion v{champion[0]} blend weights: {format_weights(champion[1])}")
        print(f"  champion v{champion[0]} blend options: {format_options(champion[1])}")


def print_timings(timings: dict) -> None:
    """Seconds per demo step (and per task of each DAG run)."""
    print(f"\nTimings (total {timings['total_s']:.1f}s)")
    tasks = timings.get("tasks", {})
    for step in timings["steps"]:
        print(f"  {step['name']:<48} {step['seconds']:>8.1f}s")
        for task, seconds in tasks.items():
            if task.startswith(step["name"] + "."):
                print(f"    {task.split('.', 1)[1]:<46} {seconds:>8.1f}s")


def print_report(s: Settings, *, train_run_id: str | None = None, timings: dict | None = None) -> None:
    """The closing report; ``train_run_id``: the train DAG run whose version to describe (default: the
    latest decision); ``timings``: :meth:`recomart.demo.DemoTimings.as_dict`."""
    dsn = s.warehouse_url
    print("\n" + "=" * 78 + "\nRecoMart report\n" + "=" * 78)
    print("\nRows per layer")
    for schema, tables in layer_counts(dsn).items():
        for table, count in tables.items():
            print(f"  {schema + '.' + table:<48} {count:>12,}")
    print_model(dsn, train_run_id)

    print("\nSample recommendations")
    for user_id, recs in sample_recommendations(dsn).items():
        print(f"  user {user_id}")
        for rank, item_id, title, score, strategy in recs:
            print(f"    {rank:>2}. {item_id:<10} {title[:48]:<48} {score:8.4f}  {strategy}")
    if timings:
        print_timings(timings)
    print_next_steps()


def print_next_steps() -> None:
    print("\nNext steps")
    print('  eval "$(./recomart env)"                      # psql, dbt, feast, airflow now use these services')
    print(
        '  psql -c "select * from reco.user_recommendations_enriched where user_id = '
        '(select min(user_id) from reco.user_recommendations) order by rank"'
    )
    print("  ./recomart features user <user_id>             # online features from Redis via Feast")
    print("  (cd dbt_project && dbt build)                 # rebuild and test the marts")
    print("  ./recomart up                                 # Airflow UI, MLflow UI, catalog API")
