"""The stream's entry format, the worker's parsing of a micro-batch, and the aggregated session state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from recomart.features.session import EVENT_TYPES, SessionEvent, SessionState, fold_events
from recomart.stream.batch import Entry, parse_entries
from recomart.stream.events import ENTRY_FIELD, EventBatch, EventIn, EventType, decode, encode
from recomart.stream.exposures import EXPOSURE_FIELD, encode_exposure
from recomart.stream.lag import _after

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _event(**fields) -> EventIn:
    return EventIn(**{"event_id": "e1", "event_type": "view", "user_id": "u1", "item_id": "i1", **fields})


def test_event_types_are_the_session_contracts() -> None:
    assert set(EventType.__args__) == set(EVENT_TYPES)


def test_entry_round_trip_fills_the_time_with_the_servers() -> None:
    fields = encode(_event(), received_at=T0)
    decoded = decode(fields)
    assert decoded["event_time"] == T0 and decoded["received_at"] == T0
    assert decode(encode(_event(event_time=T0 - timedelta(hours=1)), T0))["event_time"] == T0 - timedelta(hours=1)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"event_type": "click"}, "event_type"),
        ({"event_time": "2026-01-05T12:00:00"}, "timezone"),
        ({"event_time": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "in the future"),
        ({"user_id": ""}, "user_id"),
        ({"color": "red"}, "Extra inputs"),
        ({"quantity": 0}, "quantity"),
    ],
)
def test_schema_names_the_failing_field(fields: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        EventIn.model_validate({"event_id": "e", "event_type": "view", "user_id": "u", "item_id": "i", **fields})


def test_batch_holds_at_most_1000() -> None:
    event = {"event_id": "e", "event_type": "view", "user_id": "u", "item_id": "i"}
    assert len(EventBatch.model_validate({"events": [event] * 1000}).events) == 1000
    with pytest.raises(ValidationError, match="at most 1000"):
        EventBatch.model_validate({"events": [event] * 1001})


def test_parse_entries_keeps_the_first_of_an_id_and_rejects_with_a_reason() -> None:
    good = encode(_event(), T0)
    again = encode(_event(item_id="other"), T0)
    entries = [
        Entry("1-0", good),
        Entry("2-0", again),
        Entry("3-0", {ENTRY_FIELD: b"not json"}),
        Entry("4-0", {b"y": b"1"}),
        Entry("5-0", {ENTRY_FIELD: json.dumps({"event_id": "e9", "received_at": T0.isoformat()}).encode()}),
    ]
    parsed = parse_entries(entries)
    assert [(e["event_id"], e["item_id"], e["_stream_id"]) for e in parsed.events] == [("e1", "i1", "1-0")]
    assert [r[0] for r in parsed.rejects] == ["3-0", "4-0", "5-0"]
    assert "no 'e' field" in parsed.rejects[1][2] and "event_type" in parsed.rejects[2][2]
    assert parsed.exposures == []


def test_exposure_entries_are_their_own_kind_once_per_request() -> None:
    shown = {"request_id": "r1", "user_id": "u1", "item_ids": ["i2", "i1"], "served_at": T0.isoformat()}
    entries = [
        Entry("1-0", encode_exposure({**shown, "experiment": "ab", "variant": "hybrid", "generation_id": 3})),
        Entry("2-0", encode_exposure({**shown, "item_ids": ["other"]})),
        Entry("3-0", encode_exposure({"request_id": "r2", "user_id": "u1", "item_ids": []})),
        Entry("4-0", {EXPOSURE_FIELD: b"[1]"}),
        Entry("5-0", encode(_event(request_id="r1"), T0)),
    ]
    parsed = parse_entries(entries)
    assert [(x["request_id"], x["item_ids"], x["variant"], x["_stream_id"]) for x in parsed.exposures] == [
        ("r1", ["i2", "i1"], "hybrid", "1-0")
    ]
    assert parsed.exposures[0]["served_at"] == T0
    assert [r[0] for r in parsed.rejects] == ["3-0", "4-0"]
    assert "served_at" in parsed.rejects[0][2] and parsed.rejects[0][3] == "u1"
    assert "not a JSON object" in parsed.rejects[1][2]
    assert [(e["event_id"], e["request_id"]) for e in parsed.events] == [("e1", "r1")]


def test_aggregated_state_equals_the_folded_one() -> None:
    """What the worker's SQL returns, given to from_aggregates, has the features the Python fold has."""
    events = [SessionEvent("u", f"i{n % 7}", EVENT_TYPES[n % 3], T0 + timedelta(minutes=n * 3)) for n in range(30)]
    folded = fold_events(events)["u"]
    last = max(e.event_time for e in events)
    recent: dict[str, dict[str, datetime]] = {}
    for e in events:
        per_type = recent.setdefault(e.event_type, {})
        per_type[e.item_id] = max(per_type.get(e.item_id, e.event_time), e.event_time)
    window = {
        t: sorted(
            (e.event_time for e in events if e.event_type == t and e.event_time > last - timedelta(minutes=30)),
            reverse=True,
        )
        for t in EVENT_TYPES
    }
    aggregated = SessionState.from_aggregates(
        {t: sorted(items.items(), key=lambda p: p[1], reverse=True) for t, items in recent.items()}, window, last
    )
    assert aggregated.features() == folded.features()


def test_trim_bound_is_the_next_id() -> None:
    assert _after("1700000000000-0") == "1700000000000-1"
    assert _after(b"5-41") == "5-42"
