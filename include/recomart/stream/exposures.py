"""Exposures in the event stream: what a recommendations response showed, as its own kind of entry.

The API appends one entry per recommendations response to the same stream as ``POST /v1/events``
(``recomart.stream.events``), with one field ``x`` (events have ``e``): the exposure as compact JSON.
The stream worker loads it into ``raw.exposures`` once per ``request_id`` in the same micro-batch
transaction as the events (:mod:`recomart.stream.batch`); an entry that does not decode is
quarantined with the events' rejects (``quarantine.stream_events``).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from recomart.stream.events import Id

EXPOSURE_FIELD = b"x"
MAX_ITEMS = 100


class ExposureIn(BaseModel):
    """One response: ``item_ids`` in rank order (first = rank 1)."""

    model_config = ConfigDict(extra="forbid")

    request_id: Id
    user_id: Id
    item_ids: list[Id] = Field(max_length=MAX_ITEMS)
    served_at: AwareDatetime
    experiment: Id | None = None
    variant: Id | None = None
    generation_id: int | None = None
    model_version: str | None = Field(None, max_length=200)
    reranker_version: str | None = Field(None, max_length=200)
    strategy: str | None = Field(None, max_length=200)


def encode_exposure(exposure: dict[str, Any]) -> dict[bytes, bytes]:
    """The stream entry of ``exposure`` (the fields of :class:`ExposureIn`; ``served_at`` an ISO text).

    Not validated here (the API's hot path): the worker validates when it decodes."""
    return {EXPOSURE_FIELD: msgspec.json.encode(exposure)}


def decode_exposure(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """The exposure of an entry with field ``x``, validated; raises ``ValueError`` saying what is wrong."""
    body = json.loads(fields[EXPOSURE_FIELD])
    if not isinstance(body, dict):
        raise ValueError("exposure entry is not a JSON object")
    return ExposureIn.model_validate(body).model_dump()
