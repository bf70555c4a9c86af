"""Experiments through the real API: ``experiment create|list`` (CLI), deterministic variants across two
API processes, and exactly one ``raw.exposures`` row per recommendations response, also across a
``kill -9`` of the stream worker.

Two uvicorn processes (one worker each) on private embedded Postgres and Redis, the stream worker
as a real process (``python -m recomart.cli stream``), the generation of ``test_serving``.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from test_serving import USERS, _wait, deployed, live_lists
from test_stream import Worker, running_worker

from recomart.config import Settings
from recomart.experiments.assignment import assign
from recomart.experiments.store import get_experiment
from recomart.serving.server import server_env, uvicorn_args
from recomart.stream.intake import API_KEY_HEADER, PREVIEW_HEADER, api_key
from recomart.tools import tool_env

pytestmark = pytest.mark.integration

CREATE = [
    "experiment",
    "create",
    "ab",
    "--variants",
    "hybrid:0.5,popularity:0.5",
    "--control",
    "hybrid",
    "--salt",
    "s1",
]


@pytest.fixture(scope="module")
def deployment(free_port: Callable[[], int]) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Private embedded Postgres and Redis, the marts, Feast's registry and a first generation."""
    extra = {"RECOMART_DB_PREFIX": "expo", "RECOMART_FEAST_PROJECT": "expo", "RECOMART_STREAM_CLAIM_IDLE_S": "2"}
    with deployed(free_port, "experiments", **extra) as found:
        yield found


def _cli(deployment, *args: str) -> subprocess.CompletedProcess:
    s, overrides = deployment
    return subprocess.run(
        [sys.executable, "-m", "recomart.cli", *args], env={**tool_env(s), **overrides}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def apis(deployment, free_port: Callable[[], int]) -> Iterator[list[httpx.Client]]:
    """Two API processes (one uvicorn worker each, as two replicas), each with its own port."""
    s, overrides = deployment
    started = []
    try:
        for n in range(2):
            port = free_port()
            log = (s.state_dir / f"api-{n}.log").open("w")
            process = subprocess.Popen(
                uvicorn_args(s, "127.0.0.1", port, 1), env={**server_env(s, port), **overrides}, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers={"X-API-Key": api_key(s)})
            started.append((process, client, log))
        for _, client, _ in started:
            _wait(lambda c=client: c.get("/readyz").status_code == 200, 90, "the API to become ready")
        yield [client for _, client, _ in started]
    finally:
        for process, client, log in started:
            client.close()
            process.terminate()
            process.wait(timeout=30)
            log.close()
        for n in range(len(started)):
            print((s.state_dir / f"api-{n}.log").read_text()[-2000:], file=sys.stderr)


@pytest.fixture(scope="module")
def worker(deployment) -> Iterator[Worker]:
    with running_worker(deployment) as running:
        yield running


def _recs(api: httpx.Client, user: str) -> dict:
    response = api.get(f"/v1/users/{user}/recommendations")
    assert response.status_code == 200, response.text
    return response.json()


def _exposures(s: Settings, request_ids: list[str]) -> dict[str, tuple]:
    """``{request_id: (rows, item_ids, experiment, variant)}`` of ``raw.exposures`` for ``request_ids``."""
    with psycopg.connect(s.warehouse_url) as conn:
        rows = conn.execute(
            "select request_id, count(*) over (partition by request_id), item_ids, experiment, variant"
            " from raw.exposures where request_id = any(%s)",
            (request_ids,),
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_cli_creates_and_lists_an_experiment(deployment) -> None:
    created = _cli(deployment, *CREATE, "--metric", "conversion")
    assert created.returncode == 0, created.stderr
    assert "created experiment ab: hybrid (hybrid) 50%, popularity (popularity) 50%; control hybrid" in created.stdout
    listed = _cli(deployment, "experiment", "list")
    assert listed.returncode == 0 and any(
        line.split()[:4] == ["ab", "running", "hybrid", "conversion"] for line in listed.stdout.splitlines()
    ), listed.stdout
    again = _cli(deployment, *CREATE)
    assert again.returncode == 1 and "exists already" in again.stderr
    overlapping = _cli(deployment, *CREATE[:2], "other", *CREATE[3:])
    assert overlapping.returncode == 1 and "overlaps experiment(s) ab" in overlapping.stderr
    invalid = _cli(deployment, "experiment", "create", "bad", "--variants", "hybrid:0.5,popularity:0.4",
                   "--control", "hybrid")  # fmt: skip
    assert invalid.returncode == 2 and "the shares sum to 0.9, not 1" in invalid.stderr


def test_a_user_keeps_their_variant_across_two_api_processes(deployment, apis: list[httpx.Client]) -> None:
    s, _ = deployment
    with psycopg.connect(s.warehouse_url) as conn:
        experiment = get_experiment(conn, "ab")
        popular = [r[0] for r in conn.execute(
            "select item_id from reco.popular_items where segment = '__all__' order by rank limit 10"
        )]  # fmt: skip
    assert experiment is not None
    for api in apis:
        _wait(lambda a=api: _recs(a, "u001")["experiment"] == "ab", 10, "the API to apply the experiment")
    seen = set()
    for user in USERS[:40]:
        first, second = _recs(apis[0], user), _recs(apis[1], user)
        expected = assign(experiment, user).name
        assert first["variant"] == second["variant"] == expected, user
        seen.add(expected)
        items = [item["item_id"] for item in first["items"]]
        if expected == "popularity":
            assert first["strategy"] == "popular_cold_start" and items == popular
        elif user in USERS[:50]:  # users with a history have their nightly list
            assert items == live_lists(s, user)[1]
    assert seen == {"hybrid", "popularity"}


def test_each_response_is_one_exposure_row(deployment, apis: list[httpx.Client], worker: Worker) -> None:
    s, _ = deployment
    bodies = [_recs(api, user) for api, user in zip(itertools.cycle(apis), USERS * 2, strict=False)]
    ids = [body["request_id"] for body in bodies]
    assert len(set(ids)) == len(ids)
    _wait(lambda: len(_exposures(s, ids)) == len(ids), 30, "the worker to load every exposure")
    stored = _exposures(s, ids)
    for body in bodies:
        count, item_ids, experiment, variant = stored[body["request_id"]]
        assert count == 1 and item_ids == [item["item_id"] for item in body["items"]]
        assert (experiment, variant) == (body["experiment"], body["variant"])
    metrics = apis[0].get("/metrics").text
    assert "recomart_api_exposures_logged_total" in metrics


def test_a_preview_with_the_api_key_logs_no_exposure(deployment, apis: list[httpx.Client], worker: Worker) -> None:
    """The dashboard's reads (``X-RecoMart-Preview: 1`` with the key) are not exposures; the header
    alone, without the key, changes nothing."""
    s, _ = deployment
    api = apis[0]
    path = f"/v1/users/{USERS[0]}/recommendations"
    preview = api.get(path, headers={PREVIEW_HEADER: "1"}).json()["request_id"]
    keyless = api.get(path, headers={PREVIEW_HEADER: "1", API_KEY_HEADER: "not-the-key"}).json()["request_id"]
    logged = api.get(path).json()["request_id"]
    _wait(lambda: len(_exposures(s, [keyless, logged])) == 2, 30, "the worker to load the two exposures")
    assert preview not in _exposures(s, [preview])


def test_exposures_and_events_are_loaded_once_across_a_worker_kill(
    deployment, apis: list[httpx.Client], worker: Worker
) -> None:
    s, _ = deployment
    ids: list[str] = []
    stop = threading.Event()

    def keep_asking() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            ids.append(_recs(apis[n % 2], USERS[n % len(USERS)])["request_id"])

    sender = threading.Thread(target=keep_asking)
    sender.start()
    try:
        time.sleep(1.0)
        worker.kill()
        time.sleep(1.0)
        worker.start()  # reclaims the killed consumer's pending entries after the claim idle time
        time.sleep(1.0)
    finally:
        stop.set()
        sender.join(timeout=30)
    event_id = uuid.uuid4().hex
    answered = ids[-1]
    posted = apis[0].post("/v1/events", json={
        "event_id": event_id, "event_type": "view", "user_id": "u001", "item_id": "i001", "request_id": answered,
    })  # fmt: skip
    assert posted.status_code == 202, posted.text
    assert len(ids) > 20
    _wait(lambda: len(_exposures(s, ids)) == len(ids), 60, "every exposure after the restart")
    assert all(row[0] == 1 for row in _exposures(s, ids).values())
    with psycopg.connect(s.warehouse_url) as conn:

        def stored_event() -> bool:
            row = conn.execute("select request_id from raw.stream_events where event_id = %s", (event_id,)).fetchone()
            conn.rollback()
            return row is not None and row[0] == answered

        _wait(stored_event, 30, "the event with its request_id")
