"""``GET /v1/search`` over a real uvicorn (2 workers) on this run's private Postgres database and Redis prefix.

The catalogue is test_search.py's small fixed one plus 20,000 filler products (their stored vectors
random unit vectors under the real model's name, so the index is 20k items large and a rebuild takes
a noticeable time).  A generation is published by the nightly code; the API builds its index at start,
finds items from paraphrases, validates ``q`` and ``k`` with 422s, and keeps answering (from the old
index, saying ``rebuilding``) while a new generation's index is built (its read of the vectors held
back by a table lock until the test has seen that), which then finds a new product.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest
from test_search import CATALOGUE, PARAPHRASES  # tests/integration is on sys.path (rootdir import mode)

from recomart.config import Settings
from recomart.ranking.base import TrainingSet
from recomart.ranking.hybrid import HybridRecommender
from recomart.recommend.run import OUTPUT_COLUMNS, publish_generation
from recomart.search import store
from recomart.search.embed import current_texts, embed_products
from recomart.search.minilm import MiniLMEncoder
from recomart.search.searcher import EMBEDDINGS_INDEX
from recomart.serving.server import server_env, uvicorn_args
from recomart.tasks.recommend import copy_live_generation_to_redis

pytestmark = pytest.mark.integration

FILLERS = 20_000
NEW_PRODUCT = ("P11", "Brass telescope", "A refractor with a tripod for looking at the moon.", "hobby", "Lumen")
NEW_PARAPHRASE = "stargazing instrument"  # no word stem shared with NEW_PRODUCT's text


def _products(dsn: str) -> pd.DataFrame:
    with psycopg.connect(dsn) as conn:
        return store.read_products(conn)


def _load_catalogue(dsn: str, encoder: MiniLMEncoder) -> None:
    """``marts.dim_products`` = :data:`CATALOGUE` + fillers; real vectors for the catalogue, random for fillers."""
    fillers = [(f"F{n:05d}", f"Stock unit {n:05d}", f"Warehouse lot {n % 97}.", "misc", None) for n in range(FILLERS)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "create schema if not exists marts; create table marts.dim_products "
            "(item_id text primary key, title text, description text, category text, brand text, price numeric)"
        )
        with conn.cursor().copy(
            "copy marts.dim_products (item_id, title, description, category, brand) from stdin"
        ) as c:
            for row in CATALOGUE + fillers:
                c.write_row(row)
    embed_products(dsn, encoder=_OnlyCatalogue(encoder))
    texts = current_texts(_products(dsn)).set_index("item_id").loc[[f[0] for f in fillers]]
    vectors = np.random.default_rng(0).normal(size=(FILLERS, encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with psycopg.connect(dsn) as conn, conn.transaction():
        store.write_vectors(conn, texts.index.tolist(), texts["text_hash"].tolist(), vectors, encoder.name)


class _OnlyCatalogue:
    """The real encoder for the catalogue's texts; fillers get zero vectors (replaced right after)."""

    def __init__(self, encoder: MiniLMEncoder) -> None:
        self.name, self.inference, self._encoder = encoder.name, encoder.inference, encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._encoder.dim), dtype=np.float32)
        real = [n for n, t in enumerate(texts) if not t.startswith("Stock unit ")]
        if real:
            out[real] = self._encoder.encode([texts[n] for n in real])
        return out


def _publish(s: Settings, seed: int) -> int:
    """Rank users over the catalogue with a real hybrid, publish the generation, copy it to Redis."""
    rng = np.random.default_rng(seed)
    items = [row[0] for row in CATALOGUE]
    users = pd.DataFrame({"user_id": [f"u{n}" for n in range(20)], "segment": "a"})
    history = pd.DataFrame(
        [(u, items[j]) for u in users["user_id"] for j in rng.choice(len(items), 4, replace=False)],
        columns=["user_id", "item_id"],
    ).assign(rating=1.0, purchases=1, last_interaction_at=pd.Timestamp("2025-03-01", tz="UTC"))
    catalogue = _products(s.warehouse_url).query("item_id in @items")
    recommender = HybridRecommender(personalised=True, svd=None).fit(TrainingSet.build(history, catalogue, users))
    recs = recommender.rank(users, history, k=5).assign(model_version=None)
    result = publish_generation(s.warehouse_url, recs[OUTPUT_COLUMNS], recommender, model_version=None, log=len)
    copy_live_generation_to_redis(s, s.warehouse_url)
    return result.generation_id


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def published(test_settings: Settings, encoder: MiniLMEncoder) -> int:
    _load_catalogue(test_settings.warehouse_url, encoder)
    return _publish(test_settings, seed=1)


@pytest.fixture(scope="module")
def api(test_settings: Settings, tool_env: dict[str, str], published: int) -> Iterator[httpx.Client]:
    """``recomart serve``'s uvicorn command line with 2 workers, as a real process."""
    s = test_settings
    env = {**tool_env, **server_env(s, s.api_port)}
    log = (s.state_dir / f"api-search-{s.api_port}.log").open("w")
    process = subprocess.Popen(uvicorn_args(s, "127.0.0.1", s.api_port, 2), env=env, stdout=log, stderr=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{s.api_port}", timeout=30)
    try:
        _wait(lambda: all(_search(client, "teapot")["index_generation_id"] == published for _ in range(6)), 180)
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=60)  # a busy machine can hold a worker's shutdown past uvicorn's 10 s grace
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        log.close()
        print((s.state_dir / f"api-search-{s.api_port}.log").read_text()[-3000:], file=sys.stderr)


def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        with contextlib.suppress(httpx.HTTPError, KeyError, AssertionError):
            if condition():
                return
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout_s} s")


def _search(client: httpx.Client, q: str, **params) -> dict:
    response = client.get("/v1/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_paraphrases_find_their_item_with_the_embeddings(api: httpx.Client) -> None:
    for query, item_id in PARAPHRASES.items():
        body = _search(api, query, k=3)
        assert body["index"] == EMBEDDINGS_INDEX and body["index_items"] == len(CATALOGUE) + FILLERS
        assert body["retrievers"] == ["bm25", "embeddings"] and body["index_reason"] == ""
        found = {item["item_id"]: item for item in body["items"]}
        assert item_id in found, (query, body["items"])
        assert "embeddings" in found[item_id]["retrievers"] and found[item_id]["score"] > 0


def test_a_hit_says_which_retrievers_found_it(api: httpx.Client) -> None:
    body = _search(api, "regency cake stand", k=5)
    top = body["items"][0]
    assert (top["rank"], top["item_id"], top["title"]) == (1, "22423", "REGENCY CAKESTAND 3 TIER")
    assert set(top["retrievers"]) == {"bm25", "embeddings"} and top["ranks"]["bm25"] >= 1
    assert len(body["items"]) == 5 and body["k"] == 5 and body["request_id"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "Field required"),
        ({"q": ""}, "at least 1 character"),
        ({"q": "   "}, "q is blank"),
        ({"q": "x" * 201}, "at most 200 characters"),
        ({"q": "bag", "k": 0}, "greater than or equal to 1"),
        ({"q": "bag", "k": 101}, "less than or equal to 100"),
        ({"q": "bag", "k": "ten"}, "valid integer"),
    ],
)
def test_bad_queries_get_a_clear_422(api: httpx.Client, params: dict, message: str) -> None:
    response = api.get("/v1/search", params=params)
    assert response.status_code == 422 and message in response.text, response.text


def test_answers_while_a_new_generation_is_indexed(
    api: httpx.Client, test_settings: Settings, published: int, encoder: MiniLMEncoder
) -> None:
    dsn = test_settings.warehouse_url
    assert NEW_PRODUCT[0] not in [i["item_id"] for i in _search(api, NEW_PARAPHRASE, k=3)["items"]]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("insert into marts.dim_products (item_id, title, description, category, brand)"
                     " values (%s, %s, %s, %s, %s)", NEW_PRODUCT)  # fmt: skip
    assert embed_products(dsn, encoder=encoder)["embedded"] == 1
    bodies, failures, stop = [], [], threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=str(api.base_url), timeout=30) as client:
            while not stop.is_set():
                response = client.get("/v1/search", params={"q": f"ceramic teapot {len(bodies)}"})
                (bodies if response.status_code == 200 else failures).append(response)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        # the new index's build waits on this lock for its vectors, so it is under way until the old index
        # was seen answering meanwhile, however fast a build is on the machine at hand
        with psycopg.connect(dsn) as held:
            held.execute(f"LOCK TABLE {store.TABLE} IN ACCESS EXCLUSIVE MODE")
            second = _publish(test_settings, seed=2)
            _wait(lambda: sum(r.json()["rebuilding"] for r in list(bodies)) >= 6, 60)
        _wait(lambda: all(_search(api, "teapot")["index_generation_id"] == second for _ in range(6)), 120)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, [(r.status_code, r.text[:300]) for r in failures[:3]]
    during = [r.json() for r in bodies if r.json()["rebuilding"]]
    assert during and all(b["index_generation_id"] in (published, second) and b["items"] for b in during)
    assert any(b["index_generation_id"] == published for b in during)  # the old index answered meanwhile
    hits = _search(api, NEW_PARAPHRASE, k=3)["items"]
    assert hits[0]["item_id"] == NEW_PRODUCT[0] and "embeddings" in hits[0]["retrievers"], hits
