"""The dashboard's calls to the RecoMart API it is served by, over HTTP on the server's own address.

The customer page shows the list a storefront gets (``GET /v1/users/{id}/recommendations``), the
search box what a shopper finds (``GET /v1/search``); the "what if" box posts a view through
``POST /v1/events`` with the deployment's API key, which stays in this process: the browser only
talks to the dashboard, behind its login.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from recomart.stream.intake import API_KEY_HEADER, EVENTS_PATH, PREVIEW_HEADER

TIMEOUT_S = 5.0
WHATIF_WAIT_S = 3.0
POLL_S = 0.1
SEARCH_K = 20


@dataclass(frozen=True)
class WhatIf:
    """A posted view and the list before it and after the speed layer took it in."""

    item_id: str
    before: dict[str, Any]
    after: dict[str, Any]
    seconds: float
    changed: bool


def _order(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body.get("items", [])]


class ApiClient:
    """An async HTTP client of the API at ``base_url`` holding the events API key."""

    def __init__(self, key: str) -> None:
        self._key = key
        self._client = httpx.AsyncClient(timeout=TIMEOUT_S)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def recommendations(self, base_url: str, user_id: str, k: int = 10) -> dict[str, Any]:
        """The API's response for the user; ``{"error": ...}`` when it answers with an error."""
        try:
            response = await self._client.get(
                f"{base_url}/v1/users/{user_id}/recommendations",
                params={"k": k},
                headers={API_KEY_HEADER: self._key, PREVIEW_HEADER: "1"},  # a preview: not an exposure
            )
        except httpx.HTTPError as exc:
            return {"error": f"the API did not answer: {exc}"}
        if response.status_code != 200:
            return {"error": f"the API answered {response.status_code}: {response.text[:300]}"}
        return response.json()

    async def search(self, base_url: str, query: str, k: int = SEARCH_K) -> dict[str, Any]:
        """The API's ``GET /v1/search`` response for ``query`` (which index answered, the hits);
        ``{"error": ...}`` when it answers with an error (503 while its index is not built yet)."""
        try:
            response = await self._client.get(f"{base_url}/v1/search", params={"q": query, "k": k})
        except httpx.HTTPError as exc:
            return {"error": f"the API did not answer: {exc}"}
        if response.status_code != 200:
            return {"error": f"the API answered {response.status_code}: {response.text[:300]}"}
        return response.json()

    async def post_view(self, base_url: str, user_id: str, item_id: str) -> None:
        """Post one view event (raises ``httpx.HTTPStatusError`` when the API refuses it)."""
        event = {
            "event_id": f"dashboard-{uuid.uuid4().hex}",
            "event_type": "view",
            "user_id": user_id,
            "item_id": item_id,
        }
        response = await self._client.post(f"{base_url}{EVENTS_PATH}", json=event, headers={API_KEY_HEADER: self._key})
        response.raise_for_status()

    async def what_if(self, base_url: str, user_id: str, item_id: str, k: int = 10) -> WhatIf:
        """Post a view of ``item_id`` by ``user_id`` and poll the list until the session moved it
        (more fresh events used, or another order), for up to :data:`WHATIF_WAIT_S` seconds."""
        before = await self.recommendations(base_url, user_id, k)
        began = time.monotonic()
        await self.post_view(base_url, user_id, item_id)
        after = before
        while time.monotonic() - began < WHATIF_WAIT_S:
            await asyncio.sleep(POLL_S)
            after = await self.recommendations(base_url, user_id, k)
            moved = after.get("fresh_events_used", 0) != before.get("fresh_events_used", 0)
            if moved or _order(after) != _order(before):
                return WhatIf(item_id, before, after, time.monotonic() - began, True)
        return WhatIf(item_id, before, after, time.monotonic() - began, False)
