"""The RecoMart HTTP API (FastAPI on uvicorn): recommendations, similar items, features, operations.

Run with ``./recomart serve`` (``uvicorn --factory recomart.serving.app:create_app``). OpenAPI at
``/docs``. Read routes are open; ``POST /v1/events`` (the stream's router) needs the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import redis
import redis.asyncio
from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from recomart.config import Settings, load_settings
from recomart.dashboard.app import mount as mount_dashboard
from recomart.experiments.assignment import assign
from recomart.experiments.definitions import DEFAULT_POLICY, POLICIES, Policy, Variant
from recomart.recommend.cache import cache_layout
from recomart.serving import metrics
from recomart.serving.exposures import ExposureLog
from recomart.serving.heap import tune_collector
from recomart.serving.lists import Filters, build_recommendations
from recomart.serving.lists import Request as ListRequest
from recomart.serving.live import Generation, LiveState, Model
from recomart.serving.online_rows import OnlineRows
from recomart.serving.params import openapi_parameters, validated
from recomart.serving.reads import ListMemory, ListReader, UserList, postgres_pool
from recomart.serving.rerank import DEFAULT_WEIGHT, Session
from recomart.serving.schemas import (
    MAX_ID_LENGTH,
    FeaturesOut,
    ReadyOut,
    RecommendationsOut,
    RecommendationsParams,
    SimilarOut,
    SimilarParams,
)
from recomart.serving.search import SearchIndex
from recomart.serving.search import install as install_search
from recomart.serving.stats import SERVING_STATS
from recomart.stream.events import stream_layout
from recomart.stream.intake import API_KEY_HEADER, PREVIEW_HEADER, EventIntake
from recomart.stream.lag import stream_lag

USER_ID = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description=RecommendationsParams.model_fields["user_id"].description,
    ),
]


def _json(body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        msgspec.json.encode(body, enc_hook=str),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


@functools.lru_cache(maxsize=8)
def _constant_json(size: int) -> bytes:
    return b'{"x":"' + b"x" * max(size - 8, 0) + b'"}'


class LatencyMiddleware:
    """Observe each request's time in ``recomart_api_request_seconds`` under its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = {"code": 500}

        async def record_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            name, seconds = getattr(route, "path", "unmatched"), time.perf_counter() - began
            metrics.REQUEST_SECONDS.labels(name, str(status["code"])).observe(seconds)
            SERVING_STATS.observe(name, status["code"], seconds)


def _filters(category: str | None, min_price: float | None, max_price: float | None, exclude: list[str]) -> Filters:
    if min_price is not None and max_price is not None and min_price > max_price:
        raise HTTPException(422, detail=f"min_price ({min_price}) is above max_price ({max_price})")
    return Filters(category, min_price, max_price, tuple(dict.fromkeys(exclude)))


def _stream_gauges(state: LiveState) -> dict[str, tuple[str, float | None]]:
    """The event stream's length, pending entries and lag (none while Redis is down)."""
    try:
        lag = stream_lag(state.redis, stream_layout(state.settings.db_prefix))
    except redis.RedisError:
        return {}
    return {
        "recomart_stream_lag_seconds": (
            "Age of the oldest event the stream worker has not acknowledged.",
            lag.behind_s,
        ),
        "recomart_stream_length": ("Entries in the event stream (the API refuses events at its cap).", lag.length),
        "recomart_stream_pending": ("Events delivered to the worker and not yet acknowledged.", lag.pending),
    }


def _variant(state: LiveState, user_id: str) -> tuple[str | None, Variant | None, Policy]:
    """``(experiment name, variant, policy)`` of the user under the running experiment, if any."""
    experiment = state.experiment
    if experiment is None:
        return None, None, DEFAULT_POLICY
    variant = assign(experiment, user_id)
    return experiment.name, variant, POLICIES[variant.policy]


def _reranker(state: LiveState, policy: Policy) -> Model | None:
    """The model whose neighbours re-rank under ``policy`` (``@challenger`` falls back to ``@champion``
    while no challenger is loaded; the exposure's ``reranker_version`` says which)."""
    if policy.rerank_with is None:
        return None
    return (state.challenger if policy.rerank_with == "challenger" else None) or state.model


def _exposure(body: dict[str, Any], request_id: str, now: datetime, reranker: Model | None) -> dict[str, Any]:
    """The exposure of a response ``body`` (:class:`recomart.stream.exposures.ExposureIn`'s fields)."""
    return {
        "request_id": request_id,
        "user_id": body["user_id"],
        "item_ids": [item["item_id"] for item in body["items"]],
        "served_at": now.isoformat(),
        "experiment": body["experiment"],
        "variant": body["variant"],
        "generation_id": body["generation_id"],
        "model_version": body["model_version"],
        "reranker_version": reranker.version if reranker else None,
        "strategy": body["strategy"],
    }


def create_app(s: Settings | None = None) -> FastAPI:
    """The API of deployment ``s`` (default: the process's settings)."""
    s = s or load_settings()
    state = LiveState(s)
    list_cache = redis.asyncio.Redis.from_url(
        s.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, retry_on_timeout=False
    )
    reader = ListReader(
        list_cache,
        cache_layout(s.db_prefix),
        postgres_pool(s.warehouse_url),
        ListMemory(s.api_list_memory),
        lambda: state.erasures,
    )
    online = OnlineRows(state)
    intake = EventIntake(s)
    exposures = ExposureLog(s)
    search_index = SearchIndex(s.warehouse_url)
    state.on_new_generation.append(lambda generation: search_index.rebuild(generation.generation_id))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tune_collector()
        state.start()
        exposures.start()
        SERVING_STATS.start(s.warehouse_url, s.serving_stats_flush_s)
        if search_index.snapshot is None and not search_index.rebuilding:  # no generation yet: build anyway
            search_index.rebuild(None)
        yield
        await exposures.aclose()
        state.stop()
        await list_cache.aclose()
        SERVING_STATS.stop(s.warehouse_url)
        reader.pool.close()
        await intake.aclose()
        await dashboard.close()

    app = FastAPI(
        title="RecoMart API",
        description="Recommendations of the live generation, re-ranked with fresh session features.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(LatencyMiddleware)
    app.state.live = state
    intake.install(app)
    dashboard = mount_dashboard(app, s)  # /ui: the dashboard (recomart.dashboard)
    install_search(app, search_index, _json)

    async def _list_and_session(
        generation: Generation, user_id: str, personal: bool, reranker: Model | None
    ) -> tuple[UserList | None, Session | None]:
        """The user's list (``personal`` policies) and, to re-rank with, their fresh session: a list this
        process keeps needs no await, and the others are read in one round trip's time."""
        kept = reader.kept_user(generation, user_id, "recommendations") if personal else None
        read_list = reader.user(generation, user_id, "recommendations") if kept is False else None
        if reranker is None:
            return (await read_list if read_list else kept or None), None
        if read_list is None:
            return kept or None, await online.session(user_id)
        return await asyncio.gather(read_list, online.session(user_id))

    def generation_or_503():
        generation = state.generation
        if generation is None:
            raise HTTPException(503, detail=f"no live generation to serve: {state.health.generation}")
        return generation

    @app.get(
        "/v1/users/{user_id}/recommendations",
        response_model=RecommendationsOut,
        openapi_extra=openapi_parameters(RecommendationsParams, ("user_id",)),
        tags=["recommendations"],
    )
    async def recommendations(http: Request) -> Response:
        """The user's list of the live generation, re-ranked with their fresh session; cold start for
        unknown users; filters backfill from the cold-start list and say so (``backfilled``). While an
        experiment runs, the user's variant's policy builds the list (``experiment``, ``variant``).
        Every response is logged as one exposure (``raw.exposures``, by ``request_id``), except a
        preview: the dashboard's reads, which send ``X-RecoMart-Preview: 1`` with the API key."""
        params = validated(RecommendationsParams, http)
        user_id, k = params.user_id, params.k
        filters = _filters(params.category, params.min_price, params.max_price, params.exclude)
        generation = generation_or_503()
        experiment, variant, policy = _variant(state, user_id)
        reranker = _reranker(state, policy)
        user_list, session = await _list_and_session(generation, user_id, policy.source == "personal", reranker)
        segment = await online.segment(user_id) if user_list is None else None
        now = datetime.now(UTC)
        request = ListRequest(user_id, k, filters, segment, session, DEFAULT_WEIGHT, now)
        body = build_recommendations(generation, user_list, reranker, request)
        if body["reranked"]:
            metrics.RERANKED.inc()
        request_id = uuid.uuid4().hex
        body = {
            **body,
            "experiment": experiment,
            "variant": variant.name if variant else None,
            "request_id": request_id,
        }
        # the preview headers are read off the request: they are not in the schema, and declaring them
        # as parameters costs FastAPI's validation on every request
        headers = http.headers
        if not (headers.get(PREVIEW_HEADER) == "1" and intake.is_key(headers.get(API_KEY_HEADER))):
            exposures.log(_exposure(body, request_id, now, reranker))
        return _json(body, headers={"X-Request-ID": request_id})

    @app.get(
        "/v1/items/{item_id}/similar",
        response_model=SimilarOut,
        responses={404: {"description": "Item unknown to the live generation"}},
        openapi_extra=openapi_parameters(SimilarParams, ("item_id",)),
        tags=["recommendations"],
    )
    async def similar(http: Request) -> Response:
        """The item's neighbours of ``kind`` in the live generation: customers who bought this also bought
        (the default), or the products whose text embedding looks most like it (``kind=looks_like``)."""
        params = validated(SimilarParams, http)
        item_id, k = params.item_id, params.k
        generation = generation_or_503()
        found = await reader.similar(generation, item_id, "similar", params.kind)
        if found is None and item_id not in generation.catalogue:
            raise HTTPException(
                404, detail=f"item {item_id!r} is not in the catalogue of generation {generation.generation_id}"
            )
        items = []
        for item, score in zip(found.items if found else [], found.scores if found else [], strict=True):
            if len(items) == k:
                break
            title, category, price = generation.catalogue.get(item) or (None, None, None)
            rank = len(items) + 1
            items.append(
                {
                    "rank": rank,
                    "item_id": item,
                    "title": title,
                    "category": category,
                    "price": price,
                    "score": round(float(score), 6),
                }
            )
        return _json(
            {
                "item_id": item_id,
                "generation_id": found.generation_id if found else generation.generation_id,
                "model_version": generation.model_version,
                "list_source": found.source if found else generation.source,
                "items": items,
                "request_id": uuid.uuid4().hex,
            }
        )

    @app.get("/v1/users/{user_id}/features", response_model=FeaturesOut, tags=["features"])
    def features(user_id: USER_ID) -> Response:
        """The user's online features through the feature service, with event time and freshness per view."""
        if state.user_reader is None:
            raise HTTPException(503, detail=f"feature store unavailable: {state.health.features}")
        if state.health.redis is not None:
            raise HTTPException(503, detail=f"online store unavailable: Redis {state.health.redis}")
        try:
            views = state.user_reader.read(user_id)
        except Exception as exc:  # Feast raises Redis and registry errors
            raise HTTPException(503, detail=f"online store unavailable: {str(exc).splitlines()[0][:200]}") from None
        return _json({"user_id": user_id, "feature_service": state.user_reader.feature_service, "views": views})

    @app.get("/v1/_floor", include_in_schema=False)
    async def floor(size: Annotated[int, Query(ge=2, le=1_000_000)] = 2048) -> Response:
        """The benchmark's floor: constant JSON of ``size`` bytes, no reads (``benchmarks/serving.py``)."""
        return Response(_constant_json(size), media_type="application/json")

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up (no dependency is checked: see ``/readyz``)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}}, tags=["operations"])
    def readyz() -> Response:
        """Postgres, Redis, the live generation, the model and the feature store, and what is degraded.

        200 while lists can be served (``status`` ``ready`` or ``degraded``), 503 when none can.
        """
        health = state.health
        checks = {name: getattr(health, name) for name in ("postgres", "redis", "generation", "model", "features")}
        degraded = sorted(name for name, problem in checks.items() if problem)
        generation = state.generation
        can_serve = generation is not None and (health.redis is None or health.postgres is None)
        body = {
            "status": ("degraded" if degraded else "ready") if can_serve else "unavailable",
            "degraded": degraded,
            "checks": {name: problem or "ok" for name, problem in checks.items()},
            "generation_id": generation.generation_id if generation else None,
            "generation_source": generation.source if generation else None,
            "model_version": state.model.version if state.model else None,
            "checked_at": datetime.fromtimestamp(health.checked_at, UTC).isoformat(),
        }
        return _json(body, status_code=200 if can_serve else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics of every worker: latency per route, list sources, events, stream lag."""
        reg = metrics.registry(s.metrics_multiproc_dir)
        gauges = {
            "recomart_api_fallback_share": ("Share of list reads answered by Postgres.", metrics.fallback_share(reg)),
            **_stream_gauges(state),
        }
        return Response(metrics.exposition(reg, gauges), media_type=metrics.CONTENT_TYPE)

    return app
