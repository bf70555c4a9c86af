"""What one API process serves: the live generation, the champion's neighbours, the session reader.

A :class:`LiveState` holds immutable snapshots that a request reads once at its start (so a
request uses one generation from start to end) and a poller thread replaces them:

- the **generation** (id, model version, catalogue, cold-start lists) from Redis's pointer
  (``recomart.recommend.cache``) or, when Redis is down, its pointer lags Postgres or its keys are
  incomplete, from Postgres's ``reco.generations`` (``source`` says which);
- the **model**: ``@champion``'s item-to-item neighbours, reloaded when the alias moves (MLflow
  has no push, so the alias is polled);
- the **feature reader** for session features (Feast, built once Postgres holds the registry);
- the **running experiment** (``ops.experiments``, read on the same Postgres connection as the
  generation pointer: no per-request Postgres read) and, while one of its variants applies the
  ``challenger`` policy, ``@challenger``'s neighbours.

Every poll takes well under a second; :data:`POLL_S` keeps a switch within the 5 s promise.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from recomart.config import Settings
from recomart.experiments.definitions import POLICIES, Experiment
from recomart.experiments.store import running_experiment
from recomart.features import OnlineReader, serving_store
from recomart.features.names import entity_spec
from recomart.features.session import SERVING_FEATURE_SERVICE, SESSION_FEATURE_VIEW
from recomart.model.registry import CHALLENGER, CHAMPION, current_champion_version, load_champion, read_champion_alias
from recomart.recommend.cache import OVERALL_SEGMENT, CacheLayout, cache_layout, unpack
from recomart.serving.heap import freeze_long_lived
from recomart.serving.rerank import SESSION_FEATURES, Neighbours
from recomart.tools import tool_env

log = logging.getLogger(__name__)

POLL_S = 1.0
FROM_POSTGRES = "served from Postgres (Redis down, or its pointer missing or behind)"
CONNECT_TIMEOUT_S = 2


@dataclass(frozen=True)
class Generation:
    """One generation as this process serves it."""

    generation_id: int
    model_version: str | None
    built_at: str | None
    source: str  # "redis" | "postgres"
    catalogue: dict[str, list[Any]]  # item_id -> [title, category, price]
    popular: dict[str, list[list[Any]]]  # segment -> [item ids, scores]

    def cold_start(self, segment: str | None) -> tuple[str, list[str], list[float]]:
        """``(segment used, item ids, scores)``: the segment's list, else the overall one."""
        for name in (segment, OVERALL_SEGMENT):
            if name and name in self.popular:
                ids, scores = self.popular[name]
                return name, ids, scores
        return OVERALL_SEGMENT, [], []


@dataclass(frozen=True)
class Model:
    """The champion whose neighbours re-rank the lists."""

    version: str
    neighbours: Neighbours
    repeat_purchases: bool


@dataclass
class Health:
    """The last outcome of each dependency check (``None`` = fine, else what is wrong)."""

    postgres: str | None = "not checked yet"
    redis: str | None = "not checked yet"
    features: str | None = "not loaded yet"
    model: str | None = "not loaded yet"
    generation: str | None = "not loaded yet"
    checked_at: float = field(default_factory=time.time)


def pg_connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)


class Connections:
    """Autocommit connections kept open between polls (one per database), reopened after an error."""

    def __init__(self) -> None:
        self._open: dict[str, psycopg.Connection] = {}

    @contextlib.contextmanager
    def using(self, dsn: str) -> Iterator[psycopg.Connection]:
        """The open connection to ``dsn`` (connecting if needed); closed and forgotten if the block fails."""
        conn = self._open.get(dsn)
        if conn is None or conn.closed:
            conn = self._open[dsn] = pg_connect(dsn)
        try:
            yield conn
        except BaseException:
            self._open.pop(dsn, None)
            conn.close()
            raise

    def close(self) -> None:
        for conn in self._open.values():
            conn.close()
        self._open.clear()


def _pg_live_generation(conn: psycopg.Connection) -> tuple[int, str | None, str | None] | None:
    if conn.execute("select to_regclass('reco.generations')").fetchone()[0] is None:
        return None
    row = conn.execute(
        "select generation_id, model_version, built_at::text from reco.generations where is_live"
    ).fetchone()
    return None if row is None else (int(row[0]), row[1], row[2])


def _pg_generation(dsn: str, live: tuple[int, str | None, str | None]) -> Generation:
    """The generation's cold-start lists and the catalogue, from Postgres."""
    with pg_connect(dsn) as conn:
        rows = conn.execute("select segment, item_id, score from reco.popular_items order by segment, rank").fetchall()
        products = conn.execute(
            "select item_id, title, category, price::float8 from marts.dim_products"
            if conn.execute("select to_regclass('marts.dim_products')").fetchone()[0]
            else "select null, null, null, null where false"
        ).fetchall()
    popular: dict[str, list[list[Any]]] = {}
    for segment, item, score in rows:
        ids, scores = popular.setdefault(segment, [[], []])
        ids.append(item)
        scores.append(float(score))
    catalogue = {item: [title, category, price] for item, title, category, price in products}
    return Generation(live[0], live[1], live[2], "postgres", catalogue, popular)


def postgres_generation(dsn: str) -> Generation | None:
    """The live generation as Postgres holds it (cold-start lists, catalogue), or None if none is live."""
    with pg_connect(dsn) as conn:
        live = _pg_live_generation(conn)
    return None if live is None else _pg_generation(dsn, live)


def _redis_generation(client: redis.Redis, layout: CacheLayout, generation_id: int) -> Generation | None:
    """The generation from Redis, or None if its keys are not complete there."""
    meta, catalogue, popular = client.mget(
        layout.meta(generation_id), layout.catalogue(generation_id), layout.popular(generation_id)
    )
    if meta is None or catalogue is None or popular is None:
        return None
    info = unpack(meta)
    return Generation(
        generation_id, info.get("model_version"), info.get("built_at"), "redis", unpack(catalogue), unpack(popular)
    )


class LiveState:
    """The snapshots one API process serves, and the poller that keeps them current."""

    def __init__(self, s: Settings, poll_s: float = POLL_S) -> None:
        self.settings = s
        self.dsn = s.warehouse_url
        self.layout = cache_layout(s.db_prefix)
        self.redis = redis.Redis.from_url(
            s.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, retry_on_timeout=False
        )
        self.poll_s = poll_s
        self.generation: Generation | None = None
        self.model: Model | None = None
        self.session_reader: OnlineReader | None = None  # the session view
        self.segment_reader: OnlineReader | None = None  # the user view (a cold-start user's segment)
        self.user_reader: OnlineReader | None = None  # both (``GET /v1/users/{id}/features``)
        self.experiment: Experiment | None = None
        self.challenger: Model | None = None
        self.health = Health()
        #: ``ns:erasures`` as last read: a change empties the lists each process keeps (serving.reads)
        self.erasures: bytes | None = None
        self._connections = Connections()
        # called by the poller with each newly loaded generation (e.g. the search index's rebuild)
        self.on_new_generation: list[Callable[[Generation], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- polling -----------------------------------------------------------------------------
    def start(self) -> None:
        """Load once (so the first request finds a generation if there is one), then poll in the background."""
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="recomart-live-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._connections.close()
        self.redis.close()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # the poller must outlive any one failure; health says what is wrong
                log.exception("refreshing the live state failed")

    def refresh(self) -> None:
        """One poll: the generation pointer(s), the champion alias, the feature reader; what it loads
        anew is frozen for the garbage collector (:mod:`recomart.serving.heap`)."""
        before = self._loaded()
        pg_live = self._check_postgres()
        redis_live = self._check_redis()
        self._refresh_generation(pg_live, redis_live)
        self._refresh_model()
        self._refresh_features()
        self.health.checked_at = time.time()
        if any(now is not then for now, then in zip(self._loaded(), before, strict=True)):
            freeze_long_lived()

    def _loaded(self) -> tuple[object, ...]:
        return self.generation, self.model, self.challenger, self.session_reader

    def _check_postgres(self) -> tuple[int, str | None, str | None] | None:
        """The live generation's row, and the running experiment read on the same connection (kept as it
        was while Postgres is down: assignment needs no Postgres, so users keep their variants)."""
        try:
            with self._connections.using(self.dsn) as conn:
                live = _pg_live_generation(conn)
                self._set_experiment(conn)
        except psycopg.Error as exc:
            self.health.postgres = f"unreachable: {str(exc).strip().splitlines()[0]}"
            return None
        self.health.postgres = None
        return live

    def _set_experiment(self, conn: psycopg.Connection) -> None:
        try:
            experiment = running_experiment(conn, datetime.now(UTC))
        except ValueError as exc:  # a row changed by hand into an invalid definition
            log.warning("ignoring the running experiment: %s", exc)
            experiment = None
        if experiment != self.experiment:
            log.info("experiment now applied: %s", experiment.name if experiment else "none")
        self.experiment = experiment

    def _check_redis(self) -> int | None:
        """The live pointer in Redis (None: none, or Redis unreachable); also reads the erasure count."""
        try:
            pointer, erasures = self.redis.mget(self.layout.live, self.layout.erasures)
        except redis.RedisError as exc:
            self.health.redis = f"unreachable: {exc}"
            return None
        self.health.redis = None
        self.erasures = erasures
        return None if pointer is None else int(pointer)

    def _refresh_generation(self, pg_live: tuple[int, str | None, str | None] | None, redis_live: int | None) -> None:
        """Serve Redis's pointer when it agrees with Postgres (or Postgres is down), else Postgres."""
        current = self.generation
        target = redis_live if pg_live is None else pg_live[0]
        if target is None:
            self.health.generation = "no live generation yet (run the recommend DAG)"
            return
        use_redis = redis_live == target
        if current is not None and current.generation_id == target and (current.source == "redis") == use_redis:
            self.health.generation = None if use_redis else FROM_POSTGRES
            return
        loaded = _redis_generation(self.redis, self.layout, target) if use_redis else None
        if loaded is None and pg_live is not None:
            loaded = _pg_generation(self.dsn, pg_live)
        if loaded is None:
            self.health.generation = f"generation {target} is neither complete in Redis nor readable in Postgres"
            return
        self.generation = loaded
        self.health.generation = (
            None if loaded.source == "redis" else "served from Postgres (Redis pointer missing or behind)"
        )
        log.info("serving generation %s from %s", loaded.generation_id, loaded.source)
        if current is None or current.generation_id != loaded.generation_id:
            for listener in self.on_new_generation:
                listener(loaded)

    def _refresh_model(self) -> None:
        try:
            self.model, problem = self._load_alias(CHAMPION, self.model)
        except Exception as exc:  # MLflow's client raises its own and SQLAlchemy's errors
            self.health.model = f"@champion unreadable: {str(exc).splitlines()[0][:200]}"
            return
        self.health.model = problem and f"{problem}: lists are served without session re-ranking"
        experiment = self.experiment
        if experiment is None or all(POLICIES[v.policy].rerank_with != CHALLENGER for v in experiment.variants):
            self.challenger = None
            return
        try:
            self.challenger, problem = self._load_alias(CHALLENGER, self.challenger)
        except Exception as exc:  # as above: keep the challenger loaded before, if any
            problem = f"@challenger unreadable: {str(exc).splitlines()[0][:200]}"
        if problem:
            log.warning("%s: the challenger variant is re-ranked with @champion's neighbours", problem)

    def _load_alias(self, alias: str, current: Model | None) -> tuple[Model | None, str | None]:
        """``(model behind @alias, problem)``: ``current`` when the alias has not moved (or is unset: then
        ``problem`` says so)."""
        s = self.settings
        version = self._alias_version(alias)
        if version is None:
            return current, f"no @{alias} registered"
        if current is not None and current.version == str(version):
            return current, None
        loaded = load_champion(s.mlflow_tracking_uri, s.model_name, alias)
        if loaded is None:  # the alias moved away while loading: the next poll loads its new version
            return current, None
        recommender = loaded.recommender
        log.info("loaded @%s v%s for re-ranking", alias, loaded.version)
        return Model(loaded.version, Neighbours.from_recommender(recommender), recommender.repeat_purchases), None

    def _alias_version(self, alias: str) -> str | None:
        """``@alias``'s version: one query on MLflow's registry table, MLflow's client if that fails."""
        s = self.settings
        try:
            with self._connections.using(s.pg_url(s.mlflow_db)) as conn:
                return read_champion_alias(conn, s.model_name, alias)
        except psycopg.errors.UndefinedTable:
            # MLflow has not created its schema: nothing is registered. (Asking the client would create
            # the tables, and the API's workers would race to do so.)
            return None
        except psycopg.Error:  # another schema, or MLflow's database unreachable: ask MLflow's client
            return current_champion_version(s.mlflow_tracking_uri, s.model_name, alias)

    def _refresh_features(self) -> None:
        if self.session_reader is not None:
            self.health.features = None
            return
        s = self.settings
        try:
            store = serving_store(s.feature_repo_dir, tool_env(s))
            user_view = entity_spec("user").feature_view
            self.segment_reader = OnlineReader(store, [user_view], SERVING_FEATURE_SERVICE, only=["segment"])
            self.user_reader = OnlineReader(store, [user_view, SESSION_FEATURE_VIEW], SERVING_FEATURE_SERVICE)
            # re-ranking reads the session's item lists and their times, not its counts
            self.session_reader = OnlineReader(
                store, [SESSION_FEATURE_VIEW], SERVING_FEATURE_SERVICE, only=SESSION_FEATURES
            )
            self.health.features = None
        except Exception as exc:  # Feast raises many kinds (registry, missing service, connection)
            self.health.features = f"feature store not ready: {str(exc).splitlines()[0][:200]}"
