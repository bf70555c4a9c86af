"""``recomart`` command line: one entry point for users (``./recomart <command>``).

``./recomart --help`` lists the commands grouped by what a user wants to do (:data:`COMMAND_GROUPS`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

from recomart import services
from recomart.config import SettingError, Settings, load_settings, process_environment, settings
from recomart.credentials import mask_url
from recomart.environment import export_lines, path_line, reader_env, service_env
from recomart.features.names import FEATURE_SERVICE
from recomart.warehouse.migrate import MigrationError


def _cmd_env(args: argparse.Namespace) -> int:
    s = settings()
    print(export_lines(reader_env(s) if args.reader else service_env(s)))
    if not args.reader:
        print(path_line())  # dbt, feast, mlflow and airflow from .venv
    return 0


def _cmd_services(args: argparse.Namespace) -> int:
    s = settings()
    if args.action == "up":
        services.ensure_services(s, log=print)
        print(f"Postgres: {mask_url(s.pg_server_url)} (databases: {', '.join(s.all_databases)})")
        print(f"Redis:    {mask_url(s.redis_url)}")
        print(f"Passwords: {s.state_dir / 'secrets'}")
    elif not (s.embedded_pg or s.embedded_redis):
        print("external services are not managed by RecoMart")
    else:
        stopped = services.stop_embedded(s)
        print(
            f"embedded {' and '.join(stopped)} stopped" if stopped else "embedded Postgres and Redis were not running"
        )
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from recomart.datasets.generator import generate
    from recomart.progress import counting

    s = settings()
    days = args.days or s.generator_days
    with counting("generate: days", days, "events") as advance:
        summary = generate(
            s.landing_dir / "generated",
            users=args.users or s.generator_users,
            items=args.items or s.generator_items,
            days=days,
            seed=s.seed if args.seed is None else args.seed,
            end_date=date.fromisoformat(args.end_date) if args.end_date else None,
            on_day=lambda _day, events: advance(events),
        )
    print(summary)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from recomart.demo import run_demo

    s = load_settings({**process_environment(), "RECOMART_DATASET": args.dataset}) if args.dataset else settings()
    code = run_demo(s)
    if code == 0 and args.live:
        from recomart.demo import run_live

        code = run_live(s)
    return code


def _cmd_migrate(_: argparse.Namespace) -> int:
    s = settings()
    result = services.ensure_services(s, log=print)
    if result.applied:
        print(f"warehouse {s.warehouse_db}: applied {len(result.applied)} migrations, now at version {result.version}")
    else:
        print(f"warehouse {s.warehouse_db}: already at version {result.version}")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from recomart.processes import StartFailed
    from recomart.stack import PortsTaken, start_stack

    s = settings()
    if args.workers is not None and (s.executor != "celery" or args.workers < 1):
        print(
            f"recomart up: --workers {args.workers}: expected a count from 1 with RECOMART_EXECUTOR=celery"
            f" (now {s.executor!r}: LocalExecutor runs tasks as the scheduler's subprocesses)",
            file=sys.stderr,
        )
        return 2
    try:
        start_stack(s, workers=args.workers)
    except StartFailed as failed:
        print(f"recomart up failed: {failed}", file=sys.stderr)
        if not isinstance(failed, PortsTaken):
            print("what did start keeps running: ./recomart status shows it, ./recomart down stops it", file=sys.stderr)
        return 1
    return 0


def _cmd_down(_: argparse.Namespace) -> int:
    from recomart.stack import stop_stack

    stop_stack(settings())
    return 0


def _cmd_status(_: argparse.Namespace) -> int:
    from recomart.status import collect
    from recomart.terminal import print_status

    print_status(collect(settings()))
    return 0


def _cmd_recommend_user(args: argparse.Namespace) -> int:
    from recomart.serving.lookup import user_recommendations
    from recomart.terminal import print_recommendations

    s = settings()
    services.check_reachable(s)
    body = user_recommendations(s.warehouse_url, args.user_id, args.k)
    if body is None:
        print(
            f"recomart: no live generation in {s.warehouse_db} (reco.generations); run ./recomart demo", file=sys.stderr
        )
        return 1
    if args.json:
        print(json.dumps(body, indent=2, default=str))
    else:
        print_recommendations(body)
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    from recomart.backfill import BackfillFailed, run_backfill

    s = settings()
    hold = tuple(args.hold) if args.hold is not None else ("transform",)
    try:
        result = run_backfill(
            s,
            args.dag_id,
            date.fromisoformat(args.from_date),
            date.fromisoformat(args.to_date),
            max_active_runs=args.max_active_runs,
            reprocess=args.reprocess,
            hold=hold,
            run_held=not args.keep_held_paused,
        )
    except BackfillFailed as failed:
        print(f"recomart backfill: {failed}", file=sys.stderr)
        return 1
    states = ", ".join(f"{count} {state}" for state, count in sorted(result.states.items()))
    print(f"backfill {result.backfill_id} of {args.dag_id} completed: {result.runs} runs ({states})")
    if result.skipped:
        print(f"{result.skipped} dates already had a run and were left alone (--reprocess completed re-runs them)")
    if result.triggered:
        print(f"triggered once: {', '.join(result.triggered)}")
    elif hold:
        print(f"still paused: {', '.join(hold)} (unpause and trigger once when ready; docs/backfill.md step 6)")
    return 0 if not result.states.get("failed") else 1


def _add_backfill_parser(sub: argparse._SubParsersAction) -> None:
    back = _command(sub, "backfill", "run a DAG for past days through the scheduler (docs/backfill.md), with progress")
    back.add_argument("dag_id", help="the DAG to backfill, e.g. ingest_events")
    back.add_argument("--from", dest="from_date", required=True, help="first logical date, YYYY-MM-DD")
    back.add_argument("--to", dest="to_date", required=True, help="last logical date, YYYY-MM-DD (inclusive)")
    back.add_argument("--max-active-runs", type=int, default=4, help="runs of this backfill at once (default 4)")
    back.add_argument(
        "--reprocess",
        choices=["none", "failed", "completed"],
        default="none",
        help="dates that already have a run: skip them (none), or clear failed or all finished runs",
    )
    back.add_argument(
        "--hold",
        action="append",
        help="a DAG paused during the backfill, then triggered once (repeatable; default: transform)",
    )
    back.add_argument("--keep-held-paused", action="store_true", help="leave the held DAGs paused at the end")
    back.set_defaults(func=_cmd_backfill)


def _add_recommend_parser(sub: argparse._SubParsersAction) -> None:
    reco = _command(sub, "recommend", "show a user's recommendations from the live generation (reco.*)")
    kinds = reco.add_subparsers(dest="recommend_command", required=True, metavar="<what>")
    user = kinds.add_parser(
        "user", help="a user's list with reasons; a user not in it gets the labelled cold-start list"
    )
    user.add_argument("user_id", help="the user id, as in reco.user_recommendations.user_id")
    user.add_argument("-k", type=int, default=10, help="number of items (default 10)")
    user.add_argument("--json", action="store_true", help="print the API's JSON body instead of a table")
    user.set_defaults(func=_cmd_recommend_user)


def _cmd_features_lookup(args: argparse.Namespace) -> int:
    from recomart.features import online_features
    from recomart.tools import tool_env

    s = settings()
    services.check_reachable(s)
    result = online_features(s.feature_repo_dir, tool_env(s), args.entity, args.entity_id)
    print(json.dumps(result, indent=2, default=str))
    return 0


def _cmd_features_restore(args: argparse.Namespace) -> int:
    from recomart.features import restore_online_store
    from recomart.tools import tool_env

    s = settings()
    services.check_reachable(s)
    print(f"restoring the online store of Feast project {s.feast_project} from the offline store", flush=True)
    try:
        result = restore_online_store(
            s.feature_repo_dir, tool_env(s), args.feature_views, progress=lambda line: print(line, flush=True)
        )
    except (RuntimeError, ValueError) as error:
        print(f"restore failed: {error}", file=sys.stderr)
        return 1
    views = ", ".join(view.feature_views[0] for view in result.views)
    print(
        f"restored {len(result.views)} feature views ({views}) in {result.seconds:.1f} s; "
        f"the online store now holds {result.online_keys:,} entity keys of project {s.feast_project}"
    )
    return 0


def _cmd_features_feast(args: argparse.Namespace) -> int:
    from recomart.features import feast_command
    from recomart.tools import tool_env

    s = settings()
    return subprocess.run(feast_command(*args.feast_args), cwd=s.feature_repo_dir, env=tool_env(s)).returncode


def _add_features_parser(sub: argparse._SubParsersAction) -> None:
    feat = _command(sub, "features", "Feast: look up online features, restore the online store, run feast")
    actions = feat.add_subparsers(dest="features_command", required=True, metavar="<what>")
    for entity, article in (("user", "a"), ("item", "an")):
        lookup = actions.add_parser(
            entity, help=f"print {article} {entity}'s online features ({FEATURE_SERVICE}) and their freshness"
        )
        lookup.add_argument("entity_id", help=f"the {entity} id, e.g. as in marts.{entity}_features")
        lookup.set_defaults(func=_cmd_features_lookup, entity=entity)
    restore = actions.add_parser(
        "restore", help="re-materialize what was materialized into Redis (after Redis lost its data)"
    )
    restore.add_argument(
        "--feature-view", dest="feature_views", action="append", help="only this view (repeatable; default: all)"
    )
    restore.set_defaults(func=_cmd_features_restore)
    feast = actions.add_parser(
        "feast", help="run the feast CLI in feature_repo/ with this deployment's settings, e.g. `feast plan`"
    )
    feast.add_argument("feast_args", nargs=argparse.REMAINDER, help="arguments of the feast CLI")
    feast.set_defaults(func=_cmd_features_feast)


def _cmd_search(args: argparse.Namespace) -> int:
    """Search the warehouse's products; ``--embed`` first refreshes ``reco.item_embeddings``."""
    import psycopg

    from recomart.search.embed import embed_products
    from recomart.search.searcher import Searcher

    s = settings()
    services.check_reachable(s)
    try:
        if args.embed:
            print(json.dumps(embed_products(s.warehouse_url)), file=sys.stderr)
        searcher = Searcher.from_warehouse(s.warehouse_url, fallback=args.fallback)
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable) as exc:
        reason = str(exc).strip().splitlines()[0]
        print(f"recomart: no products to search in {s.warehouse_db} ({reason}); run ./recomart demo", file=sys.stderr)
        return 1
    hits = searcher.search(args.query, args.k)
    if args.json:
        print(json.dumps({**searcher.describe(), "query": args.query, "hits": [h.as_dict() for h in hits]}, indent=2))
        return 0
    about = searcher.describe()
    print(f"index: {about['index']}" + (f" ({about['index_reason']})" if about["index_reason"] else ""))
    for rank, hit in enumerate(hits, 1):
        found = ", ".join(f"{name} #{r}" for name, r in hit.ranks.items())
        print(f"{rank:>3}. {hit.item_id:<12} {hit.score:.4f}  {hit.title}  [{found}]")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    import getpass

    from recomart.operations.rollback import RollbackRefused, rollback

    s = settings()
    try:
        result = rollback(
            s.warehouse_url,
            performed_by=getpass.getuser(),
            reason=args.reason,
            model=args.model,
            tracking_uri=s.mlflow_tracking_uri,
            model_name=s.model_name,
            redis_url=s.redis_url,
            db_prefix=s.db_prefix,
        )
    except RollbackRefused as refused:
        print(f"rollback refused: {refused}", file=sys.stderr)
        return 1
    print(f"rolled back: generation {result.to_generation} is live again (was {result.from_generation});")
    if result.model is not None:
        step = result.model
        print(f"{step.model_name}@champion is v{step.to_version} again (was v{step.from_version});")
    if result.cache.get("generation_id") is not None:
        print(f"the API's Redis copy serves generation {result.cache['generation_id']} again;")
    print(f"logged in ops.rollbacks (rollback {result.rollback_id}) and reco.generations")
    return 0


def _add_rollback_parser(sub: argparse._SubParsersAction) -> None:
    back = _command(sub, "rollback", "serve the previous recommendation generation (reco.*_previous) again")
    back.add_argument("--model", action="store_true", help="also point @champion back at the champion it replaced")
    back.add_argument("--reason", help="why (kept in ops.rollbacks)")
    back.set_defaults(func=_cmd_rollback)


def _cmd_forget_user(args: argparse.Namespace) -> int:
    from recomart.operations.forget import forget_user

    summary = forget_user(settings(), args.user_id, reason=args.reason)
    if summary.waited_for_generations:
        print(f"waited for the generations being built: {summary.waited_for_generations}")
    print(f"erasure {summary.erasure_id} (ops.erasures; the user is kept only as a keyed hash):")
    for place, count in sorted(summary.counts.items()):
        print(f"  {place:<45} {count:>8,}")
    versions = ", ".join(f"v{v}" for v in summary.model_versions) or "none"
    print(f"  model versions holding the user (tagged erased_user_data): {versions}")
    print("later loads leave the user's records out and count them (ops.loaded_files.records_erased)")
    return 0


def _add_forget_parser(sub: argparse._SubParsersAction) -> None:
    forget = _command(sub, "forget", "erase a person's data on request (raw, marts, features, reco, models)")
    kinds = forget.add_subparsers(dest="forget_command", required=True, metavar="<what>")
    user = kinds.add_parser("user", help="erase a user everywhere and keep their records out of later loads")
    user.add_argument("user_id", help="the user id as the warehouse writes it (marts.user_features.user_id)")
    user.add_argument("--reason", help="why, e.g. a ticket number (kept in ops.erasures; not the user's id)")
    user.set_defaults(func=_cmd_forget_user)


def _experiment_from_args(args: argparse.Namespace):
    import secrets
    from datetime import UTC, datetime

    from recomart.experiments.definitions import Experiment, parse_variants

    def when(text: str | None, default: datetime | None) -> datetime | None:
        if text is None:
            return default
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    return Experiment(
        args.name, args.salt or secrets.token_hex(8), parse_variants(args.variants), args.control, args.metric,
        when(args.starts, datetime.now(UTC)), when(args.ends, None),
    )  # fmt: skip


def _cmd_experiment_create(args: argparse.Namespace) -> int:
    import psycopg

    from recomart.experiments.store import create_experiment

    try:
        experiment = _experiment_from_args(args)
    except ValueError as error:
        print(f"recomart: {error}", file=sys.stderr)
        return 2
    s = settings()
    services.ensure_services(s)
    with psycopg.connect(s.warehouse_url) as conn:
        try:
            create_experiment(conn, experiment)
        except ValueError as error:
            print(f"recomart: experiment {experiment.name!r} not created: {error}", file=sys.stderr)
            return 1
    variants = ", ".join(f"{v.name} ({v.policy}) {v.share:.0%}" for v in experiment.variants)
    ends = experiment.ends_at.isoformat() if experiment.ends_at else "open end (experiment stop NAME)"
    print(f"created experiment {experiment.name}: {variants}; control {experiment.control}, metric "
          f"{experiment.primary_metric}, from {experiment.starts_at.isoformat()} to {ends}; "
          "the API applies it within a second of its start")  # fmt: skip
    return 0


def _cmd_experiment_stop(args: argparse.Namespace) -> int:
    import psycopg

    from recomart.experiments.store import stop_experiment

    s = settings()
    services.ensure_services(s)
    with psycopg.connect(s.warehouse_url) as conn:
        ended = stop_experiment(conn, args.name)
    if ended is None:
        print(f"recomart: no running or scheduled experiment named {args.name!r}", file=sys.stderr)
        return 1
    print(f"experiment {args.name} ends at {ended.isoformat()}: the API stops applying it within a second")
    return 0


def _cmd_experiment_list(_: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import psycopg

    from recomart.experiments.store import list_experiments

    s = settings()
    services.check_reachable(s)  # reads only: no migration
    with psycopg.connect(s.warehouse_url) as conn:
        experiments = list_experiments(conn)
    now = datetime.now(UTC)
    print(f"{'name':<24} {'state':<9} {'control':<12} {'metric':<11} {'starts':<20} {'ends':<20} variants")
    for e in experiments:
        state = "running" if e.running_at(now) else "scheduled" if now < e.starts_at else "ended"
        variants = ", ".join(f"{v.name}={v.policy}:{v.share:g}" for v in e.variants)
        ends = e.ends_at.strftime("%Y-%m-%d %H:%M") if e.ends_at else "-"
        print(f"{e.name:<24} {state:<9} {e.control:<12} {e.primary_metric:<11} "
              f"{e.starts_at.strftime('%Y-%m-%d %H:%M'):<20} {ends:<20} {variants}")  # fmt: skip
    if not experiments:
        print(
            "(no experiments: ./recomart experiment create NAME --variants hybrid:0.5,popularity:0.5 --control hybrid)"
        )
    return 0


def _cmd_experiment_report(args: argparse.Namespace) -> int:
    import psycopg

    from recomart.experiments.frame import MartMissing, users_frame
    from recomart.experiments.store import get_experiment

    s = settings()
    services.check_reachable(s)  # reads only: no migration
    with psycopg.connect(s.warehouse_url) as conn:
        experiment = get_experiment(conn, args.name)
        if experiment is None:
            print(f"recomart: no experiment named {args.name!r} (./recomart experiment list)", file=sys.stderr)
            return 1
        try:
            frame = users_frame(conn, experiment)
        except MartMissing as error:
            print(f"recomart: {error}", file=sys.stderr)
            return 1
    return _print_report(experiment, frame, args.json)


def _print_report(experiment, frame, as_json: bool) -> int:
    """Analyse ``frame`` (:func:`recomart.experiments.frame.users_frame`) and print the report or its JSON."""
    from recomart.experiments.analysis import analyse, format_report

    if frame.empty:
        print(f"recomart: experiment {experiment.name!r} has no exposed users in marts.fct_experiment_users yet "
              "(exposures are modelled by the transform DAG)", file=sys.stderr)  # fmt: skip
        return 1
    result = analyse(frame, control=experiment.control, shares=experiment.shares)
    print(json.dumps(result.as_dict(), indent=2, default=str) if as_json else format_report(result))
    return 0


def _add_experiment_parser(sub: argparse._SubParsersAction) -> None:
    from recomart.experiments.definitions import METRICS, POLICIES

    exp = _command(sub, "experiment", "A/B tests of ranking policies: create, list, stop, report (ops.experiments)")
    actions = exp.add_subparsers(dest="experiment_command", required=True, metavar="<what>")
    create = actions.add_parser("create", help="define an experiment; the API applies it from its start")
    create.add_argument("name", help="letters, digits, '_', '.', '-' (at most 100)")
    create.add_argument(
        "--variants", required=True,
        help=f"NAME[=POLICY]:SHARE,... e.g. hybrid:0.5,popularity:0.5 (policies: {', '.join(POLICIES)})",
    )  # fmt: skip
    create.add_argument("--control", required=True, help="the control variant's name")
    create.add_argument("--metric", choices=METRICS, default="conversion", help="primary metric (default conversion)")
    create.add_argument("--salt", help="assignment salt (default: random); a new salt reshuffles the users")
    create.add_argument("--starts", help="ISO 8601 start (UTC when no zone; default: now)")
    create.add_argument("--ends", help="ISO 8601 end (default: open until `experiment stop NAME`)")
    create.set_defaults(func=_cmd_experiment_create)
    actions.add_parser("list", help="every experiment and its state").set_defaults(func=_cmd_experiment_list)
    stop = actions.add_parser("stop", help="end a running (or scheduled) experiment now; its data stay")
    stop.add_argument("name", help="the experiment's name (experiment list)")
    stop.set_defaults(func=_cmd_experiment_stop)
    report = actions.add_parser("report", help="per variant: users, conversion, lift with interval, SRM, CUPED")
    report.add_argument("name", help="the experiment's name (experiment list)")
    report.add_argument("--json", action="store_true", help="print the result as JSON")
    report.set_defaults(func=_cmd_experiment_report)


def _cmd_alerts(args: argparse.Namespace) -> int:
    import psycopg

    s = settings()
    services.check_reachable(s)
    try:
        return _ack_alert(s.warehouse_url, args.alert_id) if args.alerts_command == "ack" else _list_alerts(s, args)
    except psycopg.errors.UndefinedTable:
        print(f"recomart: {s.warehouse_db} has no ops.alerts yet; run ./recomart migrate", file=sys.stderr)
        return 1


def _ack_alert(dsn: str, alert_id: int) -> int:
    import getpass

    from recomart.monitoring.store import AlertNotFound, acknowledge, summary_line

    try:
        alert = acknowledge(dsn, alert_id, by=getpass.getuser())
    except AlertNotFound as missing:
        print(f"recomart: {missing}", file=sys.stderr)
        return 1
    print(f"acknowledged: {summary_line(alert)}")
    return 0


def _list_alerts(s, args: argparse.Namespace) -> int:
    from recomart.monitoring.store import list_alerts, summary_line

    states = ("open", "acknowledged", "resolved") if getattr(args, "all", False) else ("open", "acknowledged")
    alerts = list_alerts(s.warehouse_url, states)
    if getattr(args, "json", False):
        print(json.dumps(alerts, indent=2, default=str))
    else:
        print("\n".join(summary_line(a) for a in alerts) if alerts else f"no {' or '.join(states)} alerts")
    return 0


def _add_alerts_parser(sub: argparse._SubParsersAction) -> None:
    alerts = _command(sub, "alerts", "monitoring alerts (ops.alerts): list them, acknowledge one")
    alerts.set_defaults(func=_cmd_alerts, alerts_command="list")
    actions = alerts.add_subparsers(dest="alerts_command", metavar="<what>")
    listing = actions.add_parser("list", help="open and acknowledged alerts, newest first (the default)")
    listing.add_argument("--all", action="store_true", help="resolved alerts too")
    listing.add_argument("--json", action="store_true", help="print the rows as JSON")
    listing.set_defaults(func=_cmd_alerts)
    ack = actions.add_parser("ack", help="acknowledge an open alert: the monitor DAG stops failing on it")
    ack.add_argument("alert_id", type=int, help="the alert's id (#ID in the list)")
    ack.set_defaults(func=_cmd_alerts)


def _cmd_report(args: argparse.Namespace) -> int:
    s = settings()
    services.check_reachable(s)
    if args.html is None:
        from recomart.report import print_report

        print_report(s)
        return 0
    from recomart.data_report import MissingScriptsError, write_report

    try:
        data = write_report(s, args.html)
    except MissingScriptsError as missing:
        print(f"recomart: {missing}", file=sys.stderr)
        return 1
    drawn = sum(1 for rows in data.rows.values() if rows)
    print(f"data report ({s.dataset}): {args.html.resolve()} ({drawn} of {len(data.rows)} plots have data)")
    return 0


def _add_report_parser(sub: argparse._SubParsersAction) -> None:
    report = _command(
        sub, "report", "the main job's closing report (rows per layer, model, samples), or the data report as HTML"
    )
    report.add_argument(
        "--html",
        metavar="PATH",
        type=Path,
        help="instead write the data report (plots of volumes, long tail, baskets, quarantine, dbt and GX) to PATH",
    )
    report.set_defaults(func=_cmd_report)


def _cmd_test(args: argparse.Namespace) -> int:
    """The static checks (recomart.static_checks), then pytest; 'no tests collected' (exit 5) is a
    failure, never a pass."""
    from recomart.static_checks import run_static_checks

    s = settings()
    if run_static_checks(s, slow=not args.no_static) != 0:
        print("static checks failed (see the FAILED lines above): pytest was not run", file=sys.stderr)
        return 1
    code = subprocess.run([sys.executable, "-m", "pytest", *args.pytest_args], cwd=s.project_root).returncode
    if code == 5:
        print("pytest collected no tests: treating that as a failure", file=sys.stderr)
        return 1
    return code


COMMAND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Try it: generate data and run the whole pipeline once", ("demo", "generate")),
    ("Run the platform in the background and watch it", ("up", "status", "down", "services", "serve", "stream")),
    ("Look at the results", ("recommend", "search", "features", "simulate", "experiment", "report")),
    ("Correct and operate", ("alerts", "migrate", "backfill", "rollback", "forget")),
    ("Work on RecoMart", ("env", "test")),
)
DESCRIPTION = "RecoMart: an open-source recommendation platform on Airflow, dbt, Feast, MLflow, Postgres and Redis."
EPILOG = (
    "The ./recomart wrapper also has `./recomart setup [--with search]` (only create .venv). "
    "Help of one command: ./recomart <command> --help. Settings come from RECOMART_* variables (see README.md)."
)


class GroupedHelpParser(argparse.ArgumentParser):
    """The top-level parser: its help lists the commands under the headings of :data:`COMMAND_GROUPS`."""

    def format_help(self) -> str:
        commands = next(a for a in self._actions if isinstance(a, argparse._SubParsersAction))
        helps = {choice.dest: choice.help for choice in commands._choices_actions}
        width = max(map(len, helps)) + 2
        parts = [self.format_usage(), f"{self.description}\n"]
        for title, names in COMMAND_GROUPS:
            parts.append(f"{title}:")
            parts += [f"  {name:<{width}}{helps[name]}" for name in names]
            parts.append("")
        parts += ["options:", "  -h, --help  show this help message and exit", "", f"{self.epilog}\n"]
        return "\n".join(parts)


def _command(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A sub-command whose own --help starts with the same one line as the command list."""
    return sub.add_parser(name, help=help_text, description=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = GroupedHelpParser(prog="recomart", description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="<command>", parser_class=argparse.ArgumentParser
    )

    env = _command(
        sub,
        "env",
        'print export lines for psql, dbt, feast, mlflow and airflow, .venv/bin on PATH (eval "$(./recomart env)")',
    )
    env.add_argument(
        "--reader", action="store_true", help="libpq variables for the read-only analyst role recomart_reader"
    )
    env.set_defaults(func=_cmd_env)

    svc = _command(sub, "services", "start or stop the embedded Postgres and Redis (other commands start them)")
    svc.add_argument("action", choices=["up", "down"], help="up: start them (idempotent); down: stop them")
    svc.set_defaults(func=_cmd_services)

    gen = _command(sub, "generate", "write the generated shop data set into <landing>/generated (progress per day)")
    gen.add_argument("--users", type=int, help="number of users (default: RECOMART_USERS, 2000)")
    gen.add_argument("--items", type=int, help="number of products (default: RECOMART_ITEMS, 500)")
    gen.add_argument("--days", type=int, help="days of events, one file each (default: RECOMART_DAYS, 60)")
    gen.add_argument(
        "--seed", type=int, help="random seed; the same seed writes the same files (default: RECOMART_SEED)"
    )
    gen.add_argument("--end-date", help="last day of events, YYYY-MM-DD (default: yesterday, UTC)")
    gen.set_defaults(func=_cmd_generate)

    demo = _command(sub, "demo", "the main job: generate, ingest, dbt, Feast, train, recommend, report")
    demo.add_argument(
        "--dataset",
        choices=["generated", "uci"],
        default=None,
        help="data set (default: RECOMART_DATASET or 'generated')",
    )
    demo.add_argument(
        "--live",
        action="store_true",
        help="then start the API and the stream worker (if not running), simulate 10 s of traffic and show"
        " one user's recommendations before and after",
    )
    demo.set_defaults(func=_cmd_demo)

    migrate = sub.add_parser(
        "migrate",
        help="bring the warehouse's schemas (raw, quarantine, ops, reco) to the newest migration",
        description=(
            "Apply the numbered SQL files of include/recomart/warehouse/migrations that the warehouse has not"
            " applied yet, in order, each in one transaction, recorded in ops.schema_migrations. Safe to"
            " run again and concurrently; demo, up, serve and every DAG task do the same on start."
        ),
    )
    migrate.set_defaults(func=_cmd_migrate)

    up = _command(
        sub,
        "up",
        "start Airflow, the catalog API, the MLflow UI, the RecoMart API and the stream worker; wait until healthy",
    )
    up.epilog = (
        "Executor: LocalExecutor by default (tasks run as the scheduler's subprocesses). With"
        " RECOMART_EXECUTOR=celery, up also starts N Celery workers (`airflow celery worker`) and Flower"
        " (`airflow celery flower`, on 127.0.0.1:RECOMART_FLOWER_PORT with basic auth, password in"
        " .state/secrets/flower_password); the broker is the project's Redis on database"
        " RECOMART_CELERY_REDIS_DB, or RECOMART_CELERY_BROKER_URL (e.g. RabbitMQ: amqp://user:pass@host:5672/vhost);"
        " results go to the Airflow metadata database. status shows the workers, down stops them."
    )
    up.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="Celery workers to run, each `airflow celery worker` with RECOMART_CELERY_CONCURRENCY task slots"
        " (default: RECOMART_CELERY_WORKERS, 2; needs RECOMART_EXECUTOR=celery)",
    )
    up.set_defaults(func=_cmd_up)
    _command(
        sub, "status", "processes and ports, Postgres and Redis, last run per DAG, live generation, champion"
    ).set_defaults(func=_cmd_status)
    _command(sub, "down", "stop what `up` started and say what was stopped or already dead").set_defaults(
        func=_cmd_down
    )

    _add_recommend_parser(sub)
    _add_features_parser(sub)
    _add_backfill_parser(sub)
    _add_rollback_parser(sub)
    _add_forget_parser(sub)
    _add_experiment_parser(sub)
    _add_alerts_parser(sub)
    _add_report_parser(sub)

    search = _command(sub, "search", "search the products (BM25 + embeddings, or TF-IDF + LSA without the extra)")
    search.add_argument("query", help="words to look for in the product titles and descriptions")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--json", action="store_true", help="print the hits as JSON")
    search.add_argument("--embed", action="store_true", help="refresh reco.item_embeddings first (new/changed only)")
    search.add_argument("--fallback", action="store_true", help="use the TF-IDF + LSA index even with the extra")
    search.set_defaults(func=_cmd_search)

    api = _command(sub, "serve", "run the recommendations API (uvicorn) in the foreground")
    api.add_argument("--host", help="address to bind (default: RECOMART_BIND_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (default: RECOMART_API_PORT, 8000)")
    api.add_argument("--workers", type=int, help="worker processes (default: RECOMART_API_WORKERS, 2)")
    api.set_defaults(func=_cmd_serve)

    _command(
        sub, "stream", "run the stream worker in the foreground (Redis Stream -> raw.stream_events + Feast push)"
    ).set_defaults(func=_cmd_stream)

    sim = _command(sub, "simulate", "send generated-shop behaviour through POST /v1/events at a fixed rate")
    sim.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    sim.add_argument("--minutes", type=float, default=2.0, help="how long (default 2)")
    sim.add_argument("--seconds", type=float, help="how long, in seconds (instead of --minutes)")
    sim.add_argument("--url", help="API base URL (default: this deployment's, RECOMART_API_PORT)")
    sim.add_argument(
        "--watch",
        metavar="USER",
        help="print USER's recommendations before and after the run ('auto': the user the run sends most views"
        " and carts for); needs the stream worker running",
    )
    sim.add_argument(
        "--shoppers", action="store_true",
        help="instead: the shop's users fetch their recommendations and buy shown items by planted taste",
    )  # fmt: skip
    sim.add_argument("--visits", type=float, default=3.0, help="--shoppers: mean visits per user (default 3)")
    sim.add_argument("--buy-rate", type=float, default=0.005, help="--shoppers: buy probability per unit affinity")
    sim.add_argument("--users", type=int, help="--shoppers: only the first N users of the shop")
    sim.set_defaults(func=_cmd_simulate)

    test = _command(
        sub, "test", "static checks (ruff, import contracts, mypy, sqlfluff), then pytest (its arguments may follow)"
    )
    test.add_argument("--no-static", action="store_true", help="skip mypy and sqlfluff (ruff and lint-imports run)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments passed to pytest, e.g. -m unit -q")
    test.set_defaults(func=_cmd_test)
    return parser


def _cmd_serve(args: argparse.Namespace) -> int:
    from recomart.serving.server import serve

    s = settings()
    services.ensure_services(s, log=print)
    return serve(s, host=args.host, port=args.port, workers=args.workers)


def _cmd_stream(_: argparse.Namespace) -> int:
    from recomart.stream.worker import run_worker

    s = settings()
    services.ensure_services(s, log=print)
    return run_worker(s)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from recomart.stream.simulate import print_summary, simulate

    if args.shoppers:
        from recomart.stream.shoppers import simulate_shoppers

        shoppers = simulate_shoppers(settings(), args.visits, args.buy_rate, args.users, url=args.url)
        print(json.dumps(shoppers.as_dict(), indent=2), flush=True)
        return 0 if shoppers.failed_requests == 0 else 1
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    if args.rate <= 0 or seconds <= 0:
        print("recomart: --rate and --minutes (or --seconds) must be positive", file=sys.stderr)
        return 2
    s = settings()
    if args.watch:
        return _watch(s, args.watch, args.rate, seconds, args.url)
    summary = simulate(s, args.rate, seconds, url=args.url)
    print_summary(summary)
    return 0 if summary.refused == 0 else 1


def _watch(s: Settings, user: str, rate: float, seconds: float, url: str | None) -> int:
    from recomart.stream.watch import busiest_user, print_watched, watch

    if user == "auto":
        user = busiest_user(s, int(rate * seconds))
        if user is None:
            print("recomart: the simulator has no events to send for this shop", file=sys.stderr)
            return 1
    watched = watch(s, user, rate, seconds, url)
    print_watched(watched)
    return 0 if watched.summary.refused == 0 else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; after ``test``, every argument but ``--no-static`` goes to pytest, in order."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if unknown:  # `recomart test -m unit -q`: every option after `test` belongs to pytest, in order
        args.pytest_args = [*unknown, *args.pytest_args]
    if args.command == "test" and "--no-static" in args.pytest_args:  # given after pytest's arguments
        args.no_static, args.pytest_args = True, [arg for arg in args.pytest_args if arg != "--no-static"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return args.func(args)
    except SettingError as exc:
        print(f"recomart: {exc}", file=sys.stderr)
        return 2
    except (services.ServiceUnavailable, MigrationError) as exc:
        print(f"recomart: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
