"""``POST /v1/events``: validate, check the API key, append to the Redis Stream, answer 202.

The API includes :func:`EventIntake.router` (``recomart.serving.app``). 202 is sent only after
Redis confirmed the append; a batch is appended in one ``MULTI``/``EXEC``, so it is in the stream
all or none. 503 when Redis is unreachable, or when the stream holds ``stream_max_len`` entries
(the worker is behind: it trims acknowledged entries). ``MAXLEN`` is never given to ``XADD``:
only the worker trims, and never past an unacknowledged entry.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated, Any

import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import Counter
from pydantic import Discriminator, Tag

from recomart.config import Settings
from recomart.credentials import secret
from recomart.stream.events import Accepted, EventBatch, EventIn, encode, stream_layout

EVENTS_PATH = "/v1/events"
API_KEY_SECRET = "events_api_key"
API_KEY_HEADER = "X-API-Key"
PREVIEW_HEADER = "X-RecoMart-Preview"
"""With the API key, a recommendations read that logs no exposure (the dashboard's previews)."""
MAX_BODY_BYTES = 2 * 1024 * 1024  # 1,000 events of about 1 kB each, with room
RETRY_AFTER_S = {"unavailable": "1", "backlog": "5"}

ACCEPTED = Counter("recomart_api_events_accepted", "Events appended to the stream (202).")
REJECTED = Counter(
    "recomart_api_event_requests_rejected",
    "POST /v1/events requests refused, by reason: invalid (422), too_large (413), unauthorized (401), "
    "forbidden (403), unavailable (503, Redis down) or backlog (503, stream at its cap).",
    ["reason"],
)


def _shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "event"


Payload = Annotated[
    Annotated[EventIn, Tag("event")] | Annotated[EventBatch, Tag("batch")],
    Discriminator(_shape),
    Body(description='One event, or {"events": [...]} with up to 1,000.'),
]


def api_key(s: Settings) -> str:
    """The events API key of deployment ``s`` (generated on first use, ``<state>/secrets/events_api_key``)."""
    return secret(s.state_dir, API_KEY_SECRET)


def _refuse(reason: str, status: int, detail: str) -> HTTPException:
    REJECTED.labels(reason).inc()
    headers = {"Retry-After": RETRY_AFTER_S[reason]} if reason in RETRY_AFTER_S else None
    if reason == "unauthorized":
        headers = {"WWW-Authenticate": API_KEY_HEADER}
    return HTTPException(status, detail=detail, headers=headers)


class EventIntake:
    """The events router of one API process, with its own asyncio Redis client."""

    def __init__(self, s: Settings) -> None:
        self.layout = stream_layout(s.db_prefix)
        self.max_len = s.stream_max_len
        self._key = api_key(s).encode()
        self.redis = aioredis.Redis.from_url(
            s.redis_url, socket_timeout=2.0, socket_connect_timeout=0.5, retry_on_timeout=False
        )

    async def aclose(self) -> None:
        await self.redis.aclose()

    def install(self, app: FastAPI) -> None:
        """Add the route, and count the requests FastAPI refuses with 422 before the route runs."""
        app.include_router(self.router())

        async def count_invalid(request: Request, exc: Exception) -> JSONResponse:
            if request.url.path == EVENTS_PATH:
                REJECTED.labels("invalid").inc()
            return await request_validation_exception_handler(request, exc)  # type: ignore[arg-type]

        app.add_exception_handler(RequestValidationError, count_invalid)

    def is_key(self, key: str | None) -> bool:
        """True when ``key`` is this deployment's events API key (compared in constant time)."""
        return bool(key) and hmac.compare_digest(key.encode(), self._key)

    def check_key(
        self, key: Annotated[str | None, Depends(APIKeyHeader(name=API_KEY_HEADER, auto_error=False))]
    ) -> None:
        if not key:
            raise _refuse("unauthorized", 401, f"missing {API_KEY_HEADER} header: POST {EVENTS_PATH} needs the API key")
        if not hmac.compare_digest(key.encode(), self._key):
            raise _refuse("forbidden", 403, f"{API_KEY_HEADER} is not this deployment's events API key")

    @staticmethod
    def check_size(request: Request) -> None:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise _refuse("too_large", 413, f"body of {length} bytes is over the limit of {MAX_BODY_BYTES}")

    async def append(self, events: list[EventIn]) -> list[str]:
        """Append ``events`` in one transaction; 503 (HTTPException) when Redis is down or the stream full."""
        received_at = datetime.now(UTC)
        try:
            length = await self.redis.xlen(self.layout.stream)
            if length >= self.max_len:
                raise _refuse(
                    "backlog",
                    503,
                    f"the event stream holds {length} entries, at its cap of {self.max_len}: the stream worker "
                    "is behind or stopped (`./recomart stream`); nothing was appended, retry later",
                )
            async with self.redis.pipeline(transaction=True) as pipe:
                for event in events:
                    pipe.xadd(self.layout.stream, encode(event, received_at))
                ids = await pipe.execute()
        except redis.RedisError as exc:
            raise _refuse(
                "unavailable",
                503,
                f"Redis unavailable ({type(exc).__name__}: {str(exc)[:200]}): retry; events of a retried "
                "batch that did reach the stream are processed once (event_id)",
            ) from None
        ACCEPTED.inc(len(events))
        return [entry_id.decode() for entry_id in ids]

    def router(self) -> APIRouter:
        router = APIRouter(tags=["events"])

        @router.post(
            EVENTS_PATH,
            status_code=202,
            response_model=Accepted,
            dependencies=[Depends(self.check_key), Depends(self.check_size)],
            responses={
                401: {"description": f"No {API_KEY_HEADER} header"},
                403: {"description": f"Wrong {API_KEY_HEADER}"},
                413: {"description": "Body over 2 MiB"},
                503: {"description": "Redis unavailable, or the stream at its cap (worker behind); retry"},
            },
        )
        async def post_events(payload: Payload) -> Accepted:
            """Accept one event or a batch of up to 1,000 (view, add_to_cart, purchase) for the speed layer.

            202 once the events are in the Redis Stream; the stream worker then loads them into
            ``raw.stream_events`` and the user's session features. A repeated ``event_id`` is
            accepted and processed once.
            """
            events = payload.events if isinstance(payload, EventBatch) else [payload]
            return Accepted(accepted=len(events), stream_ids=await self.append(events))

        return router
