"""The events ``POST /v1/events`` accepts, and how they sit in the Redis Stream.

One stream per deployment, ``<db prefix>:stream:events``, read by the consumer group ``workers``.
Each entry has one field, ``e``: the event as compact JSON with the server's ``received_at``
(and ``event_time`` filled in with it when the client sent none), so the worker needs nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_BATCH = 1000
MAX_FUTURE = timedelta(minutes=5)
ENTRY_FIELD = b"e"
GROUP = "workers"

Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
EventType = Literal["view", "add_to_cart", "purchase"]  # recomart.features.session.EVENT_TYPES


class EventIn(BaseModel):
    """One shop event. ``event_id`` is the client's id: a repeated id is accepted but processed once."""

    model_config = ConfigDict(extra="forbid")

    event_id: Id = Field(description="The client's unique id of this event (idempotency key).")
    event_type: EventType
    user_id: Id
    item_id: Id
    event_time: AwareDatetime | None = Field(
        None, description="When it happened (ISO 8601 with a zone); default: when the API received it."
    )
    quantity: int | None = Field(None, ge=1, le=100_000)
    unit_price: float | None = Field(None, ge=0, le=1e9)
    request_id: Id | None = Field(
        None, description="The recommendations response (its request_id) this event responds to, if any."
    )

    @field_validator("event_time")
    @classmethod
    def _not_in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + MAX_FUTURE:
            raise ValueError(f"event_time is more than {MAX_FUTURE.seconds // 60} minutes in the future")
        return value


class EventBatch(BaseModel):
    """Up to :data:`MAX_BATCH` events, appended all or none."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class Accepted(BaseModel):
    """The 202 answer: the events are in the stream (durable as Redis's AOF is)."""

    accepted: int
    stream_ids: list[str] = Field(description="Redis entry id of each event, in the order sent.")


@dataclass(frozen=True)
class StreamLayout:
    """The Redis key names of one deployment's event stream."""

    namespace: str

    @property
    def stream(self) -> str:
        return f"{self.namespace}:events"

    @property
    def stats(self) -> str:
        """Hash of the worker's running totals (processed, duplicates, rejected, batches)."""
        return f"{self.namespace}:worker_stats"


def stream_layout(db_prefix: str) -> StreamLayout:
    return StreamLayout(f"{db_prefix}:stream")


def encode(event: EventIn, received_at: datetime) -> dict[bytes, bytes]:
    """The stream entry of ``event`` (its time defaults to ``received_at``)."""
    body: dict[str, Any] = event.model_dump(exclude_none=True)
    body["event_time"] = (event.event_time or received_at).isoformat()
    body["received_at"] = received_at.isoformat()
    return {ENTRY_FIELD: json.dumps(body, separators=(",", ":")).encode()}


def decode(fields: dict[bytes, bytes] | None) -> dict[str, Any]:
    """The event of a stream entry, validated again (the stream may have other writers).

    Raises ``ValueError`` saying what is wrong with it.
    """
    if not fields or ENTRY_FIELD not in fields:
        raise ValueError(f"entry has no {ENTRY_FIELD.decode()!r} field")
    body = json.loads(fields[ENTRY_FIELD])
    if not isinstance(body, dict) or not isinstance(body.get("received_at"), str):
        raise ValueError("entry is not a JSON object with received_at")
    received_at = datetime.fromisoformat(body.pop("received_at"))
    event = EventIn.model_validate(body)
    return {**event.model_dump(), "received_at": received_at}
