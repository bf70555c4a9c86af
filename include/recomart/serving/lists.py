"""Build a recommendations response: nightly list (or cold start), session re-ranking, filters, backfill."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recomart.serving.live import Generation, Model
from recomart.serving.reads import UserList
from recomart.serving.rerank import Ranked, Session, rerank, session_boosts

COLD_START = "popular_cold_start"


@dataclass(frozen=True)
class Filters:
    """The request's filters (``exclude`` item ids; prices inclusive)."""

    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    exclude: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.category or self.min_price is not None or self.max_price is not None or self.exclude)

    def admits(self, product: Sequence[Any] | None) -> bool:
        """True if the catalogue entry ``[title, category, price]`` passes (unknown products never do)."""
        if product is None:
            return False
        _, category, price = product
        if self.category is not None and category != self.category:
            return False
        if self.min_price is not None and (price is None or price < self.min_price):
            return False
        return not (self.max_price is not None and (price is None or price > self.max_price))

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "min_price": self.min_price,
            "max_price": self.max_price,
            "exclude": list(self.exclude),
        }


@dataclass(frozen=True)
class Request:
    user_id: str
    k: int
    filters: Filters
    segment: str | None
    session: Session | None
    weight: float
    now: datetime


def _item(product: Sequence[Any], ranked: Ranked, rank: int, reasons: dict[str, Any], source: str) -> dict[str, Any]:
    """The response's entry of ``ranked`` (``product``: its catalogue entry ``[title, category, price]``)."""
    title, category, price = product
    return {
        "rank": rank,
        "item_id": ranked.item_id,
        "title": title,
        "category": category,
        "price": price,
        "score": round(ranked.score, 6),
        "source": source,
        "reasons": reasons,
    }


def _reasons(ranked: Ranked, user_list: UserList | None, at: int | None) -> dict[str, float]:
    """The item's per-component scores (``at``: its place on the nightly list; None if not on it) and
    its session boost, rounded for the response."""
    reasons = dict(user_list.reasons[at]) if user_list is not None and at is not None else {}
    if ranked.session_boost:
        reasons["session_boost"] = round(ranked.session_boost, 6)
    return reasons


def build_recommendations(
    generation: Generation, user_list: UserList | None, model: Model | None, req: Request
) -> dict[str, Any]:
    """The response body (without ``request_id``) for ``req`` against ``generation``."""
    if user_list is not None:
        items, scores, strategy = user_list.items, user_list.scores, user_list.strategy
        cold_segment, listed_at = None, user_list.places
    else:
        cold_segment, items, scores = generation.cold_start(req.segment)
        strategy, listed_at = COLD_START, {}
    session = req.session
    boosts = session_boosts(session, model.neighbours, req.now) if session and model else {}
    bought = {item for item, _ in session.bought} if session and model and not model.repeat_purchases else set()
    exclude = set(req.filters.exclude) | bought
    ranked = rerank(items, scores, boosts, req.weight if boosts else 0.0, exclude)
    chosen: list[dict[str, Any]] = []
    catalogue, filters = generation.catalogue, req.filters
    filtered = filters.active
    for entry in ranked:
        if len(chosen) == req.k:
            break
        product = catalogue.get(entry.item_id)  # an item the catalogue lacks is never served
        if product is not None and (not filtered or filters.admits(product)):
            at = listed_at.get(entry.item_id)
            source = "nightly" if at is not None or user_list is None else "session"
            reasons = _reasons(entry, user_list, at)
            chosen.append(_item(product, entry, len(chosen) + 1, reasons, source))
    backfilled = _backfill(generation, req, chosen, exclude)
    used = session.events if session and (boosts or bought) else 0
    return {
        "user_id": req.user_id,
        "strategy": strategy,
        "cold_start_segment": cold_segment,
        "reranked": bool(boosts) or bool(bought & set(items)),
        "fresh_events_used": used,
        "generation_id": user_list.generation_id if user_list else generation.generation_id,
        "model_version": generation.model_version,
        "champion_version": model.version if model else None,
        "list_source": user_list.source if user_list else generation.source,
        "filters": req.filters.as_dict(),
        "backfilled": backfilled,
        "items": chosen,
    }


def _backfill(generation: Generation, req: Request, chosen: list[dict[str, Any]], exclude: set[str]) -> int:
    """Top up ``chosen`` to ``k`` from the cold-start lists (segment, then overall); returns how many."""
    if len(chosen) >= req.k:
        return 0
    taken = {item["item_id"] for item in chosen} | exclude
    added = 0
    for segment in dict.fromkeys([req.segment, None]):
        _, items, scores = generation.cold_start(segment)
        for item, score in zip(items, scores, strict=True):
            if len(chosen) == req.k:
                return added
            product = generation.catalogue.get(item)
            if item in taken or not req.filters.admits(product):
                continue
            taken.add(item)
            entry = Ranked(item, float(score), float(score), 0.0)
            chosen.append(_item(product, entry, len(chosen) + 1, {"popularity": round(float(score), 6)}, "backfill"))
            added += 1
    return added
