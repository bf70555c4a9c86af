"""How far the stream worker is behind, and how far the stream may be trimmed (Redis 6.2 commands only).

An entry is *unprocessed* until the group acknowledges it: either pending (delivered to a consumer,
not yet ``XACK``-ed) or not yet delivered (after the group's ``last-delivered-id``). Entry ids are
the Redis server's clock in milliseconds, so the oldest unprocessed id tells how long it has waited.
``XINFO GROUPS``' ``lag`` field arrived only in Redis 7, hence the ``XPENDING`` + ``XRANGE`` below.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from recomart.stream.events import GROUP, StreamLayout


@dataclass(frozen=True)
class Lag:
    """``length``: entries in the stream; ``pending``: delivered, not acknowledged; ``behind_s``: age of
    the oldest unprocessed entry (0 when none); ``group_exists``: whether a worker ever started."""

    length: int
    pending: int
    behind_s: float
    group_exists: bool


def _ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _after(entry_id: bytes | str) -> str:
    """The smallest id after ``entry_id`` (``XTRIM MINID`` keeps ids at or above its argument)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, seq = text.split("-", 1)
    return f"{ms}-{int(seq) + 1}"


def _groups(client: redis.Redis, stream: str) -> list[dict]:
    try:
        return client.xinfo_groups(stream)
    except redis.ResponseError:  # no such key: nothing appended yet
        return []


def _oldest_unprocessed(client: redis.Redis, stream: str, group: dict) -> bytes | None:
    """Id of the group's oldest pending entry, else of its first undelivered one, else None."""
    name = group["name"]
    summary = client.xpending(stream, name)
    if summary["pending"]:
        return summary["min"]
    last = group["last-delivered-id"]
    after = client.xrange(stream, min=f"({last.decode() if isinstance(last, bytes) else last}", count=1)
    return after[0][0] if after else None


def stream_lag(client: redis.Redis, layout: StreamLayout, group_name: str = GROUP) -> Lag:
    """The worker group's lag on ``layout.stream`` (raises ``redis.RedisError`` when Redis is down)."""
    length = client.xlen(layout.stream)
    group = next((g for g in _groups(client, layout.stream) if _text(g["name"]) == group_name), None)
    if group is None:
        first = client.xrange(layout.stream, count=1)
        oldest = first[0][0] if first else None
        pending = 0
    else:
        oldest = _oldest_unprocessed(client, layout.stream, group)
        pending = int(group["pending"])
    if oldest is None:
        return Lag(length, pending, 0.0, group is not None)
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    return Lag(length, pending, max(now_ms - _ms(oldest), 0) / 1000.0, group is not None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def safe_trim_id(client: redis.Redis, stream: str) -> str | None:
    """The ``MINID`` up to which every consumer group has acknowledged everything, or None (trim nothing).

    The minimum over groups of: the oldest pending entry, else the id after the last delivered one.
    Entries delivered after this call have larger ids, so trimming to the result never drops them.
    """
    bounds = []
    for group in _groups(client, stream):
        summary = client.xpending(stream, group["name"])
        bounds.append(_text(summary["min"]) if summary["pending"] else _after(group["last-delivered-id"]))
    if not bounds:
        return None
    return min(bounds, key=lambda entry_id: tuple(int(part) for part in entry_id.split("-", 1)))
