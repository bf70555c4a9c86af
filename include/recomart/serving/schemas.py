"""Request parameter and response models: they document the API in OpenAPI (``/docs``); handlers
validate parameters with :mod:`recomart.serving.params` and write the JSON themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from recomart.recommend.tables import ALSO_BOUGHT, SimilarKind

MAX_K = 100
MAX_ID_LENGTH = 200


class RecommendationsParams(BaseModel):
    """``GET /v1/users/{user_id}/recommendations``'s parameters."""

    user_id: str = Field(
        min_length=1, max_length=MAX_ID_LENGTH, description="Shop user id (any id; unknown users get cold start)."
    )
    k: int = Field(10, ge=1, le=MAX_K, description="How many items.")
    category: str | None = Field(None, max_length=200)
    min_price: float | None = Field(None, ge=0)
    max_price: float | None = Field(None, ge=0)
    exclude: list[str] = Field(default_factory=list, max_length=MAX_K * 10, description="Item ids to leave out.")


class SimilarParams(BaseModel):
    """``GET /v1/items/{item_id}/similar``'s parameters."""

    item_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    k: int = Field(10, ge=1, le=MAX_K)
    kind: SimilarKind = Field(
        ALSO_BOUGHT,
        description="also_bought: customers who bought this also bought; looks_like: nearest by text",
    )


class RecommendedItem(BaseModel):
    rank: int
    item_id: str
    title: str | None
    category: str | None
    price: float | None
    score: float
    source: Literal["nightly", "session", "backfill"] = Field(
        description="nightly: on the user's (or cold-start) list; session: a neighbour of a session item; "
        "backfill: added from the cold-start list because filters left fewer than k"
    )
    reasons: dict[str, float] = Field(
        description="Per-component scores (svd, item_item, content, buy_again, popularity) and session_boost."
    )


class Filters(BaseModel):
    category: str | None
    min_price: float | None
    max_price: float | None
    exclude: list[str]


class RecommendationsOut(BaseModel):
    user_id: str
    strategy: str = Field(description="hybrid | hybrid_no_svd | popular_cold_start | popular_no_model")
    cold_start_segment: str | None = Field(description="The cold-start list used for a user not in the generation.")
    reranked: bool
    fresh_events_used: int = Field(description="Session entries that changed this list (0 = nightly only).")
    generation_id: int
    model_version: str | None = Field(description="The model version that ranked the generation's lists.")
    champion_version: str | None = Field(
        description="The @champion whose item-to-item neighbours re-rank the session (null while none); "
        "follows the alias within seconds, before the next generation is published."
    )
    list_source: Literal["redis", "postgres"] = Field(
        description="Where the list was read: the Redis copy of the generation (or this process's memory of "
        "an earlier read of it), or Postgres when Redis failed."
    )
    filters: Filters
    backfilled: int
    items: list[RecommendedItem]
    experiment: str | None = Field(description="The experiment running (ops.experiments), null while none.")
    variant: str | None = Field(description="The user's variant in it (deterministic per user), null while none.")
    request_id: str = Field(description="This response's id: the exposure's key; events may send it back.")


class SimilarItem(BaseModel):
    rank: int
    item_id: str
    title: str | None
    category: str | None
    price: float | None
    score: float


class SimilarOut(BaseModel):
    item_id: str
    generation_id: int
    model_version: str | None
    list_source: Literal["redis", "postgres"] = Field(
        description="Where the list was read: the Redis copy of the generation (or this process's memory of "
        "an earlier read of it), or Postgres when Redis failed."
    )
    items: list[SimilarItem]
    request_id: str


class ViewFeatures(BaseModel):
    feature_view: str
    found: bool
    freshness: Literal["missing", "stale", "fresh"]
    stale: bool
    features: dict[str, Any]
    event_timestamp: datetime | None
    ttl_seconds: float | None
    age_seconds: float | None


class FeaturesOut(BaseModel):
    user_id: str
    feature_service: str
    views: dict[str, ViewFeatures]


class ReadyOut(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    degraded: list[str]
    checks: dict[str, str]
    generation_id: int | None
    generation_source: str | None
    model_version: str | None
    checked_at: datetime
