"""One micro-batch of stream entries: into ``raw.stream_events`` (exactly once) and into Feast (session rows).

In one Postgres transaction: COPY the batch into a temporary table, ``insert ... on conflict
(event_id) do nothing`` into ``raw.stream_events`` (redeliveries and re-sent events are dropped and
counted), leave out users erased on request (``ops.erased_users``; also their entries that do not
parse), quarantine entries that do not parse (their JSON payload as sent, and its ``user_id`` when it
has one, for ``forget user``), recompute the session state of every user of the batch from
``raw.stream_events`` (set-based SQL), advance each user's row time (``raw.stream_session_clock``) and append the ledger
row. After the commit the session rows are pushed to the online store. The worker acknowledges the
entries only after both.

The session rows are a function of the events stored, not of what this batch added, so a batch
redelivered after a crash between the commit and the push pushes the same state again (one second
later) and no event counts twice or goes missing in the features.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from recomart.features.session import (
    COUNT_WINDOW,
    RECENT_ITEMS,
    SESSION_PUSH_SOURCE,
    SESSION_TTL,
    SessionState,
    next_row_time,
    push_frame,
)
from recomart.ingest.erasure import read_suppression
from recomart.ingest.feeds import GENERATED_EVENTS
from recomart.ingest.ledger import Attempt, append_attempt
from recomart.stream.events import ENTRY_FIELD, decode
from recomart.stream.exposures import EXPOSURE_FIELD, decode_exposure
from recomart.stream.tables import EXPOSURE_STAGE_DDL, FEED, STAGE_DDL

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

SESSION_BUCKETS = 64
USER_LOCKS = f"""
select count(pg_advisory_xact_lock(hashtextextended('recomart.stream.session', bucket)))
from (select distinct abs(hashtext(u) %% {SESSION_BUCKETS}) as bucket from unnest(%s::text[]) as u order by 1) as b
"""
"""Serialises the batches of workers that share users (by bucket, taken in order: no deadlock), so each
user's session row is computed from every event committed before it and its row time only grows."""
COLUMNS = (
    "event_id", "event_time", "user_id", "item_id", "event_type", "quantity", "unit_price", "received_at",
    "request_id", "_stream_id", "_load_id",
)  # fmt: skip
INSERT_NEW = (
    f"insert into raw.stream_events ({', '.join(COLUMNS)}) select {', '.join(COLUMNS)} from stream_batch"
    " on conflict (event_id) do nothing"
)
EXPOSURE_COLUMNS = (
    "request_id", "user_id", "item_ids", "variant", "experiment", "generation_id", "model_version",
    "reranker_version", "strategy", "served_at", "_stream_id", "_load_id",
)  # fmt: skip
INSERT_NEW_EXPOSURES = (
    f"insert into raw.exposures ({', '.join(EXPOSURE_COLUMNS)}) select {', '.join(EXPOSURE_COLUMNS)}"
    " from stream_exposure_batch on conflict (request_id) do nothing"
)
LAST_EVENTS = """
select u.user_id, l.last_at, c.row_time
from unnest(%(users)s::text[]) as u (user_id)
cross join lateral (
    select max(e.event_time) as last_at from raw.stream_events as e where e.user_id = u.user_id
) as l
left join raw.stream_session_clock as c on u.user_id = c.user_id
where l.last_at is not null
"""
"""Each user's last event time and last row time. Every session query walks the ``(user_id, event_time)``
index once per user of the batch (``lateral``): a join on the users' list let the planner scan the whole
table, whose cost grew with every event the stream ever stored."""
USER_SPANS = """
select u.user_id, e.event_type, e.item_id, e.event_time
from unnest(%(users)s::text[], %(last)s::timestamptz[]) as u (user_id, last_at)
cross join lateral (
    select s.event_type, s.item_id, s.event_time from raw.stream_events as s
    where s.user_id = u.user_id and s.event_time > u.last_at - %(span)s
) as e
"""
RECENT_LISTS = f"""
with items as (
    select user_id, event_type, item_id, max(event_time) as at from ({USER_SPANS}) as spans group by 1, 2, 3
),
ranked as (
    select *, row_number() over (partition by user_id, event_type order by at desc, item_id) as rn from items
)
select user_id, event_type, array_agg(item_id order by rn), array_agg(at order by rn)
from ranked where rn <= %(recent)s group by 1, 2
"""
WINDOW_TIMES = f"""
select user_id, event_type, array_agg(event_time order by event_time desc) from ({USER_SPANS}) as spans group by 1, 2
"""
ADVANCE_CLOCK = """
insert into raw.stream_session_clock (user_id, row_time)
select * from unnest(%(users)s::text[], %(times)s::timestamptz[])
on conflict (user_id) do update set row_time = excluded.row_time
"""


@dataclass(frozen=True)
class Entry:
    """One stream entry: its id and fields (None for an entry trimmed while pending)."""

    stream_id: str
    fields: dict[bytes, bytes] | None


STORE_PHASES = ("parse", "locks", "events", "exposures", "session", "ledger", "commit")
"""The steps of :func:`store_batch` timed in :attr:`BatchResult.phases`, in order."""


@dataclass(frozen=True)
class BatchResult:
    """What one micro-batch did (``frame``: the session rows to push, one per user; ``loaded`` counts
    events and exposures, ``exposures`` the exposures among them)."""

    load_id: str
    read: int
    loaded: int
    duplicates: int
    rejected: int
    erased: int
    frame: pd.DataFrame
    seconds: float
    exposures: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds of each of :data:`STORE_PHASES`: ``locks`` are the user buckets and erasures, ``session``
    the session rows."""

    @property
    def users(self) -> int:
        return len(self.frame)


RAW_RECORD_CHARS = 10_000
"""A quarantined entry keeps at most this much of its payload (its user is read from all of it)."""
Reject = tuple[str, str | None, str, str | None]
"""A quarantined entry: ``(stream id, raw record, reason, user id or None)``."""


def _reject(entry: Entry, reason: str) -> Reject:
    """The quarantine row of ``entry``: its JSON payload as sent (the fields' repr when it has other
    fields) and the payload's ``user_id`` when it parses as an object with a text one (for ``forget user``)."""
    fields = entry.fields
    if fields is None:
        return entry.stream_id, None, reason, None
    if len(fields) != 1 or next(iter(fields)) not in (ENTRY_FIELD, EXPOSURE_FIELD):
        return entry.stream_id, repr(fields)[:RAW_RECORD_CHARS], reason, None
    payload = next(iter(fields.values())).decode("utf-8", "replace")
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    user = body.get("user_id") if isinstance(body, dict) else None
    return entry.stream_id, payload[:RAW_RECORD_CHARS], reason, user if isinstance(user, str) else None


@dataclass(frozen=True)
class Parsed:
    """The entries of a batch by kind: valid events (the first of each ``event_id``), valid exposures
    (the first of each ``request_id``) and the :data:`Reject` rows."""

    events: list[dict[str, Any]]
    exposures: list[dict[str, Any]]
    rejects: list[Reject]


def parse_entries(entries: Sequence[Entry]) -> Parsed:
    """Decode ``entries``: an entry with the field ``x`` is an exposure, any other must be an event."""
    events: dict[str, dict[str, Any]] = {}
    exposures: dict[str, dict[str, Any]] = {}
    rejects = []
    for entry in entries:
        is_exposure = entry.fields is not None and set(entry.fields) == {EXPOSURE_FIELD}
        try:
            record = decode_exposure(entry.fields) if is_exposure else decode(entry.fields)  # type: ignore[arg-type]
        except ValueError as exc:
            rejects.append(_reject(entry, str(exc).replace("\n", " ")[:500]))
            continue
        if is_exposure:
            exposures.setdefault(record["request_id"], {**record, "_stream_id": entry.stream_id})
        else:
            events.setdefault(record["event_id"], {**record, "_stream_id": entry.stream_id})
    return Parsed(list(events.values()), list(exposures.values()), rejects)


def _copy_batch(conn: psycopg.Connection, events: list[dict[str, Any]], load_id: str) -> int:
    """COPY ``events`` into the session's temporary table and insert the new ones; returns how many were new."""
    conn.execute(STAGE_DDL)
    with conn.cursor().copy(f"copy stream_batch ({', '.join(COLUMNS)}) from stdin") as copy:
        for event in events:
            copy.write_row([*(event[c] for c in COLUMNS[:-1]), load_id])
    return conn.execute(INSERT_NEW).rowcount


def _copy_exposures(conn: psycopg.Connection, exposures: list[dict[str, Any]], load_id: str) -> int:
    """COPY ``exposures`` into a temporary table and insert the new ones; returns how many were new."""
    conn.execute(EXPOSURE_STAGE_DDL)
    with conn.cursor().copy(f"copy stream_exposure_batch ({', '.join(EXPOSURE_COLUMNS)}) from stdin") as copy:
        for exposure in exposures:
            copy.write_row([*(exposure[c] for c in EXPOSURE_COLUMNS[:-1]), load_id])
    return conn.execute(INSERT_NEW_EXPOSURES).rowcount


def _quarantine(conn: psycopg.Connection, rejects: list[Reject], load_id: str) -> None:
    with conn.cursor().copy(
        "copy quarantine.stream_events (stream_id, raw_record, reason, user_id, load_id) from stdin"
    ) as copy:
        for stream_id, raw, reason, user in rejects:
            copy.write_row((stream_id, raw, reason, user, load_id))


def session_rows(conn: psycopg.Connection, users: list[str]) -> list[tuple[str, datetime, SessionState]]:
    """``(user, row time, state)`` of ``users`` from every stored event, and their clock advanced."""
    last = conn.execute(LAST_EVENTS, {"users": users}).fetchall()
    spans = {"users": [user for user, _, _ in last], "last": [last_at for _, last_at, _ in last]}
    recent: dict[str, dict[str, list[tuple[str, datetime]]]] = {}
    for user, event_type, items, times in conn.execute(
        RECENT_LISTS, {**spans, "span": SESSION_TTL, "recent": RECENT_ITEMS}
    ):
        recent.setdefault(user, {})[event_type] = list(zip(items, times, strict=True))
    window: dict[str, dict[str, list[datetime]]] = {}
    for user, event_type, times in conn.execute(WINDOW_TIMES, {**spans, "span": COUNT_WINDOW}):
        window.setdefault(user, {})[event_type] = list(times)
    rows = [
        (user, next_row_time(last_at, row_time), SessionState.from_aggregates(recent[user], window[user], last_at))
        for user, last_at, row_time in last
    ]
    conn.execute(ADVANCE_CLOCK, {"users": [r[0] for r in rows], "times": [r[1] for r in rows]})
    return rows


def _leave_out_erased(conn: psycopg.Connection, parsed: Parsed, erasure_key: bytes | None) -> Parsed:
    """``parsed`` without the records of users erased on request (``ops.erased_users``, read under the
    SHARE lock an erasure's insert waits for, as the file loads do); raises ``ErasureKeyError`` when
    users are listed and ``erasure_key`` cannot recognise them (the batch is retried, never loaded
    unfiltered)."""
    conn.execute("lock table ops.erased_users in share mode")
    suppression = read_suppression(conn, erasure_key)
    if not suppression.listed:
        return parsed

    def kept(user: str | None) -> bool:
        return user is None or not suppression.is_erased(GENERATED_EVENTS, user)

    return Parsed(
        [event for event in parsed.events if kept(event["user_id"])],
        [exposure for exposure in parsed.exposures if kept(exposure["user_id"])],
        [reject for reject in parsed.rejects if kept(reject[3])],
    )


def _size(parsed: Parsed) -> int:
    return len(parsed.events) + len(parsed.exposures) + len(parsed.rejects)


class _PhaseClock:
    """Seconds between successive :meth:`lap` calls, by the name of the step that just ended."""

    def __init__(self, start: float) -> None:
        self.last, self.phases = start, {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = now - self.last
        self.last = now


def store_batch(
    conn: psycopg.Connection, stream: str, entries: Sequence[Entry], erasure_key: bytes | None = None
) -> BatchResult:
    """Load ``entries`` into Postgres in one transaction (see the module docstring); nothing is pushed yet."""
    began, started_at = time.perf_counter(), datetime.now(UTC)
    load_id = f"stream-{uuid.uuid4().hex[:16]}"
    clock = _PhaseClock(began)
    parsed = parse_entries(entries)
    clock.lap("parse")
    with conn.transaction():
        conn.execute(USER_LOCKS, (sorted({event["user_id"] for event in parsed.events}),))
        kept = _leave_out_erased(conn, parsed, erasure_key)
        erased = _size(parsed) - _size(kept)
        events, rejects = kept.events, kept.rejects
        clock.lap("locks")
        loaded = _copy_batch(conn, events, load_id) if events else 0
        if rejects:
            _quarantine(conn, rejects, load_id)
        clock.lap("events")
        exposures = _copy_exposures(conn, kept.exposures, load_id) if kept.exposures else 0
        clock.lap("exposures")
        rows = session_rows(conn, sorted({event["user_id"] for event in events})) if events else []
        clock.lap("session")
        attempt = Attempt(
            feed=FEED,
            logical_date=started_at.date(),
            source_file=f"redis:{stream}#{entries[0].stream_id}..{entries[-1].stream_id}",
            status="loaded",
            started_at=started_at,
            load_id=load_id,
            records_read=len(entries),
            records_loaded=loaded + exposures,
            records_rejected=len(rejects),
            records_erased=erased,
            replaces=False,
        )
        append_attempt(conn, attempt)
        clock.lap("ledger")
    clock.lap("commit")
    duplicates = len(entries) - len(rejects) - erased - loaded - exposures
    seconds = time.perf_counter() - began
    return BatchResult(
        load_id, len(entries), loaded + exposures, duplicates, len(rejects), erased, push_frame(rows), seconds,
        exposures, clock.phases,
    )  # fmt: skip


def push_sessions(store: FeatureStore, frame: pd.DataFrame) -> None:
    """Push the session rows to the online store through the push source (no-op for an empty frame)."""
    if frame.empty:
        return
    from feast.data_source import PushMode

    store.push(SESSION_PUSH_SOURCE, frame, to=PushMode.ONLINE)
