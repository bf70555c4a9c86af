"""``recomart`` command line: one entry point for users (``./recomart <command>``)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date

from recomart import services
from recomart.config import SettingError, load_settings, process_environment, settings
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

    s = settings()
    summary = generate(
        s.landing_dir / "generated",
        users=args.users or s.generator_users,
        items=args.items or s.generator_items,
        days=args.days or s.generator_days,
        seed=s.seed if args.seed is None else args.seed,
        end_date=date.fromisoformat(args.end_date) if args.end_date else None,
    )
    print(summary)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from recomart.demo import run_demo

    s = load_settings({**process_environment(), "RECOMART_DATASET": args.dataset}) if args.dataset else settings()
    return run_demo(s)


def _cmd_migrate(_: argparse.Namespace) -> int:
    s = settings()
    result = services.ensure_services(s, log=print)
    if result.applied:
        print(f"warehouse {s.warehouse_db}: applied {len(result.applied)} migrations, now at version {result.version}")
    else:
        print(f"warehouse {s.warehouse_db}: already at version {result.version}")
    return 0


def _cmd_up(_: argparse.Namespace) -> int:
    from recomart.stack import start_stack

    start_stack(settings())
    return 0


def _cmd_down(_: argparse.Namespace) -> int:
    from recomart.stack import stop_stack

    stop_stack(settings())
    return 0


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
    feat = sub.add_parser("features", help="Feast: look up online features, restore the online store, run feast")
    actions = feat.add_subparsers(dest="features_command", required=True)
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
    back = sub.add_parser("rollback", help="serve the previous recommendation generation (reco.*_previous) again")
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
    forget = sub.add_parser("forget", help="erase a person's data on request (raw, marts, features, reco, models)")
    kinds = forget.add_subparsers(dest="forget_command", required=True)
    user = kinds.add_parser("user", help="erase a user everywhere and keep their records out of later loads")
    user.add_argument("user_id", help="the user id as the warehouse writes it (marts.user_features.user_id)")
    user.add_argument("--reason", help="why, e.g. a ticket number (kept in ops.erasures; not the user's id)")
    user.set_defaults(func=_cmd_forget_user)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recomart", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    env = sub.add_parser(
        "env", help="print export lines for psql, dbt, feast, mlflow and airflow (and .venv/bin on PATH)"
    )
    env.add_argument(
        "--reader", action="store_true", help="libpq variables for the read-only analyst role recomart_reader"
    )
    env.set_defaults(func=_cmd_env)

    svc = sub.add_parser("services", help="start or stop the embedded Postgres and Redis")
    svc.add_argument("action", choices=["up", "down"])
    svc.set_defaults(func=_cmd_services)

    gen = sub.add_parser("generate", help="write the generated shop data set into the landing folder")
    gen.add_argument("--users", type=int)
    gen.add_argument("--items", type=int)
    gen.add_argument("--days", type=int)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--end-date", help="last day of events (default: yesterday, UTC)")
    gen.set_defaults(func=_cmd_generate)

    demo = sub.add_parser("demo", help="the main job: generate, ingest, dbt, Feast, train, recommend, report")
    demo.add_argument(
        "--dataset",
        choices=["generated", "uci"],
        default=None,
        help="data set (default: RECOMART_DATASET or 'generated')",
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

    sub.add_parser("up", help="start Airflow, the catalog API, MLflow UI and RecoMart API (background)").set_defaults(
        func=_cmd_up
    )
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=_cmd_down)

    _add_features_parser(sub)
    _add_rollback_parser(sub)
    _add_forget_parser(sub)

    search = sub.add_parser("search", help="search the products (BM25 + embeddings, or TF-IDF + LSA without the extra)")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--json", action="store_true", help="print the hits as JSON")
    search.add_argument("--embed", action="store_true", help="refresh reco.item_embeddings first (new/changed only)")
    search.add_argument("--fallback", action="store_true", help="use the TF-IDF + LSA index even with the extra")
    search.set_defaults(func=_cmd_search)

    api = sub.add_parser("serve", help="run the recommendations API (uvicorn) in the foreground")
    api.add_argument("--host", help="address to bind (default: RECOMART_BIND_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (default: RECOMART_API_PORT, 8000)")
    api.add_argument("--workers", type=int, help="worker processes (default: RECOMART_API_WORKERS, 2)")
    api.set_defaults(func=_cmd_serve)

    test = sub.add_parser(
        "test", help="static checks (ruff, import contracts, mypy, sqlfluff), then pytest (its arguments may follow)"
    )
    test.add_argument("--no-static", action="store_true", help="skip mypy and sqlfluff (ruff and lint-imports run)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(func=_cmd_test)
    return parser


def _cmd_serve(args: argparse.Namespace) -> int:
    from recomart.serving.server import serve

    s = settings()
    services.ensure_services(s, log=print)
    return serve(s, host=args.host, port=args.port, workers=args.workers)


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
