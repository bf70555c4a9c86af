"""The serving API over HTTP: a real uvicorn (2 workers) on private Postgres and Redis that the tests stop.

A small generation is ranked by the real ``HybridRecommender`` and published by the nightly code
(``publish_generation``, then the recommend task's Redis copy and pointer flip). Reliability:
Redis down (reads degrade to Postgres, ``/readyz`` says so, recovery without restart), Postgres
down (reads keep serving from Redis), a publish during requests (old or new generation, never a
mix or an error), hot reload within 5 s of a publish and of ``@champion`` moving to another registered
version (a real pyfunc of the hybrid), and clear 4xx errors for bad input.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest

from recomart import local_postgres, local_redis, services
from recomart.config import Settings, load_settings
from recomart.features import apply
from recomart.model.registry import (
    current_champion_version,
    read_champion_alias,
    register_recommender,
    set_champion,
)
from recomart.ranking.base import TrainingSet
from recomart.ranking.hybrid import HybridRecommender
from recomart.recommend.run import OUTPUT_COLUMNS, publish_generation
from recomart.serving.server import server_env, uvicorn_args
from recomart.tasks.recommend import copy_live_generation_to_redis
from recomart.tools import tool_env

pytestmark = pytest.mark.integration

USERS = [f"u{n:03d}" for n in range(60)]
ITEMS = [f"i{n:03d}" for n in range(40)]
CATEGORIES = ("books", "garden", "toys", "tools")
SWITCH_S = 5.0


def _overrides(folder: Path, free_port: Callable[[], int]) -> dict[str, str]:
    return {
        "RECOMART_STATE_DIR": str(folder),
        "RECOMART_PG_URL": "",
        "RECOMART_REDIS_URL": "",
        "RECOMART_EMBEDDED_PG_PORT": str(free_port()),
        "RECOMART_EMBEDDED_REDIS_PORT": str(free_port()),
        "RECOMART_API_PORT": str(free_port()),
        "RECOMART_DB_PREFIX": "serve",
        "RECOMART_FEAST_PROJECT": "serve",
        "RECOMART_MODEL_NAME": "serve_model",
    }


def _products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ITEMS,
            "title": [f"Product {item}" for item in ITEMS],
            "description": "",
            "category": [CATEGORIES[n % len(CATEGORIES)] for n in range(len(ITEMS))],
            "brand": "acme",
            "price": [5.0 + n for n in range(len(ITEMS))],
        }
    )


def _history(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(user, ITEMS[j]) for user in USERS[:50] for j in rng.choice(len(ITEMS), size=6, replace=False)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    frame["rating"], frame["purchases"] = 1.0, 1
    frame["last_interaction_at"] = pd.Timestamp("2025-03-01", tz="UTC")
    return frame


def _marts(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "create schema if not exists marts; create table marts.dim_products "
            "(item_id text primary key, title text, description text, category text, brand text, price numeric)"
        )
        with conn.cursor().copy("copy marts.dim_products from stdin") as copy:
            for row in _products().itertuples(index=False):
                copy.write_row(row)


def _fitted(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, HybridRecommender]:
    """(history, users, a hybrid fitted on them) for ``seed``."""
    history = _history(seed)
    users = pd.DataFrame({"user_id": USERS, "segment": ["a" if n % 2 else "b" for n in range(len(USERS))]})
    recommender = HybridRecommender(personalised=True, svd=None).fit(TrainingSet.build(history, _products(), users))
    return history, users, recommender


def register_version(s: Settings, seed: int, folder: Path) -> str:
    """Register a real pyfunc of the hybrid fitted for ``seed`` as a new version (no alias); its version."""
    return register_recommender(s.mlflow_tracking_uri, s.model_name, _fitted(seed)[2], folder, {"seed": seed})


def publish(s: Settings, seed: int) -> int:
    """Rank every user with a hybrid fitted on a seeded history; swap reco.* in; copy to Redis."""
    history, users, recommender = _fitted(seed)
    recs = recommender.rank(users, history, k=10).assign(model_version=None)
    result = publish_generation(s.warehouse_url, recs[OUTPUT_COLUMNS], recommender, model_version=None, log=lambda _: 0)
    copy_live_generation_to_redis(s, s.warehouse_url)
    return result.generation_id


def live_lists(s: Settings, user_id: str) -> tuple[int, list[str]]:
    with psycopg.connect(s.warehouse_url) as conn:
        rows = conn.execute(
            "select generation_id, item_id from reco.user_recommendations where user_id = %s order by rank", (user_id,)
        ).fetchall()
    return rows[0][0], [r[1] for r in rows]


@contextlib.contextmanager
def deployed(free_port: Callable[[], int], name: str, **extra: str) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Private embedded Postgres and Redis, the marts, Feast's registry and a first generation
    (``extra``: more ``RECOMART_*`` overrides); stopped and removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix=f"recomart-{name}-"))
    overrides = {**_overrides(folder, free_port), **extra}
    s = load_settings({**os.environ, **overrides})
    try:
        services.ensure_services(s)
        _marts(s.warehouse_url)
        apply(s.feature_repo_dir, tool_env(s))
        publish(s, seed=1)
        yield s, overrides
    finally:
        services.stop_embedded(s)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def deployment(free_port: Callable[[], int]) -> Iterator[tuple[Settings, dict[str, str]]]:
    with deployed(free_port, "serving") as found:
        yield found


@pytest.fixture(scope="module")
def api(deployment: tuple[Settings, dict[str, str]]) -> Iterator[httpx.Client]:
    """``recomart serve``'s uvicorn command line with 2 workers, as a real process."""
    s, overrides = deployment
    env = {**server_env(s, s.api_port), **overrides}
    args = uvicorn_args(s, "127.0.0.1", s.api_port, 2)
    log = (s.state_dir / "api.log").open("w")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{s.api_port}", timeout=10)
    try:
        _wait(lambda: client.get("/readyz").status_code == 200, 90, "the API to become ready")
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)
        log.close()
        print((s.state_dir / "api.log").read_text()[-3000:], file=sys.stderr)


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        with contextlib.suppress(httpx.HTTPError):
            if condition():
                return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout_s} s for {what}")


def _recs(api: httpx.Client, user: str, **params) -> dict:
    response = api.get(f"/v1/users/{user}/recommendations", params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --- reads ----------------------------------------------------------------------------------
def test_known_user_gets_the_live_list_from_redis(api: httpx.Client, deployment) -> None:
    s, _ = deployment
    generation, expected = live_lists(s, "u007")
    body = _recs(api, "u007")
    assert body["generation_id"] == generation and body["list_source"] == "redis"
    assert [item["item_id"] for item in body["items"]] == expected
    first = body["items"][0]
    assert first["title"] == f"Product {first['item_id']}" and first["category"] in CATEGORIES
    assert first["price"] > 0 and first["reasons"] and first["source"] == "nightly"
    assert body["strategy"].startswith("hybrid") and body["request_id"] and body["fresh_events_used"] == 0


def test_unknown_user_gets_the_labelled_cold_start_list(api: httpx.Client) -> None:
    body = _recs(api, "nobody-knows-me", k=5)
    assert body["strategy"] == "popular_cold_start" and body["cold_start_segment"] == "__all__"
    assert len(body["items"]) == 5


def test_filters_backfill_and_say_so(api: httpx.Client) -> None:
    body = _recs(api, "u007", category="garden", k=8)
    assert body["items"] and all(item["category"] == "garden" for item in body["items"])
    assert body["backfilled"] == sum(item["source"] == "backfill" for item in body["items"]) > 0
    priced = _recs(api, "u007", min_price=10, max_price=20)
    assert all(10 <= item["price"] <= 20 for item in priced["items"])
    full = _recs(api, "u007")
    dropped = full["items"][0]["item_id"]
    assert dropped not in [item["item_id"] for item in _recs(api, "u007", exclude=[dropped])["items"]]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"k": 0}, "greater than or equal to 1"),
        ({"k": 101}, "less than or equal to 100"),
        ({"k": "ten"}, "valid integer"),
        ({"min_price": "cheap"}, "valid number"),
        ({"min_price": 30, "max_price": 10}, "min_price (30.0) is above max_price (10.0)"),
    ],
)
def test_bad_input_gets_a_clear_422(api: httpx.Client, params: dict, needle: str) -> None:
    response = api.get("/v1/users/u007/recommendations", params=params)
    assert response.status_code == 422
    assert needle in response.text


def test_similar_items_and_unknown_item(api: httpx.Client, deployment) -> None:
    s, _ = deployment
    with psycopg.connect(s.warehouse_url) as conn:
        item, expected = conn.execute(
            "select item_id, array_agg(similar_item_id order by rank) from reco.similar_items"
            " where kind = 'also_bought' group by 1 limit 1"
        ).fetchone()
    body = api.get(f"/v1/items/{item}/similar", params={"k": 50}).json()
    assert [entry["item_id"] for entry in body["items"]] == expected
    missing = api.get("/v1/items/no-such-item/similar")
    assert missing.status_code == 404 and "'no-such-item' is not in the catalogue" in missing.json()["detail"]


def test_readyz_names_the_missing_model(api: httpx.Client) -> None:
    """No @champion is registered here (MLflow has not even created its tables, and the API's workers
    must not race to create them): lists are served, and /readyz says what is missing."""
    body = api.get("/readyz").json()
    assert body["status"] == "degraded" and body["degraded"] == ["model"]
    assert "no @champion registered" in body["checks"]["model"]


def test_features_route_reads_both_views_with_freshness(api: httpx.Client) -> None:
    body = api.get("/v1/users/u007/features").json()
    assert body["feature_service"] == "serving_v1"
    assert set(body["views"]) == {"user_features", "user_session_features"}
    assert body["views"]["user_session_features"]["freshness"] == "missing"


def test_metrics_cover_every_worker(api: httpx.Client) -> None:
    for _ in range(6):
        _recs(api, "u001")
    text = api.get("/metrics").text
    assert 'recomart_api_request_seconds_bucket{le="0.005",route="/v1/users/{user_id}/recommendations"' in text
    assert "recomart_api_fallback_share" in text and 'recomart_api_list_reads_total{route="recommendations"' in text


# --- generations -----------------------------------------------------------------------------
def test_publish_during_requests_switches_within_5s_without_mixing(api: httpx.Client, deployment) -> None:
    s, _ = deployment
    old_generation, old_items = live_lists(s, "u007")
    seen: list[tuple[int, list[str]]] = []
    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=str(api.base_url), timeout=10) as client:
            while not stop.is_set():
                response = client.get("/v1/users/u007/recommendations")
                if response.status_code != 200:
                    errors.append(response.text)
                    continue
                body = response.json()
                seen.append((body["generation_id"], [item["item_id"] for item in body["items"]]))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        new_generation = publish(s, seed=2)
        published = time.monotonic()
        _, new_items = live_lists(s, "u007")
        switch = _wait(lambda: bool(seen) and seen[-1][0] == new_generation, 10, "the new generation")
        switched_at = time.monotonic() - published
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    assert new_items != old_items
    expected = {old_generation: old_items, new_generation: new_items}
    assert {generation for generation, _ in seen} <= set(expected)
    assert all(items == expected[generation] for generation, items in seen)
    assert switched_at <= SWITCH_S, f"switched after {switched_at:.1f}s ({switch:.1f}s of polling)"


def _champions_seen(api: httpx.Client, requests: int) -> set[str | None]:
    """``champion_version`` of ``requests`` recommendations, each on a new connection (any worker)."""
    with httpx.Client(base_url=str(api.base_url), timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        return {_recs(c, "u007")["champion_version"] for _ in range(requests)}


def test_champion_move_during_requests_switches_within_5s_without_errors(
    api: httpx.Client, deployment, tmp_path: Path
) -> None:
    """``@champion`` moves to another registered version (no new generation): every worker re-ranks
    with it within 5 s (``champion_version``), and no request fails meanwhile."""
    s, _ = deployment
    first, second = register_version(s, 11, tmp_path / "v-a"), register_version(s, 12, tmp_path / "v-b")
    set_champion(s.mlflow_tracking_uri, s.model_name, first)
    _wait(lambda: _champions_seen(api, 12) == {first}, 90, f"every worker to load v{first}")
    seen: list[tuple[float, str | None]] = []  # (monotonic time the request was sent, champion_version)
    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        # no keep-alive: each request is a new connection, so the requests spread over both workers
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=str(api.base_url), timeout=10, limits=limits) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.get("/v1/users/u007/recommendations")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                if response.status_code != 200:
                    errors.append(response.text)
                    continue
                seen.append((sent, response.json()["champion_version"]))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        set_champion(s.mlflow_tracking_uri, s.model_name, second)
        moved = time.monotonic()
        assert current_champion_version(s.mlflow_tracking_uri, s.model_name) == second
        # the API's poller reads the alias from MLflow's table: it must agree with MLflow's client
        with psycopg.connect(s.pg_url(s.mlflow_db)) as conn:
            assert read_champion_alias(conn, s.model_name) == second
        time.sleep(SWITCH_S + 2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors[:3]
    # None: a worker still loading its first champion (the wait above may have reached only the other one,
    # as uvicorn's workers share one socket and one of them can take every sequential connection)
    assert {version for _, version in seen} <= {first, second, None}
    before = [version for sent, version in seen if sent < moved - 0.5]
    assert before and set(before) - {None} == {first}
    last_old = max((sent for sent, version in seen if version == first), default=moved)
    assert last_old - moved <= SWITCH_S, f"a request sent {last_old - moved:.1f}s after the move still saw v{first}"
    settled = [version for sent, version in seen if sent > moved + SWITCH_S]
    assert len(settled) >= 4 and set(settled) == {second}


# --- outages ---------------------------------------------------------------------------------
def test_redis_down_reads_postgres_then_recovers_without_restart(api: httpx.Client, deployment) -> None:
    s, _ = deployment
    generation, expected = live_lists(s, "u011")
    local_redis.stop(s, hard=True)
    try:
        _wait(lambda: "redis" in api.get("/readyz").json()["degraded"], 10, "/readyz to name redis")
        ready = api.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        body = _recs(api, "u011")
        assert body["list_source"] == "postgres" and body["generation_id"] == generation
        assert [item["item_id"] for item in body["items"]] == expected
        assert api.get("/v1/items/i001/similar").status_code == 200
    finally:
        local_redis.start(s)
    _wait(lambda: _recs(api, "u011")["list_source"] == "redis", 15, "reads from Redis again")
    _wait(lambda: not {"redis", "generation"} & set(api.get("/readyz").json()["degraded"]), 15, "redis ok")


def test_postgres_down_reads_keep_serving_from_redis(api: httpx.Client, deployment) -> None:
    s, _ = deployment
    generation, expected = live_lists(s, "u012")
    local_postgres.stop(s)
    try:
        _wait(lambda: "postgres" in api.get("/readyz").json()["degraded"], 10, "/readyz to name postgres")
        assert api.get("/readyz").json()["status"] == "degraded"
        for _ in range(20):
            body = _recs(api, "u012")
            assert body["list_source"] == "redis" and body["generation_id"] == generation
            assert [item["item_id"] for item in body["items"]] == expected
        assert _recs(api, "stranger")["strategy"] == "popular_cold_start"
    finally:
        local_postgres.start(s)
    _wait(lambda: api.get("/readyz").json()["checks"]["postgres"] == "ok", 15, "postgres back")


def test_lists_are_kept_in_memory_until_an_erasure_deletes_them(api: httpx.Client, deployment) -> None:
    """A repeated read is answered from the process's memory (counted as ``memory``); ``forget``'s
    deletion empties every process's memory within a poll, so the erased user gets the cold start."""
    import redis

    from recomart.recommend.cache import cache_layout, delete_users

    s, _ = deployment
    for _ in range(8):  # both workers read the list, then answer from memory
        assert _recs(api, "u013")["strategy"] != "popular_cold_start"
    kept = [line for line in api.get("/metrics").text.splitlines() if 'source="memory"' in line]
    assert kept and any(float(line.split()[-1]) > 0 for line in kept if "recommendations" in line)
    client = redis.Redis.from_url(s.redis_url)
    try:
        assert delete_users(client, cache_layout(s.db_prefix), ["u013"]) >= 1
    finally:
        client.close()
    gone = _wait(
        lambda: all(_recs(api, "u013")["strategy"] == "popular_cold_start" for _ in range(8)), 5, "u013 forgotten"
    )
    assert gone < 3
