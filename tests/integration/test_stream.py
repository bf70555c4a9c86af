"""The speed layer with real processes: uvicorn (2 workers), the stream worker, embedded Postgres and Redis, Feast.

``POST /v1/events`` appends to the Redis Stream; ``python -m recomart.cli stream`` (what ``./recomart
stream`` runs) loads each event once into ``raw.stream_events`` and pushes the users' session rows
through Feast. Checked: exactly once in the table and in the features (repeats, a ``kill -9`` of the
worker mid-flow, a Postgres outage), two events of a user in one second, 503 when Redis is down or
the stream is at its cap, clear 4xx for bad input with nothing written, and a trim that never drops
an unacknowledged entry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from recomart import local_postgres, local_redis, services
from recomart.config import Settings, load_settings
from recomart.credentials import persistent_secret, secrets_dir
from recomart.features import apply
from recomart.ingest.erasure import KEY_FILE, key_id, new_erasure_key, read_erasure_key, user_key
from recomart.serving.server import server_env, uvicorn_args
from recomart.stream.events import ENTRY_FIELD, GROUP, stream_layout
from recomart.stream.intake import api_key
from recomart.stream.lag import safe_trim_id
from recomart.stream.worker import worker_args
from recomart.tools import tool_env

pytestmark = pytest.mark.integration

STREAM_CAP = 5000


@pytest.fixture(scope="module")
def deployment(free_port: Callable[[], int]) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Private embedded Postgres and Redis (the tests stop them) and Feast's registry."""
    folder = Path(tempfile.mkdtemp(prefix="recomart-stream-"))
    overrides = {
        "RECOMART_STATE_DIR": str(folder),
        "RECOMART_PG_URL": "",
        "RECOMART_REDIS_URL": "",
        "RECOMART_EMBEDDED_PG_PORT": str(free_port()),
        "RECOMART_EMBEDDED_REDIS_PORT": str(free_port()),
        "RECOMART_API_PORT": str(free_port()),
        "RECOMART_DB_PREFIX": "strm",
        "RECOMART_FEAST_PROJECT": "strm",
        "RECOMART_MODEL_NAME": "strm_model",
        "RECOMART_STREAM_MAX_LEN": str(STREAM_CAP),
        "RECOMART_STREAM_CLAIM_IDLE_S": "2",
    }
    s = load_settings({**os.environ, **overrides})
    try:
        services.ensure_services(s)
        apply(s.feature_repo_dir, tool_env(s))
        yield s, overrides
    finally:
        services.stop_embedded(s)
        shutil.rmtree(folder, ignore_errors=True)


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        with contextlib.suppress(httpx.HTTPError, psycopg.Error, redis.RedisError):
            if condition():
                return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout_s} s for {what}")


@pytest.fixture(scope="module")
def api(deployment) -> Iterator[httpx.Client]:
    s, overrides = deployment
    env = {**server_env(s, s.api_port), **overrides}
    log = (s.state_dir / "api.log").open("w")
    process = subprocess.Popen(
        uvicorn_args(s, "127.0.0.1", s.api_port, 2), env=env, stdout=log, stderr=subprocess.STDOUT
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{s.api_port}", timeout=10, headers={"X-API-Key": api_key(s)})
    try:
        _wait(lambda: client.get("/healthz").status_code == 200, 90, "the API")
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)
        log.close()
        print((s.state_dir / "api.log").read_text()[-3000:], file=sys.stderr)


class Worker:
    """The stream worker as a real process (restartable; killed with SIGKILL on demand)."""

    def __init__(self, s: Settings, overrides: dict[str, str]) -> None:
        self.s, self.env = s, {**tool_env(s), **overrides}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.s.state_dir / "worker.log").open("a")
        self.process = subprocess.Popen(worker_args(), env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@contextlib.contextmanager
def running_worker(deployment: tuple[Settings, dict[str, str]]) -> Iterator[Worker]:
    """A started stream :class:`Worker` of ``deployment``; stopped at the end, its log's tail printed."""
    s, overrides = deployment
    running = Worker(s, overrides)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        print((s.state_dir / "worker.log").read_text()[-4000:], file=sys.stderr)


@pytest.fixture(scope="module")
def worker(deployment) -> Iterator[Worker]:
    with running_worker(deployment) as running:
        yield running


def _event(user: str, item: str, kind: str = "view", at: datetime | None = None) -> dict:
    event = {"event_id": uuid.uuid4().hex, "event_type": kind, "user_id": user, "item_id": item}
    if at is not None:
        event["event_time"] = at.isoformat()
    return event


def _stored(s: Settings, event_ids: list[str]) -> Counter:
    with psycopg.connect(s.warehouse_url) as conn:
        rows = conn.execute("select event_id from raw.stream_events where event_id = any(%s)", (event_ids,))
        return Counter(row[0] for row in rows)


def _session(api: httpx.Client, user: str) -> dict:
    body = api.get(f"/v1/users/{user}/features").json()
    return body["views"]["user_session_features"]


def _counts(api: httpx.Client, user: str) -> int:
    row = _session(api, user)
    if not row["found"]:
        return 0
    features = row["features"]
    return features["views_30m"] + features["carts_30m"] + features["purchases_30m"]


def test_accepted_events_are_stored_and_featured_exactly_once(api, deployment, worker) -> None:
    s, _ = deployment
    now = datetime.now(UTC)
    events = [_event(f"ua{n % 5}", f"i{n}", ("view", "add_to_cart", "purchase")[n % 3], now) for n in range(30)]
    first = api.post("/v1/events", json={"events": events})
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == 30 and len(first.json()["stream_ids"]) == 30
    repeat = api.post("/v1/events", json={"events": events[:10]})  # a client retry: accepted, processed once
    single = api.post("/v1/events", json=events[0])
    assert repeat.status_code == 202 and single.status_code == 202
    ids = [e["event_id"] for e in events]
    _wait(lambda: sum(_stored(s, ids).values()) == 30, 30, "30 rows in raw.stream_events")
    expected = Counter(e["user_id"] for e in events)
    _wait(lambda: all(_counts(api, u) == n for u, n in expected.items()), 30, "the session counts")
    time.sleep(1.5)  # the repeats are processed after the originals; nothing may change
    assert _stored(s, ids) == Counter(ids)
    assert all(_counts(api, u) == n for u, n in expected.items())
    row = _session(api, "ua0")
    assert row["freshness"] == "fresh"
    assert set(row["features"]["viewed_item_ids"]) == {
        e["item_id"] for e in events if e["user_id"] == "ua0" and e["event_type"] == "view"
    }
    with psycopg.connect(s.warehouse_url) as conn:
        read, loaded, rejected = conn.execute(
            "select sum(records_read), sum(records_loaded), sum(records_rejected) from ops.loaded_files"
            " where feed = 'stream_events' and not is_live"
        ).fetchone()
    assert loaded >= 30 and rejected == 0 and read - loaded >= 11  # the 11 repeats were dropped and counted


def test_two_events_of_a_user_in_one_second_both_land(api, worker) -> None:
    at = datetime.now(UTC).replace(microsecond=100_000)
    assert api.post("/v1/events", json=_event("us1", "first", "view", at)).status_code == 202
    _wait(lambda: _session(api, "us1")["features"].get("viewed_item_ids") == ["first"], 20, "the first event")
    later = at + timedelta(milliseconds=400)  # the same second: Feast keeps a row only if its second is newer
    assert api.post("/v1/events", json=_event("us1", "second", "purchase", later)).status_code == 202
    _wait(lambda: _session(api, "us1")["features"].get("bought_item_ids") == ["second"], 20, "the second event")
    features = _session(api, "us1")["features"]
    assert features["viewed_item_ids"] == ["first"] and (features["views_30m"], features["purchases_30m"]) == (1, 1)


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (b'{"event_id": "x", ', {}, 422, "JSON decode error"),
        (b'{"event_id":"x","event_type":"click","user_id":"u","item_id":"i"}', {}, 422, "event_type"),
        (b'{"event_id":"x","event_type":"view","user_id":"u"}', {}, 422, "item_id"),
        (
            b'{"event_id":"x","event_type":"view","user_id":"u","item_id":"i","event_time":"2020-01-01T00:00:00"}',
            {},
            422,
            "timezone",
        ),
        (None, {}, 422, "at most 1000"),
        (
            b'{"event_id":"x","event_type":"view","user_id":"u","item_id":"i"}',
            {"X-API-Key": ""},
            401,
            "missing X-API-Key",
        ),
        (
            b'{"event_id":"x","event_type":"view","user_id":"u","item_id":"i"}',
            {"X-API-Key": "guess"},
            403,
            "not this deployment",
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_writes_nothing(api, deployment, body, headers, status, needle) -> None:
    s, _ = deployment
    client = redis.Redis.from_url(s.redis_url)
    key = stream_layout(s.db_prefix).stream
    before = client.xinfo_stream(key)["last-generated-id"]  # the worker may trim meanwhile: not XLEN
    if body is None:  # an oversized batch: 1,001 valid events
        body = httpx.Request("POST", "/", json={"events": [_event("u", "i") for _ in range(1001)]}).content
    response = api.post("/v1/events", content=body, headers={"Content-Type": "application/json", **headers})
    assert response.status_code == status, response.text
    assert needle in response.text
    assert client.xinfo_stream(key)["last-generated-id"] == before
    scraped = api.get("/metrics").text
    assert "recomart_api_event_requests_rejected_total" in scraped and "recomart_stream_lag_seconds" in scraped


def test_worker_killed_mid_flow_loses_and_doubles_nothing(api, deployment, worker) -> None:
    s, _ = deployment
    accepted: list[dict] = []
    stop = threading.Event()
    now = datetime.now(UTC)

    def send() -> None:
        n = 0
        with httpx.Client(base_url=str(api.base_url), headers=dict(api.headers), timeout=10) as client:
            while not stop.is_set() and n < 60:
                batch = [_event(f"uk{(n * 25 + k) % 20}", f"k{k}", "view", now) for k in range(25)]
                if client.post("/v1/events", json={"events": batch}).status_code == 202:
                    accepted.extend(batch)
                n += 1
                time.sleep(0.05)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1.0)
    worker.kill()  # SIGKILL mid-flow: its delivered, unacknowledged entries stay pending
    pending = redis.Redis.from_url(s.redis_url).xpending(stream_layout(s.db_prefix).stream, GROUP)["pending"]
    time.sleep(1.0)
    worker.start()  # a new consumer: it reclaims them with XAUTOCLAIM once idle for 2 s
    sender.join()
    ids = [e["event_id"] for e in accepted]
    assert len(ids) == len(set(ids)) >= 500
    _wait(lambda: sum(_stored(s, ids).values()) == len(ids), 60, f"{len(ids)} events stored")
    assert set(_stored(s, ids).values()) == {1}
    expected = Counter(e["user_id"] for e in accepted)
    _wait(lambda: all(_counts(api, u) == n for u, n in expected.items()), 30, "every event once in the features")
    if pending:  # the kill hit a batch in flight (usually): the new consumer must have reclaimed it
        assert "reclaimed" in (s.state_dir / "worker.log").read_text()
    print(f"killed with {pending} entries pending; {len(ids)} events accepted")


def test_postgres_outage_is_waited_out_without_loss(api, deployment, worker) -> None:
    s, _ = deployment
    local_postgres.stop(s)
    try:
        events = [_event("up1", f"p{n}", "view", datetime.now(UTC)) for n in range(20)]
        assert api.post("/v1/events", json={"events": events}).status_code == 202
        time.sleep(3)  # the worker fails and retries its batch meanwhile
    finally:
        local_postgres.start(s)
    ids = [e["event_id"] for e in events]
    _wait(lambda: _stored(s, ids) == Counter(ids), 60, "the batch after Postgres returned")
    _wait(lambda: _counts(api, "up1") == 20, 30, "the features after Postgres returned")


def test_redis_down_answers_503_then_recovers(api, deployment, worker) -> None:
    s, _ = deployment
    local_redis.stop(s, hard=True)
    try:
        response = api.post("/v1/events", json=_event("ur1", "x"))
        assert response.status_code == 503 and "Redis unavailable" in response.json()["detail"]
        assert response.headers["Retry-After"] == "1"
    finally:
        local_redis.start(s)
    event = _event("ur1", "y", at=datetime.now(UTC))
    _wait(lambda: api.post("/v1/events", json=event).status_code == 202, 20, "202 after Redis returned")
    _wait(lambda: _stored(s, [event["event_id"]])[event["event_id"]] == 1, 60, "the event stored")


def test_backlog_at_the_cap_answers_503_and_drains(api, deployment, worker) -> None:
    s, _ = deployment
    worker.stop()
    accepted: list[str] = []
    try:
        for _ in range(STREAM_CAP // 1000 + 2):
            batch = [_event(f"ub{k % 50}", f"b{k}", "view", datetime.now(UTC)) for k in range(1000)]
            response = api.post("/v1/events", json={"events": batch})
            if response.status_code == 503:
                break
            assert response.status_code == 202
            accepted += [e["event_id"] for e in batch]
        assert response.status_code == 503 and "the stream worker is behind" in response.json()["detail"]
    finally:
        worker.start()
    _wait(lambda: sum(_stored(s, accepted).values()) == len(accepted), 120, "the backlog drained")
    client = redis.Redis.from_url(s.redis_url)
    _wait(lambda: client.xlen(stream_layout(s.db_prefix).stream) < 1000, 30, "the stream trimmed")
    assert api.post("/v1/events", json=_event("ub0", "after")).status_code == 202


def test_events_of_an_erased_user_stay_out(api, deployment, worker) -> None:
    """``forget user`` lists the user's keyed hash; the worker leaves their later events out and counts them."""
    s, _ = deployment
    key = bytes.fromhex(persistent_secret(secrets_dir(s.state_dir) / KEY_FILE, new_erasure_key))
    with psycopg.connect(s.warehouse_url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.erased_users (user_key, key_id, erasure_id) values (%s, %s, 1)",
            (user_key(key, "gone"), key_id(key)),
        )
    erased, kept = _event("gone", "x", at=datetime.now(UTC)), _event("stays", "x", at=datetime.now(UTC))
    assert api.post("/v1/events", json={"events": [erased, kept]}).status_code == 202
    _wait(lambda: _stored(s, [kept["event_id"]])[kept["event_id"]] == 1, 30, "the other user's event")
    assert _stored(s, [erased["event_id"]]) == Counter()
    with psycopg.connect(s.warehouse_url) as conn:
        assert (
            conn.execute("select sum(records_erased) from ops.loaded_files where feed = 'stream_events'").fetchone()[0]
            == 1
        )
    assert not _session(api, "gone")["found"]


def _payload_user(raw_record: str | None) -> str | None:
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        return json.loads(raw_record).get("user_id")
    return None


def _user_rows(s: Settings, user: str) -> dict[str, int]:
    """The user's rows in the stream's tables (quarantined entries: by their JSON payload's user_id)."""
    with psycopg.connect(s.warehouse_url) as conn:
        counts = {
            table: conn.execute(f"select count(*) from {table} where user_id = %s", (user,)).fetchone()[0]
            for table in ("raw.stream_events", "raw.stream_session_clock")
        }
        raws = conn.execute("select raw_record from quarantine.stream_events").fetchall()
    counts["quarantine.stream_events"] = sum(_payload_user(raw) == user for (raw,) in raws)
    return counts


def test_forget_user_removes_their_stream_rows_and_quarantined_entries(api, deployment, worker) -> None:
    """``./recomart forget user`` (a child process, as a user runs it) deletes the user's stream events,
    session clock, session features and quarantined entries; a user whose id contains theirs keeps all."""
    s, overrides = deployment
    user, lookalike = "forget-me", "forget-me-not"
    events = [_event(who, item, at=datetime.now(UTC)) for who in (user, lookalike) for item in ("a", "b")]
    assert api.post("/v1/events", json={"events": events}).status_code == 202
    client = redis.Redis.from_url(s.redis_url)
    for who in (user, lookalike):  # entries another writer put on the stream: valid JSON, no such event type
        bad = {**_event(who, "c", "teleport"), "received_at": datetime.now(UTC).isoformat()}
        client.xadd(stream_layout(s.db_prefix).stream, {ENTRY_FIELD: json.dumps(bad).encode()})
    client.xadd(stream_layout(s.db_prefix).stream, {ENTRY_FIELD: f'not json "user_id":"{user}"'.encode()})
    expected = {"raw.stream_events": 2, "raw.stream_session_clock": 1, "quarantine.stream_events": 1}
    _wait(lambda: _user_rows(s, user) == expected == _user_rows(s, lookalike), 30, "the events stored")
    _wait(lambda: _session(api, user)["found"], 30, "the session features")
    command = [sys.executable, "-m", "recomart.cli", "forget", "user", user, "--reason", "stream test"]
    done = subprocess.run(command, env={**tool_env(s), **overrides}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _user_rows(s, user) == dict.fromkeys(expected, 0)
    assert _user_rows(s, lookalike) == expected
    assert not _session(api, user)["found"] and _session(api, lookalike)["found"]
    with psycopg.connect(s.warehouse_url) as conn:
        unparsed = conn.execute(
            "select count(*) from quarantine.stream_events where raw_record = %s", (f'not json "user_id":"{user}"',)
        ).fetchone()[0]
        counts = conn.execute("select counts from ops.erasures where reason = 'stream test'").fetchone()[0]
    assert unparsed == 1  # names no user: kept (README, forget user)
    assert counts["raw.stream_events"] == 2 and counts["quarantine.stream_events"] == 1


def test_simulator_sends_shop_behaviour_that_lands_once(api, deployment, worker) -> None:
    """``./recomart simulate`` (3 s at 100 events/s): the generated shop's users and items, each event stored once."""
    s, overrides = deployment
    command = [sys.executable, "-m", "recomart.cli", "simulate", "--rate", "100", "--minutes", "0.05"]
    done = subprocess.run(command, env={**tool_env(s), **overrides}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["refused"] == 0 and 250 <= summary["accepted"] <= 310, summary
    with psycopg.connect(s.warehouse_url) as conn:

        def stored() -> int:
            return conn.execute("select count(*) from raw.stream_events where event_id like 'sim-%'").fetchone()[0]

        _wait(lambda: stored() == summary["accepted"], 60, "the simulated events stored")
        users = conn.execute("select count(distinct user_id) from raw.stream_events where event_id like 'sim-%'")
        assert users.fetchone()[0] > 20  # many shoppers, not one


def test_trim_never_passes_an_unacknowledged_entry(deployment) -> None:
    s, _ = deployment
    client = redis.Redis.from_url(s.redis_url)
    key = f"{s.db_prefix}:stream:trimtest"
    client.delete(key)
    ids = [client.xadd(key, {"n": str(n)}) for n in range(5)]
    client.xgroup_create(key, GROUP, id="0")
    client.xreadgroup(GROUP, "a", {key: ">"}, count=2)  # ids[0], ids[1] delivered
    client.xack(key, GROUP, ids[0])  # ids[1] stays pending
    assert safe_trim_id(client, key) == ids[1].decode()
    client.xtrim(key, minid=safe_trim_id(client, key), approximate=False)
    assert [entry_id for entry_id, _ in client.xrange(key)] == ids[1:]
    client.xack(key, GROUP, ids[1])
    client.xtrim(key, minid=safe_trim_id(client, key), approximate=False)
    assert [entry_id for entry_id, _ in client.xrange(key)] == ids[2:]  # delivered and acknowledged: gone
    client.delete(key)


def test_a_micro_batch_times_each_step_of_its_transaction(deployment) -> None:
    """store_batch splits its seconds by step (the worker's per-step counters, read by the serving
    benchmark to tell where freshness goes); the steps add up to no more than the whole."""
    from recomart.stream.batch import Entry, store_batch
    from recomart.stream.events import EventIn, encode

    s, _ = deployment
    now = datetime.now(UTC)
    entries = [
        Entry(
            f"{n + 1}-0",
            encode(EventIn(event_id=uuid.uuid4().hex, event_type="view", user_id="up", item_id=f"i{n}"), now),
        )
        for n in range(3)
    ]
    with psycopg.connect(s.warehouse_url) as conn:
        # the key as the worker reads it: an earlier test may have listed erased users in this warehouse
        result = store_batch(conn, "test:phases", entries, read_erasure_key(secrets_dir(s.state_dir)))
    assert result.loaded == 3
    assert list(result.phases) == ["parse", "locks", "events", "exposures", "session", "ledger", "commit"]
    assert all(seconds >= 0 for seconds in result.phases.values())
    assert sum(result.phases.values()) <= result.seconds + 1e-6
