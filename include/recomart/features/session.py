"""The session-feature contract between the stream worker (writer) and the API (reader).

Pure Python (no Feast import): ``feature_repo/session_features.py`` declares the Feast objects
from these names and fields, the stream worker builds its push DataFrame with
:func:`push_frame`, and the API reads the view through :data:`SERVING_FEATURE_SERVICE`.

One row per user and micro-batch: the user's state after the batch's events, keyed by
``user_id`` with ``event_timestamp`` the row's event time. Feast's Redis store skips a write
whose event time, in whole seconds, is not newer than the stored one, so every pushed row of a
user must be at least one second later than the previous one: :func:`next_row_time` gives
that time (the newest event time, or the previous row's time plus one second if that is later).

Fields (lists newest first, at most :data:`RECENT_ITEMS` entries, ``*_at`` aligned with the
``*_item_ids`` list before it; times are UTC):

========================  =====================  =================================================
field                     Feast type             meaning
========================  =====================  =================================================
``viewed_item_ids``       ``Array(String)``      last items viewed (a repeated item moves to the front)
``viewed_at``             ``Array(UnixTimestamp)`` when each was last viewed
``carted_item_ids``       ``Array(String)``      last items added to the cart
``carted_at``             ``Array(UnixTimestamp)``
``bought_item_ids``       ``Array(String)``      last items bought
``bought_at``             ``Array(UnixTimestamp)``
``views_30m``             ``Int64``              view events in the 30 minutes up to ``last_event_at``
``carts_30m``             ``Int64``              add_to_cart events in that window
``purchases_30m``         ``Int64``              purchase events in that window
``last_event_at``         ``UnixTimestamp``      time of the newest event folded in
========================  =====================  =================================================

The 30-minute counts are exact: the state keeps every event time of the window
(:class:`SessionState`), not only the listed ones. Readers wanting counts "as of now" take
the ``*_at`` lists against their own clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SESSION_ENTITY = "user"
SESSION_JOIN_KEY = "user_id"
SESSION_FEATURE_VIEW = "user_session_features"
SESSION_PUSH_SOURCE = "user_session_push"
SESSION_BATCH_SOURCE = "user_session_features_log"
SESSION_LOG_TABLE = "raw.user_session_features"
"""The offline copy of the pushed rows (the push source's batch source; created by the warehouse
migration ``0007_session_feature_log``, columns as :data:`PUSH_COLUMNS`); optional. Feast's
Postgres offline store has no ``offline_write_batch``, so push with ``PushMode.ONLINE`` and,
to keep an offline history, append the same rows to this table yourself."""
SERVING_FEATURE_SERVICE = "serving_v1"
"""What the API reads online: ``user_features`` and ``user_session_features``."""

RECENT_ITEMS = 20
COUNT_WINDOW = timedelta(minutes=30)
SESSION_TTL = timedelta(days=1)
EVENT_TYPES = ("view", "add_to_cart", "purchase")


@dataclass(frozen=True)
class SessionField:
    """One feature of the view: its name, Feast type (``feast.types``), Postgres type (the log
    table's column) and meaning."""

    name: str
    feast_type: str
    pg_type: str
    description: str


SESSION_FIELDS: tuple[SessionField, ...] = (
    SessionField("viewed_item_ids", "Array(String)", "text[]", "Last items viewed, newest first."),
    SessionField("viewed_at", "Array(UnixTimestamp)", "timestamptz[]", "When each of viewed_item_ids was last viewed."),
    SessionField("carted_item_ids", "Array(String)", "text[]", "Last items added to the cart, newest first."),
    SessionField("carted_at", "Array(UnixTimestamp)", "timestamptz[]", "When each of carted_item_ids was last carted."),
    SessionField("bought_item_ids", "Array(String)", "text[]", "Last items bought, newest first."),
    SessionField("bought_at", "Array(UnixTimestamp)", "timestamptz[]", "When each of bought_item_ids was last bought."),
    SessionField("views_30m", "Int64", "bigint", "View events in the 30 minutes up to last_event_at."),
    SessionField("carts_30m", "Int64", "bigint", "Add-to-cart events in the 30 minutes up to last_event_at."),
    SessionField("purchases_30m", "Int64", "bigint", "Purchase events in the 30 minutes up to last_event_at."),
    SessionField("last_event_at", "UnixTimestamp", "timestamptz", "Time of the newest event folded into this row."),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in SESSION_FIELDS)
PUSH_COLUMNS: tuple[str, ...] = (SESSION_JOIN_KEY, "event_timestamp", *FIELD_NAMES)
"""Columns of the push DataFrame, in order."""


_LISTS = {"view": "viewed", "add_to_cart": "carted", "purchase": "bought"}
_COUNTS = {"view": "views_30m", "add_to_cart": "carts_30m", "purchase": "purchases_30m"}


@dataclass(frozen=True)
class SessionEvent:
    """One accepted event as the session state needs it (``event_time`` timezone-aware UTC)."""

    user_id: str
    item_id: str
    event_type: str
    event_time: datetime


@dataclass
class SessionState:
    """A user's session: the recent items per event type and the event times of the count window.

    ``recent[kind]`` is a list of ``(item_id, time)``, newest first, at most ``RECENT_ITEMS``;
    ``window[event_type]`` holds every event time within ``COUNT_WINDOW`` of ``last_event_at``.
    """

    recent: dict[str, list[tuple[str, datetime]]] = field(
        default_factory=lambda: {kind: [] for kind in _LISTS.values()}
    )
    window: dict[str, list[datetime]] = field(default_factory=lambda: {kind: [] for kind in EVENT_TYPES})
    last_event_at: datetime | None = None

    def add(self, event: SessionEvent) -> None:
        """Fold one event in (events may arrive out of order; lists stay sorted newest first)."""
        if event.event_type not in _LISTS:
            raise ValueError(f"unknown event_type {event.event_type!r}; expected one of {', '.join(EVENT_TYPES)}")
        kind = _LISTS[event.event_type]
        entries = [entry for entry in self.recent[kind] if entry[0] != event.item_id]
        previous = next((t for item, t in self.recent[kind] if item == event.item_id), None)
        latest = event.event_time if previous is None else max(previous, event.event_time)
        entries.append((event.item_id, latest))
        entries.sort(key=lambda entry: entry[1], reverse=True)
        self.recent[kind] = entries[:RECENT_ITEMS]
        self.window[event.event_type].append(event.event_time)
        if self.last_event_at is None or event.event_time > self.last_event_at:
            self.last_event_at = event.event_time
        cutoff = self.last_event_at - COUNT_WINDOW
        for event_type, times in self.window.items():
            self.window[event_type] = [t for t in times if t > cutoff]

    @classmethod
    def from_aggregates(
        cls,
        recent: dict[str, list[tuple[str, datetime]]],
        window: dict[str, list[datetime]],
        last_event_at: datetime,
    ) -> SessionState:
        """The state of events aggregated elsewhere (the stream worker's SQL over ``raw.stream_events``).

        ``recent[event_type]``: ``(item_id, last time)`` newest first (cut to ``RECENT_ITEMS``);
        ``window[event_type]``: every event time within ``COUNT_WINDOW`` of ``last_event_at``.
        Folding the same events with :meth:`add` gives the same :meth:`features`.
        """
        state = cls(last_event_at=last_event_at)
        for event_type, kind in _LISTS.items():
            state.recent[kind] = list(recent.get(event_type, []))[:RECENT_ITEMS]
            state.window[event_type] = list(window.get(event_type, []))
        return state

    @classmethod
    def from_features(cls, values: dict[str, object]) -> SessionState:
        """Rebuild a state from a stored row's features (e.g. the online row after a worker restart).

        The lists come back exactly; the count window only from the listed times (an item seen
        twice in the window counts once), so counts right after a rebuild may be lower than exact.
        """
        import pandas as pd

        state = cls()
        for event_type, kind in _LISTS.items():
            items = list(values.get(f"{kind}_item_ids") or [])
            times = [pd.Timestamp(t).to_pydatetime() for t in (values.get(f"{kind}_at") or [])]
            state.recent[kind] = list(zip(items, times, strict=True))
            state.window[event_type] = list(times)
        last = values.get("last_event_at")
        state.last_event_at = None if last is None else pd.Timestamp(last).to_pydatetime()
        if state.last_event_at is not None:
            cutoff = state.last_event_at - COUNT_WINDOW
            state.window = {k: [t for t in v if t > cutoff] for k, v in state.window.items()}
        return state

    def features(self) -> dict[str, object]:
        """The feature values of :data:`SESSION_FIELDS` for this state."""
        values: dict[str, object] = {}
        for kind in _LISTS.values():
            values[f"{kind}_item_ids"] = [item for item, _ in self.recent[kind]]
            values[f"{kind}_at"] = [t for _, t in self.recent[kind]]
        for event_type, name in _COUNTS.items():
            values[name] = len(self.window[event_type])
        values["last_event_at"] = self.last_event_at
        return values


def fold_events(
    events: Iterable[SessionEvent], states: dict[str, SessionState] | None = None
) -> dict[str, SessionState]:
    """Fold ``events`` into per-user states (a new dict, or ``states`` updated in place); returns it."""
    states = {} if states is None else states
    for event in events:
        states.setdefault(event.user_id, SessionState()).add(event)
    return states


def next_row_time(last_event_at: datetime, previous_row_time: datetime | None) -> datetime:
    """The ``event_timestamp`` of a user's next pushed row: ``last_event_at``, or one second after
    the previous row's if that is later (Feast's Redis store keeps only strictly newer seconds)."""
    if previous_row_time is None:
        return last_event_at
    return max(last_event_at, previous_row_time + timedelta(seconds=1))


def push_frame(rows: Sequence[tuple[str, datetime, SessionState]]) -> pd.DataFrame:
    """The DataFrame to ``store.push(SESSION_PUSH_SOURCE, frame, to=PushMode.ONLINE)``.

    ``rows`` are ``(user_id, event_timestamp, state)``, one per user (see :func:`next_row_time`).
    Columns are :data:`PUSH_COLUMNS`; times are timezone-aware UTC.
    """
    import pandas as pd

    records = [{SESSION_JOIN_KEY: user_id, "event_timestamp": at, **state.features()} for user_id, at, state in rows]
    frame = pd.DataFrame.from_records(records, columns=list(PUSH_COLUMNS))
    for column in ("event_timestamp", "last_event_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame
